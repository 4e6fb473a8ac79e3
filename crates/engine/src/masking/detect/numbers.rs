//! Number-shaped detectors: payment cards, US social security numbers, IBANs, phone
//! numbers and IPv4 addresses.
//!
//! The main pass calls [`digits`] at the first digit of every digit run, whatever is
//! before it. An IBAN is checked there when two letters precede the run (its country
//! code; the run starts with its check digits). A run that is not joined to another by
//! a single separator (space, dash, dot) can only be a contiguous card; otherwise the
//! shapes of its first two groups say which detectors could start there, and only then
//! is the chain of at most [`MAX_GROUPS`] digit groups read and checked, with bounded
//! work, so a scan is linear in the text.
//!
//! Fail closed: what is around a number does not stop it being found (`ssn123-45-6789`,
//! `card:4111111111111111;`, `1-123-45-6789-0`); its own groups delimit it, and a group
//! is a maximal digit run, so `1123-45-6789` (four digits, then two, then four) is no
//! SSN. Digits glued to a contiguous card are windowed (see [`contiguous_card`]). IPv4
//! keeps its boundaries: a dotted quad inside a longer dotted sequence or after a letter
//! is a version number ([`ipv4_left_ok`]).
use super::{DetectorId, Finding, Ids, Kind, at, before, in_hex_string, is_word, push};

/// The longest chain a detector needs: a grouped card is 4 + 5×3 digits at most.
const MAX_GROUPS: usize = 6;

#[derive(Clone, Copy, Default)]
struct Group {
    start: usize,
    end: usize,
    /// The separator before this group; 0 for the first.
    sep: u8,
}

impl Group {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

struct Chain {
    groups: [Group; MAX_GROUPS],
    count: usize,
}

impl Chain {
    /// Reads the digit groups starting at `i`, which must be the first digit of a run.
    fn read(t: &[u8], i: usize) -> Chain {
        let mut chain = Chain {
            groups: [Group::default(); MAX_GROUPS],
            count: 0,
        };
        let mut p = i;
        let mut sep = 0;
        for slot in chain.groups.iter_mut() {
            let start = p;
            while at(t, p).is_ascii_digit() {
                p += 1;
            }
            *slot = Group { start, end: p, sep };
            chain.count += 1;
            let c = at(t, p);
            if matches!(c, b' ' | b'-' | b'.') && at(t, p + 1).is_ascii_digit() {
                sep = c;
                p += 1;
            } else {
                break;
            }
        }
        chain
    }

    fn get(&self, j: usize) -> Option<Group> {
        if j < self.count {
            self.groups.get(j).copied()
        } else {
            None
        }
    }

