//! PII and secret detectors: find e-mail addresses, payment cards, national ids, bank
//! accounts, phone numbers, addresses, keys and tokens, and user patterns in a value's
//! bytes, whatever its column is called.
//!
//! A [`Scanner`] is compiled once per config load from [`DetectorSpec`]s and shared by
//! every session. [`Scanner::find`] reports non-overlapping spans, sorted by start; the
//! caller rewrites them with [`super::redact`].
//!
//! # How it stays fast and linear
//!
//! Detectors run on every result value (target: 200 MB/s a core on ordinary result
//! text), so the built-in detectors share one pass over the bytes, linear in the text
//! whatever it contains:
//!
//! - a tight loop looks up each byte's class in a 256-entry table and stops only where
//!   something can start: the first digit of a digit run, a `+` or `(` (numbers; an
//!   IBAN is checked at its check digits, after two letters), an `@` (e-mail), the
//!   first byte of an escape, or, at the start of a word, a byte that begins a key or
//!   token prefix (`eyJ`, `AKIA`, `ghp_`, `sk-`, …, in either case) or the `B` of
//!   `-----BEGIN`. One or two more byte compares dismiss most stops (a number of one
//!   short group, a word that is no prefix) without leaving the loop;
//! - a digit run is read as the first of a chain of at most six digit groups, and the
//!   card, SSN, phone and IPv4 rules are checked on that chain with bounded work; an
//!   e-mail looks at most 64 bytes left and 253 right of its `@`;
//! - a key or token is checked by hand at its prefix, with the end of each body run
//!   remembered, and the pass resumes after a found one, so repeated prefixes
//!   (`-eyJ-eyJ…`) cannot make it quadratic;
//! - custom detectors are one `regex` search each (size-limited, ASCII classes);
//! - encoded forms cost nothing unless present: the main pass notes an escape (`%40`,
//!   `\u0040`, `&#64;`, a full-width digit, letter or `＠`) and only then are the
//!   detectors run again on a decoded view; a skip search finds long base64 and hex
//!   runs, probing one byte in twelve on ordinary text (see `encoded`).
//!
//! The built-in detectors are hand-written rather than regular expressions because
//! each needs validation (Luhn, mod 97, IIN and country tables, area codes) and exact
//! shape rules, because a regex retried at every prefix of a long token run is
//! quadratic, and because one shared pass is several times faster than a search per
//! detector.
//!
//! # Fail closed: glued, encoded and mixed-case values
//!
//! Masking must not depend on a value being cleanly delimited: a concatenation, a
//! generated blob or an encoding puts PII next to other bytes. So:
//!
//! - **glued text** (`xxada@example.comyyy`, `ref4111111111111111`, `ssn123-45-6789x`,
//!   `xxAKIA…`): letters, digits and punctuation around a value do not stop it being
//!   found. A value's own shape (the groups of a card, SSN or phone number, a key's
//!   prefix and body, an IBAN's length) is what delimits it; the bytes around it are
//!   not looked at, except where noted below.
//! - **digits glued to digits** are ambiguous: `41111111111111110` is a card and a
//!   digit, or an id. A digit run of up to 19 digits (what a `bigint` holds: ids,
//!   timestamps) is a card when the whole run is one, or when a 14–19-digit window at
//!   its start or its end is (a card with a few digits glued to one side); a run of 20
//!   digits or more is no integer a column holds, and is a card when any 13–19-digit
//!   window is. Either way the whole run is masked. Windows must pass the issuer table,
//!   the issued lengths and Luhn; still, about one random 17–19-digit number in 10 is
//!   masked (one in 25 when it starts with `1`, as snowflake ids do; before, one in
//!   60 to 150), and most runs of 20 digits or more. A card glued to digits on both
//!   sides inside 19 digits is not found.
//! - **encodings**: an escaped value (`ada%40example.com`, `ada\u0040example.com` in a
//!   JSON string, `ada&#64;example.com`, full-width `ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ` or
//!   `４１１１…`) is found in the decoded view and its source escapes are masked whole.
//!   A base64 run (standard or URL-safe, any of the 4 alignments) or hex run whose
//!   decoded bytes are text and hold anything a detector finds is masked whole.
//! - **case**: addresses, IBANs and the key and token prefixes are matched in any case
//!   (`ADA@EXAMPLE.COM`, `de89…`, `GHP_…`): a key whose letters changed case can still
//!   be tried in its few thousand spellings. PEM blocks are matched as written.
//! - A finding that cuts an escape (`\u00` of `\u0040`, the `\` of `\n`) is widened
//!   to the whole escape, so masking never leaves half an escape behind in a JSON
//!   string or a COPY field.
//!
//! # Precision rules, per detector
//!
//! - `email`: `local@domain`; the local part is `[A-Za-z0-9._%+-]` (the 64 bytes before
//!   the `@` when the run is longer: glued text; leading dots dropped, no trailing dot),
//!   the domain two or more labels of `[A-Za-z0-9-]` whose last label begins with 2+
//!   letters (the address ends after those letters: `a@b.com2024` is `a@b.com` glued to
//!   `2024`). Image names such as `icon@2x.png` are not addresses. Non-ASCII local parts
//!   are not recognised (they would swallow adjacent CJK text).
//! - `card`: 13–19 digits, contiguous or in groups (first group of 4, then groups of
//!   3–6, one kind of separator: single spaces or single dashes); a known IIN with a
//!   length that brand issues (Visa 4: 13/16/19; Mastercard 51–55, 2221–2720: 16; Amex
//!   34/37: 15; Discover 6011/644–649/65: 16–19; JCB 3528–3589: 16–19; Diners 30/36/38:
//!   14–19; UnionPay 62: 16–19) and Luhn-valid, so ids and timestamps are not cards.
//!   Longer digit runs: see the windows above. Mixed separators (`4111 1111-1111 1111`)
//!   are not a card.
//! - `ssn`: only the dashed `AAA-GG-SSSS` form, groups of exactly 3, 2 and 4 digits; a
//!   bare 9-digit run is far more often an id, an amount or a zip+4 than an SSN. Area
//!   not 000, 666 or 9xx; group not 00; serial not 0000.
//! - `iban`: a country code from the IBAN registry (any case), two check digits and the
//!   exact length that country uses, contiguous or in space-separated groups of four;
//!   mod 97 must be 1. Checked where a digit run follows two letters.
//! - `phone`: `+` followed by 8–15 digits in groups (`+44 20 7946 0958`,
//!   `+1 (415) 555-2671`, `+14155552671`; more digits in the chain and it is not a
//!   phone number; not after a digit or a number's exponent, `1e+100000000`), or a North
//!   American number `415-555-2671`, `415.555.2671`, `(415) 555-2671`, optionally `1-`
//!   first, with a valid area code and exchange. Plain digit runs, dates, times,
//!   versions and addresses never match.
//! - `ipv4`: a dotted quad of octets 0–255 without leading zeros, not inside a longer
//!   dotted sequence or glued to letters (`1.2.3.4.5` and `v1.2.3.4` are versions, not
//!   addresses: this detector keeps its boundaries, and is off by default).
//! - keys and tokens: the `secrets` submodule lists each body rule. A prefix glued to
//!   letters or digits is found for the distinctive prefixes (`xxghp_…`, `xxAKIA…`,
//!   `xxeyJ…`), not for `sk-` and `SK` (`task-…`, `DISK…`). A body longer than a
//!   format's exact length is a key with text glued after it and is masked through its
//!   end. A `-----BEGIN … PRIVATE KEY-----` block runs to its matching END line, or to
//!   the end of the text when there is none (fail closed).
//!
//! Overlaps between detectors: the earliest start wins, then the longest span, then the
//! detector listed first. A span that starts inside a winner is merged into it (the
//! winner is extended to its end), so no byte of any finding is left unmasked.
#![deny(clippy::indexing_slicing)]

