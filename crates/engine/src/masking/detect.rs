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
//!   something can start: a digit, `+` or `(` that does not follow a letter or digit
//!   (numbers), an `@` (e-mail), or, at the start of a word, a byte that begins a key
//!   or token prefix (`eyJ`, `AKIA`, `ghp_`, `sk-`, …), the `B` of `-----BEGIN`, or a
//!   capital (IBAN). One or two more byte compares dismiss most stops (a number of one
//!   short group, a word that is no prefix) without leaving the loop;
//! - a digit run is read as the first of a chain of at most six digit groups, and the
//!   card, SSN, phone and IPv4 rules are checked on that chain with bounded work; an
//!   e-mail looks at most 64 bytes left and 253 right of its `@`;
//! - a key or token is checked by hand at its prefix, with the end of each body run
//!   remembered, and the pass resumes after a found one, so repeated prefixes
//!   (`-eyJ-eyJ…`) cannot make it quadratic;
//! - custom detectors are one `regex` search each (size-limited, ASCII classes).
//!
//! The built-in detectors are hand-written rather than regular expressions because
//! each needs validation (Luhn, mod 97, IIN and country tables, area codes) and exact
//! boundary rules, because a regex retried at every prefix of a long token run is
//! quadratic, and because one shared pass is several times faster than a search per
//! detector. Boundaries are ASCII: a value glued to letters, digits or `_` is part of
//! a longer word and is not reported; non-ASCII text around a value is a boundary.
//!
//! # Precision rules, per detector
//!
//! - `email`: `local@domain`; the local part is `[A-Za-z0-9._%+-]` (at most 64 bytes,
//!   leading dots dropped, no trailing dot), the domain two or more labels of
//!   `[A-Za-z0-9-]` ending in a letters-only top-level label of 2+ letters. Image names
//!   such as `icon@2x.png` are not addresses. Non-ASCII local parts are not recognised
//!   (they would swallow adjacent CJK text).
//! - `card`: 13–19 digits, contiguous or in groups (first group of 4, then groups of
//!   3–6, one kind of separator: single spaces or single dashes); a known IIN with a
//!   length that brand issues (Visa 4: 13/16/19; Mastercard 51–55, 2221–2720: 16; Amex
//!   34/37: 15; Discover 6011/644–649/65: 16–19; JCB 3528–3589: 16–19; Diners 30/36/38:
//!   14–19; UnionPay 62: 16–19) and Luhn-valid, so ids and timestamps are not cards.
//! - `ssn`: only the dashed `AAA-GG-SSSS` form; a bare 9-digit run is far more often an
//!   id, an amount or a zip+4 than an SSN. Area not 000, 666 or 9xx; group not 00;
//!   serial not 0000.
//! - `iban`: an uppercase country code from the IBAN registry, two check digits and the
//!   exact length that country uses, contiguous or in space-separated groups of four;
//!   mod 97 must be 1.
//! - `phone`: `+` followed by 8–15 digits in groups (`+44 20 7946 0958`,
//!   `+1 (415) 555-2671`, `+14155552671`; more digits in the chain and it is not a
//!   phone number), or a North American number `415-555-2671`,
//!   `415.555.2671`, `(415) 555-2671`, optionally `1-` first, with a valid area code
//!   and exchange. Plain digit runs, dates, times, versions and addresses never match.
//! - `ipv4`: a dotted quad of octets 0–255 without leading zeros, not inside a longer
//!   dotted sequence (`1.2.3.4.5` and `v1.2.3.4` do not match).
//! - keys and tokens: the literal prefix must not follow a letter or digit (so `task-`
//!   does not start an OpenAI key); the `secrets` submodule lists each body rule. A
//!   `-----BEGIN … PRIVATE KEY-----` block runs to its matching END line, or to the
//!   end of the text when there is none (fail closed).
//!
//! Overlaps between detectors: the earliest start wins, then the longest span, then the
//! detector listed first. A span that starts inside a winner is dropped whole.
#![deny(clippy::indexing_slicing)]

mod custom;
mod email;
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
/// A byte that may begin a key, a token or an IBAN where it starts a word (the `B` of
/// `-----BEGIN` too: it follows a dash).
const C_WORD_START: u8 = 16;
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

