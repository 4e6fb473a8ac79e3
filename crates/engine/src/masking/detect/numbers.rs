//! Number-shaped detectors: payment cards, US social security numbers, IBANs, phone
//! numbers and IPv4 addresses.
//!
//! The main pass calls [`digits`] at the first digit of every digit run that does not
//! follow a letter or digit. A run that is not joined to another by a single separator
//! (space, dash, dot) can only be a contiguous card; otherwise the shapes of its first
//! two groups say which detectors could start there, and only then is the chain of at
//! most [`MAX_GROUPS`] digit groups read and checked, with bounded work, so a scan is
//! linear in the text. IBANs start with letters: the main pass calls [`iban`] at
//! capitals that start a word.
//!
//! A detector never reports a span that is part of a longer number: the bytes around
//! it must not be letters, digits or `_`, nor a `.` or `-` joining it to more digits
//! ([`Edge::Number`]); for IPv4 a `-` is a boundary (address ranges) and a `.` next to
//! any letter or digit is not.

use super::{DetectorId, Finding, Ids, Kind, at, before, is_word, push};

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

/// Whether a number detector could start at the digit run `t[i..end]` (which does not
/// follow a letter or digit): a contiguous card, or a chain whose first two groups
/// have a card, SSN, North American phone or (with `ipv4`) IPv4 shape. Looks at three
/// bytes and the next group's length; false for most numbers in ordinary text.
#[inline]
pub(super) fn worth_checking(t: &[u8], i: usize, end: usize, ipv4: bool) -> bool {
    let len = end - i;
    if (13..=19).contains(&len) {
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
/// run) and returns the end of that digit run, where the main pass resumes.
pub(super) fn digits(t: &[u8], i: usize, ids: &Ids, out: &mut Vec<Finding>) -> usize {
    let end = digit_run(t, i);
    let len = end - i;
    let next = at(t, end);
    let chained = matches!(next, b' ' | b'-' | b'.') && at(t, end + 1).is_ascii_digit();
    if !chained {
        // One group: only a contiguous card can be here.
        if (13..=19).contains(&len)
            && let Some(id) = ids.get(Kind::Card)
            && card_valid(
                t,
                &[Group {
                    start: i,
                    end,
                    sep: 0,
                }],
            )
            && bounded(t, i, end, Edge::Number)
        {
            push(out, i, end, id);
        }
        return end;
    }
    // Which detectors can start with this group and the next? Most chains (dates,
    // times, decimals) fail here without reading further.
    let second = digit_run(t, end + 1) - (end + 1);
    let card_shape =
        (13..=19).contains(&len) || (len == 4 && sep_is(next, b" -") && (3..=6).contains(&second));
    let ssn_shape = len == 3 && second == 2 && next == b'-';
    let nanp_shape =
        sep_is(next, b"-.") && second == 3 && (len == 3 || (len == 1 && at(t, i) == b'1'));
    let ipv4 = ids
        .get(Kind::Ipv4)
        .filter(|_| next == b'.' && (1..=3).contains(&len) && (1..=3).contains(&second));
    let card = ids.get(Kind::Card).filter(|_| card_shape);
    let ssn_id = ids.get(Kind::Ssn).filter(|_| ssn_shape);
    let phone = ids.get(Kind::Phone).filter(|_| nanp_shape);
    if card.is_none() && ssn_id.is_none() && phone.is_none() && ipv4.is_none() {
        return end;
    }
    let number_ok = left_ok(t, i, Edge::Number);
    let ipv4_ok = ipv4.is_some() && left_ok(t, i, Edge::Ipv4);
    if !(number_ok || ipv4_ok) {
        return end;
    }
    let chain = Chain::read(t, i);
    if number_ok {
        if let Some(id) = card {
            self::card(t, &chain, id, out);
        }
        if let Some(id) = ssn_id {
            ssn(t, &chain, id, out);
        }
        if let Some(id) = phone {
            nanp(t, &chain, id, out);
        }
    }
    if let Some(id) = ipv4 {
        ipv4_quad(t, &chain, id, out);
    }
    end
}

fn sep_is(b: u8, seps: &[u8]) -> bool {
    seps.contains(&b)
}

// === boundaries ===

#[derive(Clone, Copy, PartialEq, Eq)]
enum Edge {
    Number,
    Ipv4,
}

/// Nothing before `s` continues the value.
fn left_ok(t: &[u8], s: usize, edge: Edge) -> bool {
    let p = before(t, s);
    if is_word(p) {
        return false;
    }
    let pp = if s >= 2 { at(t, s - 2) } else { 0 };
    match (edge, p) {
        (Edge::Number, b'.' | b'-') => !pp.is_ascii_digit(),
        (Edge::Ipv4, b'.') => !pp.is_ascii_alphanumeric(),
        _ => true,
    }
}

/// Nothing from `e` on continues the value.
fn right_ok(t: &[u8], e: usize, edge: Edge) -> bool {
    let n = at(t, e);
    if is_word(n) {
        return false;
    }
    let nn = at(t, e + 1);
    match (edge, n) {
        (Edge::Number, b'.' | b'-') => !nn.is_ascii_digit(),
        (Edge::Ipv4, b'.') => !nn.is_ascii_alphanumeric(),
        _ => true,
    }
}

fn bounded(t: &[u8], s: usize, e: usize, edge: Edge) -> bool {
    left_ok(t, s, edge) && right_ok(t, e, edge)
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
    if (13..=19).contains(&first.len()) {
        if card_valid(t, chain.groups.get(..1).unwrap_or_default())
            && bounded(t, first.start, first.end, Edge::Number)
        {
            push(out, first.start, first.end, id);
        }
        return;
    }
    let Some(second) = chain.get(1) else {
        return;
    };
    let sep = second.sep;
    if first.len() != 4 || !(sep == b' ' || sep == b'-') || !left_ok(t, first.start, Edge::Number) {
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
        if total >= 13
            && right_ok(t, g.end, Edge::Number)
            && card_valid(t, chain.groups.get(..=j).unwrap_or_default())
        {
            best = Some(g.end);
        }
    }
    if let Some(end) = best {
        push(out, first.start, end, id);
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
    if bounded(t, a.start, s.end, Edge::Number) {
        push(out, a.start, s.end, id);
    }
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
    if nanp_valid(t, area.start, exchange.start) && bounded(t, first.start, line.end, Edge::Number)
    {
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
    if is_word(before(t, i)) {
        return None;
    }
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
    (nanp_valid(t, area, exchange) && right_ok(t, end, Edge::Number)).then_some(end)
}

/// An international number with `i` at the `+`: 8 to 15 digits in groups separated by
/// single spaces, dashes or dots, where a group may be parenthesised (`+44 (0)20 …`).
/// Returns the end of the last digit group. A chain of groups with more than 15
/// digits is not a phone number.
pub(super) fn plus(t: &[u8], i: usize) -> Option<usize> {
    if is_word(before(t, i)) || !(b'1'..=b'9').contains(&at(t, i + 1)) {
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
    (digits_at_end >= 8 && right_ok(t, end, Edge::Number)).then_some(end)
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
    if bounded(t, a.start, d.end, Edge::Ipv4) {
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

/// An IBAN starting with its country code at `s`; returns the end.
pub(super) fn iban(t: &[u8], s: usize) -> Option<usize> {
    let shaped = at(t, s).is_ascii_uppercase()
        && at(t, s + 1).is_ascii_uppercase()
        && at(t, s + 2).is_ascii_digit()
        && at(t, s + 3).is_ascii_digit()
        && !is_word(before(t, s));
    if !shaped {
        return None;
    }
    let len = iban_length([at(t, s), at(t, s + 1)])?;
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
        if !(c.is_ascii_digit() || c.is_ascii_uppercase()) {
            return None;
        }
        *chars.get_mut(n)? = c;
        n += 1;
        p += 1;
    }
    let chars = chars.get(..n)?;
    let check_digits = chars.get(2..4)?;
    if !check_digits.iter().all(u8::is_ascii_digit) || is_word(at(t, p)) {
        return None;
    }
    (iban_mod97(chars) == 1).then_some(p)
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