mod custom;
mod email;
mod encoded;
mod numbers;
mod secrets;
#[cfg(test)]
mod tests;

/// Names of the built-in detectors, as used in config: exactly these strings.
pub const BUILTIN: &[&str] = &[
    "email",
    "card",
    "ssn",
    "iban",
    "phone",
    "ipv4",
    "jwt",
    "private_key",
    "aws_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "google_api_key",
    "openai_key",
    "anthropic_key",
    "npm_token",
    "sendgrid_key",
    "twilio_key",
];

/// The key and token detectors: what the group name `"secrets"` stands for. They are
/// the built-ins from `jwt` on.
pub const SECRETS: &[&str] = BUILTIN.split_at(FIRST_SECRET).1;

/// Where the key and token detectors start in [`BUILTIN`].
const FIRST_SECRET: usize = 6;

/// The detectors a group name stands for: `"secrets"` is every key and token detector
/// (jwt, private_key and every cloud/SaaS one). `None` when `name` is not a group.
pub fn expand_group(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "secrets" => Some(SECRETS),
        _ => None,
    }
}

/// Detectors on by default in the built-in rule set: everything except `ipv4`.
///
/// `ipv4` is off because a dotted quad is as often a version or a server address of no
/// one in particular as a person's address. `phone` is on: phone numbers are among the
/// most common PII in customer tables, and the detector only accepts `+`-prefixed
/// international numbers and punctuated North American numbers with a valid area code,
/// so plain digit runs, dates, times and versions are never taken for one; masking the
/// rare phone-shaped reference number is the safer mistake.
pub const DEFAULT_ON: &[&str] = &[
    "email",
    "card",
    "ssn",
    "iban",
    "phone",
    "jwt",
    "private_key",
    "aws_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook",
    "stripe_key",
    "google_api_key",
    "openai_key",
    "anthropic_key",
    "npm_token",
    "sendgrid_key",
    "twilio_key",
];