    fn first(&self) -> Group {
        self.groups.first().copied().unwrap_or_default()
    }
}

/// Whether a number detector could start at the digit run `t[i..end]`: a contiguous
/// card (or a longer run holding one), or a chain whose first two groups have a card,
/// SSN, North American phone or (with `ipv4`) IPv4 shape. Looks at three bytes and the
/// next group's length; false for most numbers in ordinary text.
#[inline]
pub(super) fn worth_checking(t: &[u8], i: usize, end: usize, ipv4: bool) -> bool {
    let len = end - i;
    if len >= 13 {
        return true;
    }
    let next = at(t, end);
    if !(matches!(next, b' ' | b'-' | b'.') && at(t, end + 1).is_ascii_digit()) {
        return false;
    }
    let second = digit_run(t, end + 1) - (end + 1);
    (len == 4 && next != b'.' && (3..=6).contains(&second))
        || (len == 3 && second == 2 && next == b'-')
        || (next != b' ' && second == 3 && (len == 3 || (len == 1 && at(t, i) == b'1')))
        || (ipv4 && next == b'.' && len <= 3 && (1..=3).contains(&second))
}

/// Runs the number detectors on the chain starting at digit `i` (the first of its
/// run) and returns where the main pass resumes: the end of that digit run, or of an
/// IBAN found there.
pub(super) fn digits(t: &[u8], i: usize, ids: &Ids, out: &mut Vec<Finding>) -> usize {
    let end = digit_run(t, i);
    let len = end - i;
    let mut resume = end;
    if let Some(id) = ids.get(Kind::Iban)
        && len >= 2
        && let Some(s) = i.checked_sub(2)
        && at(t, s).is_ascii_alphabetic()
        && at(t, s + 1).is_ascii_alphabetic()
        && let Some(e) = iban(t, s)
    {
        // The number detectors still read the run: an IBAN's fixed length may end
        // inside a card glued to it, and overlapping findings are merged.
        push(out, s, e, id);
        resume = e.max(end);
    }
    let next = at(t, end);
    let chained = matches!(next, b' ' | b'-' | b'.') && at(t, end + 1).is_ascii_digit();
    if !chained {
        // One group: only a contiguous card can be here.
        if len >= 13
            && let Some(id) = ids.get(Kind::Card)
            && contiguous_card(t, i, end)
            && !in_hex_string(t, i, end)
        {
            push(out, i, end, id);
        }
        return resume;
    }
    // Which detectors can start with this group and the next? Most chains (dates,
    // times, decimals) fail here without reading further.
    let second = digit_run(t, end + 1) - (end + 1);
    let card_shape = len >= 13 || (len == 4 && sep_is(next, b" -") && (3..=6).contains(&second));
    let ssn_shape = len == 3 && second == 2 && next == b'-';
    let nanp_shape =
        sep_is(next, b"-.") && second == 3 && (len == 3 || (len == 1 && at(t, i) == b'1'));
    let ipv4 = ids.get(Kind::Ipv4).filter(|_| {
        next == b'.' && (1..=3).contains(&len) && (1..=3).contains(&second) && ipv4_left_ok(t, i)
    });
    let card = ids.get(Kind::Card).filter(|_| card_shape);
    let ssn_id = ids.get(Kind::Ssn).filter(|_| ssn_shape);
    let phone = ids.get(Kind::Phone).filter(|_| nanp_shape);
    if card.is_none() && ssn_id.is_none() && phone.is_none() && ipv4.is_none() {
        return resume;
    }
    let chain = Chain::read(t, i);
    if let Some(id) = card {
        self::card(t, &chain, id, out);
    }
    if let Some(id) = ssn_id {
        ssn(t, &chain, id, out);
    }
    if let Some(id) = phone {
        nanp(t, &chain, id, out);
    }
    if let Some(id) = ipv4 {
        ipv4_quad(t, &chain, id, out);
    }
    resume
}

fn sep_is(b: u8, seps: &[u8]) -> bool {
    seps.contains(&b)
}

// === boundaries ===

/// Nothing before `s` continues an IPv4 address: no letter, digit or `_`, and no `.`
/// after one (`v1.2.3.4`, `a.1.2.3.4`). The other number detectors are delimited by
/// their groups alone.
fn ipv4_left_ok(t: &[u8], s: usize) -> bool {
    let p = before(t, s);
    let pp = if s >= 2 { at(t, s - 2) } else { 0 };
    !(is_word(p) || (p == b'.' && pp.is_ascii_alphanumeric()))
}

/// Nothing from `e` on continues an IPv4 address.
fn ipv4_right_ok(t: &[u8], e: usize) -> bool {
    let n = at(t, e);
    !(is_word(n) || (n == b'.' && at(t, e + 1).is_ascii_alphanumeric()))
}

/// The value of a group of at most 9 digits (more saturate; callers check lengths).
fn value(t: &[u8], g: Group) -> u32 {
    t.get(g.start..g.end)
        .unwrap_or_default()
        .iter()
        .take(9)
        .fold(0u32, |v, d| v * 10 + u32::from(d.wrapping_sub(b'0')))
}

fn digit_at(t: &[u8], i: usize) -> u8 {
    at(t, i).wrapping_sub(b'0')
}

// === card ===

fn card(t: &[u8], chain: &Chain, id: DetectorId, out: &mut Vec<Finding>) {
    let first = chain.first();
    if first.len() >= 13 {
        if contiguous_card(t, first.start, first.end) && !in_hex_string(t, first.start, first.end) {
            push(out, first.start, first.end, id);
        }
        return;
    }
    let Some(second) = chain.get(1) else {
        return;
    };
    let sep = second.sep;
    if first.len() != 4 || !(sep == b' ' || sep == b'-') {
        return;
    }
    let mut total = first.len();
    let mut best = None;
    for j in 1..chain.count {
        let Some(g) = chain.get(j) else { break };
        if g.sep != sep || !(3..=6).contains(&g.len()) {
            break;
        }
        total += g.len();
        if total > 19 {
            break;
        }
        if total >= 13 && card_valid(t, chain.groups.get(..=j).unwrap_or_default()) {
            best = Some(g.end);
        }
    }
    if let Some(end) = best {
        push(out, first.start, end, id);
    }
}

/// Whether the digit run `t[s..e]` (13 digits or more) is, or holds, a card number.
///
/// Digits glued to digits are ambiguous, and this is where masking decides to fail
/// closed: a run of up to 19 digits (anything a `bigint` holds: ids, timestamps,
/// amounts in cents) is a card when the whole run is one, or when a window of 14 to 19
/// digits at its start or its end is (a card with a few digits glued to one side;
/// 13-digit windows are left out there, so that a 16-digit id is not a Visa-13 with
/// three digits glued). A run of 20 digits or more is no integer a column holds but a
/// concatenation or a generated value, and is a card when any window of 13 to 19
/// digits is. Every window must have a card network's prefix and length and pass Luhn.
/// The caller masks the whole run.
fn contiguous_card(t: &[u8], s: usize, e: usize) -> bool {
    let Some(run) = t.get(s..e) else { return false };
    let n = run.len();
    let mut digits = [0u8; 19];
    let mut window = |from: usize, len: usize| -> bool {
        let Some(src) = run.get(from..from + len) else {
            return false;
        };
        let Some(dst) = digits.get_mut(..len) else {
            return false;
        };
        for (d, b) in dst.iter_mut().zip(src) {
            *d = b.wrapping_sub(b'0');
        }
        brand_length_ok(dst) && luhn(dst)
    };
    if n <= 19 {
        window(0, n) || (14..n).any(|len| window(0, len) || window(n - len, len))
    } else {
        (0..=n - 13).any(|from| {
            // A window must start with a network's first digit (2 to 6).
            (b'2'..=b'6').contains(&run.get(from).copied().unwrap_or(0))
                && (13..=19.min(n - from)).any(|len| window(from, len))
        })
    }
}

fn card_valid(t: &[u8], groups: &[Group]) -> bool {
    let mut digits = [0u8; 19];
    let mut n = 0;
    for g in groups {
        for &b in t.get(g.start..g.end).unwrap_or_default() {
            let Some(slot) = digits.get_mut(n) else {
                return false;
            };
            *slot = b.wrapping_sub(b'0');
            n += 1;
        }
    }
    let digits = digits.get(..n).unwrap_or_default();
    brand_length_ok(digits) && luhn(digits)
}

/// A known issuer prefix with a length that brand issues.
pub(crate) fn brand_length_ok(d: &[u8]) -> bool {
    let n = d.len();
    let prefix = |k: usize| d.iter().take(k).fold(0u32, |v, &x| v * 10 + u32::from(x));
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    if p1 == 4 {
        matches!(n, 13 | 16 | 19)
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        n == 16
    } else if p2 == 34 || p2 == 37 {
        n == 15
    } else if p4 == 6011
        || p2 == 65
        || (644..=649).contains(&p3)
        || p2 == 62
        || (3528..=3589).contains(&p4)
    {
        // Discover, UnionPay, JCB.
        (16..=19).contains(&n)
    } else if p2 == 30 || p2 == 36 || p2 == 38 {
        (14..=19).contains(&n)
    } else {
        false
    }
}

/// The Luhn check over decimal digit values.
pub(crate) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, &x) in d.iter().rev().enumerate() {
        let x = u32::from(x);
        sum += if k % 2 == 1 {
            let y = x * 2;
            if y > 9 { y - 9 } else { y }
        } else {
            x
        };
    }
    !d.is_empty() && sum.is_multiple_of(10)
}