#[inline]
fn push(out: &mut Vec<Finding>, start: usize, end: usize, detector: DetectorId) {
    out.push(Finding {
        start,
        end,
        detector,
    });
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
        if ids.any(&[Kind::Card, Kind::Ssn, Kind::Phone, Kind::Ipv4]) {
            set(&mut (b'0'..=b'9'), C_DIGIT);
        }
        if on(Kind::Email) {
            set(&mut std::iter::once(b'@'), C_AT);
        }
        if on(Kind::Phone) {
            set(&mut std::iter::once(b'+'), C_PLUS);
            set(&mut std::iter::once(b'('), C_PAREN);
        }
        if on(Kind::Iban) {
            set(&mut (b'A'..=b'Z'), C_WORD_START);
        }
        set(&mut secrets::first_bytes(&ids).into_iter(), C_WORD_START);
        let triggers = classes.iter().fold(0u8, |acc, c| acc | c) & !C_ALNUM;
        // Inside a word only `@` can start anything (an address's local part is a word).
        let fire_in_word = triggers & C_AT;

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
        let base = out.len();
        if self.fire_at_word_start != 0 {
            self.main_pass::<false>(text, out);
        }
        for c in &self.custom {
            c.find(text, out);
        }
        resolve(out, base);
    }

    /// Quick check used on hot paths: could `text` contain anything at all?
    /// `false` means [`Scanner::find`] would find nothing.
    ///
    /// For the built-in detectors this is exact (`true` means `find` finds something):
    /// it is the same single pass as `find`, stopping at the first finding, so it costs
    /// at most what `find` costs. Custom detectors answer with the regex's `is_match`.
    /// A caller that will rewrite the value anyway should call `find` alone: an empty
    /// result is the same answer, without a second pass.
    pub fn may_match(&self, text: &[u8]) -> bool {
        if self.fire_at_word_start != 0 {
            let mut first = Vec::new();
            self.main_pass::<true>(text, &mut first);
            if !first.is_empty() {
                return true;
            }
        }
        self.custom.iter().any(|c| c.may_match(text))
    }

    /// The single byte pass of the built-in detectors. With `STOP`, returns at the
    /// first finding.
    fn main_pass<const STOP: bool>(&self, t: &[u8], out: &mut Vec<Finding>) {
        let mut memo = secrets::Memo::default();
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
            let Some(rest) = t.get(i..) else { return };
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
            let Some(k) = found else { return };
            i += k;
            // Most stops are a number no detector can start with (one short group, a
            // date, a decimal), or a word that is no key: skip those here, without a
            // call. `prev` is then a letter or digit.
            if fire == C_DIGIT {
                let end = numbers::digit_run(t, i);
                if !numbers::worth_checking(t, i, end, ipv4) {
                    i = end;
                    continue;
                }
            } else if fire == C_WORD_START {
                let (b0, b1) = (at(t, i), at(t, i + 1));
                let maybe_iban = iban
                    && b0.is_ascii_uppercase()
                    && b1.is_ascii_uppercase()
                    && at(t, i + 2).is_ascii_digit();
                if !maybe_iban && !secrets::plausible(b0, b1) {
                    i += 1;
                    continue;
                }
            }
            let next = self.fire(t, i, fire, &mut memo, out);
            if STOP && !out.is_empty() {
                return;
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
        } else if fire & C_WORD_START != 0 {
            if let Some(id) = self.ids.get(Kind::Iban)
                && let Some(e) = numbers::iban(t, i)
            {
                push(out, i, e, id);
                return e;
            }
            if let Some(secrets) = &self.secrets
                && let Some((kind, s, e)) = secrets.at_word_start(t, i, memo)
                && let Some(id) = self.ids.get(kind)
            {
                push(out, s, e, id);
                return e;
            }
        }
        i + 1
    }
}

/// Sorts `out[base..]` by start (then longest, then detector) and drops every finding
/// that starts inside an earlier kept one.
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
    let mut last_end = 0usize;
    for r in 0..tail.len() {
        let Some(f) = tail.get(r).copied() else {
            break;
        };
        if keep > 0 && f.start < last_end {
            continue;
        }
        if let Some(slot) = tail.get_mut(keep) {
            *slot = f;
        }
        keep += 1;
        last_end = f.end;
    }
    out.truncate(base + keep);
}