/// Longest custom detector name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest custom pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 4096;

/// One detector to compile into a [`Scanner`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DetectorSpec {
    /// A built-in detector by its [`BUILTIN`] name, or a group name from
    /// [`expand_group`] (which adds every detector of the group).
    Builtin(String),
    /// A user regular expression. `name` must match `[a-z0-9_]+` (at most
    /// [`MAX_NAME_LEN`] bytes) and differ from every built-in and group name and from
    /// `column`, so it can be written into a replacement. The pattern is compiled over
    /// bytes with ASCII classes (`\d`, `\w`, `\b` are ASCII), case-sensitive unless it
    /// says `(?i)`.
    Custom { name: String, pattern: String },
}

/// A detector within one [`Scanner`]; ask the scanner for its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DetectorId(pub u16);

/// One detected value: `text[start..end]` (byte offsets, `start < end`), found by
/// `detector`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub detector: DetectorId,
}

/// Why a set of detectors could not be compiled. Every variant about one detector
/// names it.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// A built-in name that is neither in [`BUILTIN`] nor a group.
    #[error("unknown built-in detector `{name}`")]
    UnknownBuiltin { name: String },
    /// A custom name outside `[a-z0-9_]{1,64}`.
    #[error("detector name `{name}` is not made of [a-z0-9_] (1 to 64 bytes)")]
    InvalidName { name: String },
    /// A custom name used twice, or equal to a built-in, group or reserved name.
    #[error("detector name `{name}` is used twice or is reserved")]
    DuplicateName { name: String },
    /// A custom pattern longer than [`MAX_PATTERN_LEN`].
    #[error("pattern of detector `{name}` is {len} bytes, more than {max}")]
    PatternTooLong {
        name: String,
        len: usize,
        max: usize,
    },
    /// A custom pattern that does not parse, or compiles past the size limits.
    #[error("pattern of detector `{name}` does not compile: {source}")]
    BadPattern {
        name: String,
        #[source]
        source: regex::Error,
    },
    /// A custom pattern that matches the empty string.
    #[error("pattern of detector `{name}` matches the empty string")]
    MatchesEmpty { name: String },
    /// More detectors than a [`DetectorId`] can number.
    #[error("more than 65535 detectors")]
    TooMany,
    /// The searcher for PEM END lines did not build (not expected).
    #[error("private key end-line searcher does not build: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
}

/// The built-in detectors, in [`BUILTIN`] order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Email,
    Card,
    Ssn,
    Iban,
    Phone,
    Ipv4,
    Jwt,
    PrivateKey,
    AwsAccessKey,
    GithubToken,
    GitlabToken,
    SlackToken,
    SlackWebhook,
    StripeKey,
    GoogleApiKey,
    OpenaiKey,
    AnthropicKey,
    NpmToken,
    SendgridKey,
    TwilioKey,
}

const KINDS: [Kind; 20] = [
    Kind::Email,
    Kind::Card,
    Kind::Ssn,
    Kind::Iban,
    Kind::Phone,
    Kind::Ipv4,
    Kind::Jwt,
    Kind::PrivateKey,
    Kind::AwsAccessKey,
    Kind::GithubToken,
    Kind::GitlabToken,
    Kind::SlackToken,
    Kind::SlackWebhook,
    Kind::StripeKey,
    Kind::GoogleApiKey,
    Kind::OpenaiKey,
    Kind::AnthropicKey,
    Kind::NpmToken,
    Kind::SendgridKey,
    Kind::TwilioKey,
];

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        BUILTIN
            .iter()
            .position(|n| *n == name)
            .and_then(|i| KINDS.get(i).copied())
    }
}

/// Which built-in detectors are on, and under which id.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ids([Option<DetectorId>; KINDS.len()]);