// === ssn ===

fn ssn(t: &[u8], chain: &Chain, id: DetectorId, out: &mut Vec<Finding>) {
    let (Some(a), Some(g), Some(s)) = (chain.get(0), chain.get(1), chain.get(2)) else {
        return;
    };
    if a.len() != 3 || g.len() != 2 || s.len() != 4 || g.sep != b'-' || s.sep != b'-' {
        return;
    }
    let area = value(t, a);
    if area == 0 || area == 666 || area >= 900 || value(t, g) == 0 || value(t, s) == 0 {
        return;
    }
    push(out, a.start, s.end, id);
}

// === phone ===

/// `415-555-2671`, `415.555.2671`, `1-415-555-2671`.
fn nanp(t: &[u8], chain: &Chain, id: DetectorId, out: &mut Vec<Finding>) {
    let first = chain.first();
    let lead = first.len() == 1 && at(t, first.start) == b'1';
    let off = usize::from(lead);
    let (Some(area), Some(exchange), Some(line)) =
        (chain.get(off), chain.get(off + 1), chain.get(off + 2))
    else {
        return;
    };
    let sep = exchange.sep;
    if area.len() != 3
        || exchange.len() != 3
        || line.len() != 4
        || !(sep == b'-' || sep == b'.')
        || line.sep != sep
        || (lead && area.sep != sep)
    {
        return;
    }
    if nanp_valid(t, area.start, exchange.start) {
        push(out, first.start, line.end, id);
    }
}