impl Ids {
    #[inline]
    fn get(&self, kind: Kind) -> Option<DetectorId> {
        self.0.get(kind as usize).copied().flatten()
    }

    fn any(&self, kinds: &[Kind]) -> bool {
        kinds.iter().any(|k| self.get(*k).is_some())
    }
}

// Byte classes of the main pass, as bits of [`Scanner::classes`].
const C_DIGIT: u8 = 1;
const C_AT: u8 = 2;
const C_PLUS: u8 = 4;
const C_PAREN: u8 = 8;
/// A byte that may begin a key or token where it starts a word (the `B` of
/// `-----BEGIN` too: it follows a dash).
const C_WORD_START: u8 = 16;
/// A byte that may begin an escape the decoded view reads (`%`, `\`, `&`, 0xEF).
const C_ESC: u8 = 32;
/// Not a trigger: whether the byte is an ASCII letter or digit.
const C_ALNUM: u8 = 64;

/// The byte at `i`, or 0 past the end; 0 is a boundary for every detector.
#[inline]
fn at(t: &[u8], i: usize) -> u8 {
    t.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline]
fn before(t: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(j) => at(t, j),
        None => 0,
    }
}

#[inline]
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end of the canonical UUID (`8-4-4-4-12` hex digits, nothing glued to it) whose
/// first group holds `i`, if there is one.
fn uuid_around(t: &[u8], i: usize) -> Option<usize> {
    let mut u = i;
    while u > 0 && i - u < 8 && before(t, u).is_ascii_hexdigit() {
        u -= 1;
    }
    let glued = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let shaped = !glued(before(t, u))
        && [8, 13, 18, 23].iter().all(|k| at(t, u + k) == b'-')
        && !glued(at(t, u + 36));
    (shaped && t.get(u..u + 36).is_some_and(encoded::is_uuid)).then_some(u + 36)
}

/// Whether `t[s..e]` lies inside a hex string: the run of ASCII letters and digits
/// around it is only hex digits, holds a letter, and is 32 long or more (an MD5, SHA or
/// `bytea` hex). Digits or an IBAN found there are chance, not a value glued to text:
/// a 64-digit hash holds a 13-digit Luhn-valid run about once in 30 000, an IBAN-shaped
/// piece far more often. Reads at most 256 bytes on each side.
fn in_hex_string(t: &[u8], s: usize, e: usize) -> bool {
    const REACH: usize = 256;
    let mut a = s;
    while a > s.saturating_sub(REACH) && before(t, a).is_ascii_alphanumeric() {
        a -= 1;
    }
    let mut b = e;
    while b < e + REACH && at(t, b).is_ascii_alphanumeric() {
        b += 1;
    }
    let run = t.get(a..b).unwrap_or_default();
    run.len() >= 32
        && run.iter().all(u8::is_ascii_hexdigit)
        && run.iter().any(u8::is_ascii_alphabetic)
}

#[inline]
fn push(out: &mut Vec<Finding>, start: usize, end: usize, detector: DetectorId) {
    out.push(Finding {
        start,
        end,
        detector,
    });
}

/// What a scan of one text may still do besides the main pass: a decoded text is
/// scanned again, but never decoded again the same way, so the work stays a small
/// multiple of the text's length.
#[derive(Clone, Copy)]
struct Layer {
    /// How many escape views may still be built on top of this text: two, so that a
    /// double URL encoding (`%2540`) is read.
    views: u8,
    /// Decode base64 and hex runs.
    decode: bool,
}

const TOP: Layer = Layer {
    views: 2,
    decode: true,
};

/// How many bytes of noise from text glued around an encoded run are dropped at the
/// edges of what it decodes to (see [`Scanner::decoded`]).
const EDGE_NOISE: usize = 6;
/// How many decoded bytes at each edge are read again without that noise: more than the
/// longest value of exact groups (a grouped card, 23 bytes).
const EDGE: usize = 64;

/// What the main pass saw of escapes.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// An escape the view decodes (see `encoded::starts_escape`).
    escape: bool,
    /// A `\` or `%`: a finding's edge may cut an escape.
    escape_bytes: bool,
}

/// A compiled set of detectors. Cheap to share (Send + Sync), built once per config load.
pub struct Scanner {
    names: Vec<String>,
    ids: Ids,
    /// Per byte value, the `C_*` bits the main pass acts on for this detector set.
    classes: [u8; 256],
    /// The trigger bits that fire where the previous byte is not / is an ASCII letter
    /// or digit; both 0 when the main pass has nothing to do.
    fire_at_word_start: u8,
    fire_in_word: u8,
    secrets: Option<secrets::Secrets>,
    custom: Vec<custom::Custom>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("detectors", &self.names)
            .finish()
    }
}

impl Scanner {
    /// Compiles `specs`. Duplicate built-ins are ignored; a group name adds its members.
    ///
    /// Fails on an unknown built-in name, an invalid or duplicate custom name, a custom
    /// pattern that is too long, does not compile, exceeds the compiled-size limits, or
    /// matches the empty string; the error names the detector.
    pub fn new(specs: &[DetectorSpec]) -> Result<Scanner, DetectError> {
        let mut names: Vec<String> = Vec::new();
        let mut ids = Ids::default();
        let mut custom = Vec::new();
        let add_name = |names: &mut Vec<String>, name: &str| -> Result<DetectorId, DetectError> {
            let id = u16::try_from(names.len()).map_err(|_| DetectError::TooMany)?;
            names.push(name.to_owned());
            Ok(DetectorId(id))
        };
        for spec in specs {
            match spec {
                DetectorSpec::Builtin(name) => {
                    let name = name.as_str();
                    let members: &[&str] = match expand_group(name) {
                        Some(group) => group,
                        None => std::slice::from_ref(&name),
                    };
                    for member in members {
                        let kind =
                            Kind::from_name(member).ok_or_else(|| DetectError::UnknownBuiltin {
                                name: (*member).to_owned(),
                            })?;
                        if ids.get(kind).is_some() {
                            continue;
                        }
                        let id = add_name(&mut names, member)?;
                        if let Some(slot) = ids.0.get_mut(kind as usize) {
                            *slot = Some(id);
                        }
                    }
                }
                DetectorSpec::Custom { name, pattern } => {
                    custom::check_name(name)?;
                    if names.iter().any(|n| n == name) {
                        return Err(DetectError::DuplicateName { name: name.clone() });
                    }
                    let re = custom::compile(name, pattern)?;
                    let id = add_name(&mut names, name)?;
                    custom.push(custom::Custom::new(id, re));
                }
            }
        }

        let on = |kind: Kind| ids.get(kind).is_some();
        let mut classes = [0u8; 256];
        let mut set = |bytes: &mut dyn Iterator<Item = u8>, bit: u8| {
            for b in bytes {
                if let Some(c) = classes.get_mut(usize::from(b)) {
                    *c |= bit;
                }
            }
        };
        set(&mut (0..=255u8).filter(u8::is_ascii_alphanumeric), C_ALNUM);
        if ids.any(&[Kind::Card, Kind::Ssn, Kind::Iban, Kind::Phone, Kind::Ipv4]) {
            set(&mut (b'0'..=b'9'), C_DIGIT);
        }
        if on(Kind::Email) {
            set(&mut std::iter::once(b'@'), C_AT);
        }
        if on(Kind::Phone) {
            set(&mut std::iter::once(b'+'), C_PLUS);
            set(&mut std::iter::once(b'('), C_PAREN);
        }
        set(&mut secrets::first_bytes(&ids).into_iter(), C_WORD_START);
        if !names.is_empty() {
            set(&mut [b'%', b'\\', b'&', 0xEF].into_iter(), C_ESC);
        }
        let triggers = classes.iter().fold(0u8, |acc, c| acc | c) & !C_ALNUM;
        // Inside a word everything but a key prefix can start: glued values are found
        // (a digit after a letter starts a number, an IBAN's check digits follow its
        // country code), and keys glued to a word are looked for in long runs instead.
        let fire_in_word = triggers & !C_WORD_START;

        let any_secret = SECRETS.iter().any(|n| Kind::from_name(n).is_some_and(on));
        let secrets = if any_secret {
            Some(secrets::Secrets::new(&ids)?)
        } else {
            None
        };
        Ok(Scanner {
            names,
            ids,
            classes,
            fire_at_word_start: triggers,
            fire_in_word,
            secrets,
            custom,
        })
    }

    /// True when no detector is on: [`Scanner::find`] never finds anything.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// How many detectors are on; ids are `0..len()`.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// The detector's config name (`"email"`, or the custom name); `"unknown"` for an id
    /// from another scanner.
    pub fn name(&self, id: DetectorId) -> &str {
        self.names
            .get(id.0 as usize)
            .map(String::as_str)
            .unwrap_or("unknown")
    }