/// Area code `[2-9][0-8]x` and exchange `[2-9]xx`.
fn nanp_valid(t: &[u8], area: usize, exchange: usize) -> bool {
    (2..=9).contains(&digit_at(t, area))
        && digit_at(t, area + 1) <= 8
        && (2..=9).contains(&digit_at(t, exchange))
}

/// The end of the digit run starting at `from`.
pub(super) fn digit_run(t: &[u8], from: usize) -> usize {
    let mut p = from;
    while at(t, p).is_ascii_digit() {
        p += 1;
    }
    p
}

/// `(415) 555-2671`, `(415)555-2671`, `(415) 555.2671`, `(415) 555 2671`, with `i` at
/// the `(`. Returns the end.
pub(super) fn paren(t: &[u8], i: usize) -> Option<usize> {
    let area = i + 1;
    if digit_run(t, area) != area + 3 || at(t, area + 3) != b')' {
        return None;
    }
    let mut p = area + 4;
    if at(t, p) == b' ' {
        p += 1;
    }
    let exchange = p;
    if digit_run(t, exchange) != exchange + 3 || !matches!(at(t, exchange + 3), b'-' | b'.' | b' ')
    {
        return None;
    }
    let line = exchange + 4;
    let end = line + 4;
    if digit_run(t, line) != end {
        return None;
    }
    nanp_valid(t, area, exchange).then_some(end)
}

/// An international number with `i` at the `+`: 8 to 15 digits in groups separated by
/// single spaces, dashes or dots, where a group may be parenthesised (`+44 (0)20 …`).
/// Returns the end of the last digit group. A chain of groups with more than 15
/// digits is not a phone number, nor is a `+` after a digit or after a number's
/// exponent (`1e+100000000`); letters before it are glued text.
pub(super) fn plus(t: &[u8], i: usize) -> Option<usize> {
    let p = before(t, i);
    let exponent = matches!(p, b'e' | b'E') && i >= 2 && {
        let pp = at(t, i - 2);
        pp.is_ascii_digit() || pp == b'.'
    };
    if p.is_ascii_digit() || exponent || !(b'1'..=b'9').contains(&at(t, i + 1)) {
        return None;
    }
    let mut p = i + 1;
    let mut digits = 0usize;
    let mut end = None;
    let mut digits_at_end = 0usize;
    let mut first = true;
    loop {
        let c = at(t, p);
        let (count, next, bare) = if c.is_ascii_digit() {
            let q = digit_run(t, p);
            (q - p, q, true)
        } else if c == b'(' && !first {
            let q = digit_run(t, p + 1);
            if q == p + 1 || at(t, q) != b')' {
                break;
            }
            (q - p - 1, q + 1, false)
        } else {
            break;
        };
        if digits + count > 15 {
            // More digits follow: a longer number (say a grouped card), not a phone.
            return None;
        }
        digits += count;
        p = next;
        first = false;
        if bare {
            end = Some(next);
            digits_at_end = digits;
        }
        let c = at(t, p);
        let n = at(t, p + 1);
        if !bare && (c.is_ascii_digit() || c == b'(') {
            continue;
        }
        if c == b'(' || (matches!(c, b' ' | b'-' | b'.') && (n.is_ascii_digit() || n == b'(')) {
            if c != b'(' {
                p += 1;
            }
            continue;
        }
        break;
    }
    let end = end?;
    (digits_at_end >= 8).then_some(end)
}