    /// The id of the detector called `name`, if it is on.
    pub fn id_of(&self, name: &str) -> Option<DetectorId> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u16::try_from(i).ok())
            .map(DetectorId)
    }

    /// Appends the findings in `text` to `out`: sorted by start, non-overlapping
    /// (at one position the earliest start wins, then the longest). `text` is any bytes
    /// (usually UTF-8 but not guaranteed). Findings already in `out` are left alone.
    pub fn find(&self, text: &[u8], out: &mut Vec<Finding>) {
        if self.is_empty() {
            return;
        }
        let base = out.len();
        let seen = self.find_in::<false>(text, out, TOP);
        if seen.escape_bytes
            && let Some(found) = out.get_mut(base..)
        {
            for f in found {
                (f.start, f.end) = encoded::snap(text, f.start, f.end);
            }
        }
        resolve(out, base);
    }

    /// Quick check used on hot paths: could `text` contain anything at all?
    /// `false` means [`Scanner::find`] would find nothing.
    ///
    /// It is the same passes as `find`, stopping at the first finding, so it costs at
    /// most what `find` costs, and it is exact: `true` means `find` finds something.
    /// A caller that will rewrite the value anyway should call `find` alone: an empty
    /// result is the same answer, without a second pass.
    pub fn may_match(&self, text: &[u8]) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut first = Vec::new();
        self.find_in::<true>(text, &mut first, TOP);
        !first.is_empty()
    }

    /// Every detector on `t`, then on what `t` decodes to as `layer` allows. With
    /// `STOP`, returns as soon as `out` holds a finding. Findings are unsorted and may
    /// overlap. Returns what the main pass saw of escapes in `t`.
    fn find_in<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>, layer: Layer) -> Seen {
        let base = out.len();
        let found = |out: &Vec<Finding>| STOP && out.len() > base;
        let mut seen = Seen::default();
        if self.fire_at_word_start != 0 {
            seen = self.main_pass::<STOP>(t, out);
            if found(out) {
                return seen;
            }
        }
        for c in &self.custom {
            c.find::<STOP>(t, out);
            if found(out) {
                return seen;
            }
        }
        if layer.views > 0 && seen.escape {
            self.escape_view::<STOP>(t, out, layer);
            if found(out) {
                return seen;
            }
        }
        if t.len() >= encoded::MIN_RUN {
            self.runs::<STOP>(t, out, base, layer);
        }
        seen
    }

    /// Runs the detectors on the decoded escape view of `t` (in overlapping chunks when
    /// `t` is long) and maps what they find back to whole escapes of `t`.
    fn escape_view<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>, layer: Layer) {
        let inner = Layer {
            views: layer.views.saturating_sub(1),
            ..layer
        };
        let mut found = Vec::new();
        for (s, e) in encoded::chunks(0, t.len()) {
            let view = encoded::View::decode(t, s, e);
            found.clear();
            self.find_in::<STOP>(&view.text, &mut found, inner);
            for f in &found {
                if let Some((start, end)) = view.source(f.start, f.end) {
                    push(out, start, end, f.detector);
                }
            }
            if STOP && !found.is_empty() {
                return;
            }
        }
    }

    /// Looks into every long base64-alphabet run of `t`: for key prefixes glued to the
    /// text before them, and (when `layer` allows) for what the run decodes to as
    /// base64 or hex; a run whose decoded bytes hold a finding is masked whole, as the
    /// first detector that found something. UUIDs, and runs inside a finding already
    /// made (a JWT, a key, a card's digits: masked anyway), are skipped.
    /// `out[made..]` are the findings made in `t` so far.
    fn runs<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>, made: usize, layer: Layer) {
        let base = out.len();
        if let Some(found) = out.get_mut(made..) {
            found.sort_unstable_by_key(|f| f.start);
        }
        // Findings made so far, by start, and how far those starting before a run reach.
        let before_runs = out.len();
        let mut next = made;
        let mut covered_to = 0usize;
        let inner = Layer {
            decode: false,
            ..layer
        };
        let mut buf = Vec::new();
        let mut found = Vec::new();
        encoded::runs(t, |s, e| {
            let Some(run) = t.get(s..e) else { return false };
            if encoded::is_uuid(run) {
                return false;
            }
            // A run inside a finding made already is masked anyway.
            while let Some(f) = out.get(next).filter(|_| next < before_runs) {
                if f.start > s {
                    break;
                }
                covered_to = covered_to.max(f.end);
                next += 1;
            }
            if covered_to >= e {
                return false;
            }
            let shape = encoded::shape(run);
            if let Some(secrets) = &self.secrets {
                secrets.glued(t, s, e, shape.hex_only, &mut |kind, start, end| {
                    if let Some(id) = self.ids.get(kind) {
                        push(out, start, end, id);
                    }
                    STOP
                });
            }
            if STOP && out.len() > base {
                return true;
            }
            let long_hex = || encoded::hex_runs(t, s, e).next().is_some();
            if !layer.decode || !(shape.base64 || long_hex()) {
                return false;
            }
            // `=` padding after the run is masked with it. It does not tell the
            // alignment: glue after the run may end in `=` too.
            let pad = t
                .get(e..)
                .unwrap_or_default()
                .iter()
                .take(2)
                .take_while(|b| **b == b'=')
                .count();
            let mut decoded_finding = None;
            if shape.base64 {
                'align: for k in 0..4 {
                    for (cs, ce) in encoded::chunks(s + k, e) {
                        encoded::decode_base64(t.get(cs..ce).unwrap_or_default(), &mut buf);
                        decoded_finding =
                            self.decoded(&buf, (cs == s + k, ce == e), &mut found, inner);
                        if decoded_finding.is_some() {
                            break 'align;
                        }
                    }
                }
            }
            if decoded_finding.is_none() {
                'hex: for (hs, he) in encoded::hex_runs(t, s, e) {
                    for k in 0..2 {
                        for (cs, ce) in encoded::chunks(hs + k, he) {
                            encoded::decode_hex(t.get(cs..ce).unwrap_or_default(), &mut buf);
                            decoded_finding =
                                self.decoded(&buf, (cs == hs + k, ce == he), &mut found, inner);
                            if decoded_finding.is_some() {
                                break 'hex;
                            }
                        }
                    }
                }
            }
            if let Some(id) = decoded_finding {
                push(out, s, e + pad, id);
                return STOP;
            }
            false
        });
    }

    /// The first detector that finds something in decoded bytes. `first`, `last`: they
    /// start or end the run. Text glued before or after an encoded run decodes to a few
    /// bytes of noise next to the value, which hide a value of exact groups that ends or
    /// starts there (`200-200-0000` read as `200-200-00000`): the edges are also read
    /// without up to [`EDGE_NOISE`] bytes (8 glued base64 characters, 12 hex digits).
    /// Only short values can be hidden that way, so only [`EDGE`] bytes are read again.
    fn decoded(
        &self,
        decoded: &[u8],
        (first, last): (bool, bool),
        found: &mut Vec<Finding>,
        layer: Layer,
    ) -> Option<DetectorId> {
        let noise = EDGE_NOISE * (usize::from(first) + usize::from(last));
        if !encoded::looks_like_text(decoded, noise) {
            return None;
        }
        let n = decoded.len();
        let heads = (1..=EDGE_NOISE)
            .filter(|_| first)
            .map(|cut| (cut, (cut + EDGE).min(n)));
        let tails = (1..=EDGE_NOISE)
            .filter(|_| last)
            .filter_map(|cut| n.checked_sub(cut))
            .map(|end| (end.saturating_sub(EDGE), end));
        for (s, e) in std::iter::once((0, n)).chain(heads).chain(tails) {
            let Some(part) = decoded.get(s..e) else {
                continue;
            };
            found.clear();
            self.find_in::<true>(part, found, layer);
            if let Some(f) = found.first() {
                return Some(f.detector);
            }
        }
        None
    }

    /// The single byte pass of the built-in detectors. With `STOP`, returns at the
    /// first finding. Returns whether the text holds an escape for the decoded view, and
    /// whether it holds a `\` or `%` (a byte skipped inside a found key is not seen, but
    /// no finding ends inside a key).
    fn main_pass<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>) -> Seen {
        let mut memo = secrets::Memo::default();
        let mut seen = Seen::default();
        let base = out.len();
        // Locals, so the per-byte choice below is a register select: read through
        // `self`, it became a load chained from byte to byte (4× slower).
        let at_word_start = self.fire_at_word_start;
        let in_word = self.fire_in_word;
        let classes = &self.classes;
        let class = |b: u8| classes.get(usize::from(b)).copied().unwrap_or(0);
        let iban = self.ids.get(Kind::Iban).is_some();
        let ipv4 = self.ids.get(Kind::Ipv4).is_some();
        let mut prev = 0u8;
        let mut i = 0;
        loop {
            // The tight scan to the next byte that may start something: one backward
            // branch per byte and no call in the loop body (3× faster than a loop
            // with the dispatch inside).
            let Some(rest) = t.get(i..) else {
                return seen;
            };
            let mut fire = 0u8;
            let found = rest.iter().position(|&b| {
                let c = class(b);
                // All ones after a letter or digit, else zero: a branch here
                // mispredicts at every word boundary.
                let after_alnum = ((prev & C_ALNUM) >> C_ALNUM.trailing_zeros()).wrapping_neg();
                fire = c & ((in_word & after_alnum) | (at_word_start & !after_alnum));
                prev = c;
                fire != 0
            });
            let Some(k) = found else {
                return seen;
            };
            i += k;
            // Most stops are a number no detector can start with (one short group, a
            // date, a decimal), a word that is no key, or a backslash or `&` that
            // escapes nothing: skip those here, without a call. `prev` is then the
            // class of the byte at `i`.
            if fire == C_DIGIT {
                let end = numbers::digit_run(t, i);
                let p = before(t, i);
                if p.is_ascii_digit() {
                    // Resumed inside a digit run (after an address's `@`, say): the
                    // run's own start was looked at already.
                    i = end;
                    continue;
                }
                // A UUID (one a row, in most tables) would stop the pass at half a
                // dozen digit runs after its letters; its groups are too short or of
                // the wrong shape to hold any value, so it is skipped whole.
                if end - i <= 8
                    && matches!(at(t, end), b'-' | b'a'..=b'f' | b'A'..=b'F')
                    && let Some(after) = uuid_around(t, i)
                {
                    i = after;
                    continue;
                }
                let maybe_iban = iban
                    && end - i >= 2
                    && p.is_ascii_alphabetic()
                    && before(t, i - 1).is_ascii_alphabetic();
                if !maybe_iban && !numbers::worth_checking(t, i, end, ipv4) {
                    i = end;
                    continue;
                }
            } else if fire == C_WORD_START {
                if !secrets::plausible(at(t, i), at(t, i + 1)) {
                    i += 1;
                    continue;
                }
            } else if fire == C_ESC {
                seen.escape = seen.escape || encoded::starts_escape(t, i);
                seen.escape_bytes |= matches!(at(t, i), b'\\' | b'%');
                i += 1;
                continue;
            }
            let next = self.fire(t, i, fire, &mut memo, out);
            if STOP && out.len() > base {
                return seen;
            }
            prev = class(before(t, next));
            i = next;
        }
    }

    /// Runs the detectors that `fire` says may start at `i`; returns where the pass
    /// resumes (always after `i`).
    fn fire(
        &self,
        t: &[u8],
        i: usize,
        fire: u8,
        memo: &mut secrets::Memo,
        out: &mut Vec<Finding>,
    ) -> usize {
        if fire & C_DIGIT != 0 {
            return numbers::digits(t, i, &self.ids, out);
        }
        if fire & C_AT != 0 {
            if let (Some(id), Some((s, e))) = (self.ids.get(Kind::Email), email::at_sign(t, i)) {
                push(out, s, e, id);
            }
        } else if fire & C_PLUS != 0 {
            if let (Some(id), Some(e)) = (self.ids.get(Kind::Phone), numbers::plus(t, i)) {
                push(out, i, e, id);
            }
        } else if fire & C_PAREN != 0 {
            if let (Some(id), Some(e)) = (self.ids.get(Kind::Phone), numbers::paren(t, i)) {
                push(out, i, e, id);
            }
        } else if fire & C_WORD_START != 0
            && let Some(secrets) = &self.secrets
            && let Some((kind, s, e)) = secrets.at_word_start(t, i, memo)
            && let Some(id) = self.ids.get(kind)
        {
            push(out, s, e, id);
            return e;
        }
        i + 1
    }
}

/// Sorts `out[base..]` by start (then longest, then detector) and merges every finding
/// that starts inside an earlier kept one into it: the kept one is extended to the later
/// end, so overlapping findings never leave part of one unmasked.
fn resolve(out: &mut Vec<Finding>, base: usize) {
    let Some(tail) = out.get_mut(base..) else {
        return;
    };
    if tail.len() < 2 {
        return;
    }
    tail.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.detector.cmp(&b.detector))
    });
    let mut keep = 0usize;
    for r in 0..tail.len() {
        let Some(f) = tail.get(r).copied() else {
            break;
        };
        if let Some(last) = keep.checked_sub(1).and_then(|k| tail.get_mut(k))
            && f.start < last.end
        {
            last.end = last.end.max(f.end);
            continue;
        }
        if let Some(slot) = tail.get_mut(keep) {
            *slot = f;
        }
        keep += 1;
    }
    out.truncate(base + keep);
}