// === ipv4 ===

fn ipv4_quad(t: &[u8], chain: &Chain, id: DetectorId, out: &mut Vec<Finding>) {
    if chain.count < 4 {
        return;
    }
    for j in 0..4 {
        let Some(g) = chain.get(j) else { return };
        if (j > 0 && g.sep != b'.')
            || !(1..=3).contains(&g.len())
            || (g.len() > 1 && at(t, g.start) == b'0')
            || value(t, g) > 255
        {
            return;
        }
    }
    let (Some(a), Some(d)) = (chain.get(0), chain.get(3)) else {
        return;
    };
    if ipv4_left_ok(t, a.start) && ipv4_right_ok(t, d.end) {
        push(out, a.start, d.end, id);
    }
}

// === iban ===

/// IBAN lengths from the IBAN registry, by country code.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

fn iban_length(cc: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == cc)
        .map(|(_, n)| *n)
}

/// An IBAN starting with its country code at `s`; returns the end. Letters may be of
/// either case (`lower(iban)` is still the account), and its length is fixed by its
/// country, so text glued around it does not hide it.
///
/// Glued to letters or digits, it must also not read as part of a longer random
/// string: its BBAN holds at most 4 letters (a bank code; about one position in 100 000
/// of random base64 has a valid country, check digits, length and mod 97, so a large
/// base64 blob would otherwise hold an "IBAN"), and it is not inside a hex string (see
/// `in_hex_string`; those hold an IBAN-shaped piece every few thousand bytes).
pub(super) fn iban(t: &[u8], s: usize) -> Option<usize> {
    let shaped = at(t, s).is_ascii_alphabetic()
        && at(t, s + 1).is_ascii_alphabetic()
        && at(t, s + 2).is_ascii_digit()
        && at(t, s + 3).is_ascii_digit();
    if !shaped {
        return None;
    }
    let len = iban_length([
        at(t, s).to_ascii_uppercase(),
        at(t, s + 1).to_ascii_uppercase(),
    ])?;
    let mut chars = [0u8; 34];
    let mut n = 0;
    let mut p = s;
    let mut spaced = None;
    while n < len {
        if n > 0 && n % 4 == 0 {
            let space = at(t, p) == b' ';
            match spaced {
                None => spaced = Some(space),
                Some(expected) if expected != space => return None,
                Some(_) => {}
            }
            if space {
                p += 1;
            }
        }
        let c = at(t, p);
        if !c.is_ascii_alphanumeric() {
            return None;
        }
        *chars.get_mut(n)? = c;
        n += 1;
        p += 1;
    }
    let chars = chars.get(..n)?;
    if iban_mod97(chars) != 1 {
        return None;
    }
    if before(t, s).is_ascii_alphanumeric() || at(t, p).is_ascii_alphanumeric() {
        let letters = chars
            .iter()
            .skip(4)
            .filter(|c| c.is_ascii_alphabetic())
            .count();
        if letters > 4 || in_hex_string(t, s, p) {
            return None;
        }
    }
    Some(p)
}

/// The IBAN checksum: the first four characters moved to the end, letters as 10–35.
pub(crate) fn iban_mod97(chars: &[u8]) -> u32 {
    let (head, tail) = chars.split_at(chars.len().min(4));
    let mut r = 0u32;
    for &c in tail.iter().chain(head) {
        r = if c.is_ascii_digit() {
            (r * 10 + u32::from(c - b'0')) % 97
        } else {
            (r * 100 + u32::from(c.to_ascii_uppercase().wrapping_sub(b'A')) + 10) % 97
        };
    }
    r
}
