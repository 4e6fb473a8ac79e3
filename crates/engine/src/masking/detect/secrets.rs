//! Key and token detectors: JWTs, PEM private keys and cloud/SaaS credentials.
//!
//! The main pass calls [`Secrets::at_word_start`] where a byte that begins one of the
//! enabled detectors' literal prefixes starts a word (for `-----BEGIN `, where its `B`
//! follows the dashes); the prefix is compared there and the detector's body checked
//! by hand:
//!
//! | detector | prefix | body |
//! |---|---|---|
//! | `jwt` | `eyJ` | `eyJ…` `.` `eyJ…` `.` signature, segments `[A-Za-z0-9_-]` (the signature may be empty) |
//! | `private_key` | `-----BEGIN ` | `(RSA \|EC \|DSA \|OPENSSH \|ENCRYPTED \|PGP )?PRIVATE KEY( BLOCK)?-----` through the matching END line, else to the end of the text |
//! | `aws_access_key` | `AKIA` `ASIA` `ABIA` `ACCA` | exactly 16 `[0-9A-Z]` |
//! | `github_token` | `ghp_` `gho_` `ghu_` `ghs_` `ghr_` / `github_pat_` | 36+ `[A-Za-z0-9]` / 22+ `[A-Za-z0-9_]` |
//! | `gitlab_token` | `glpat-` | 20+ `[A-Za-z0-9_-]` |
//! | `slack_token` | `xoxa-` `xoxb-` `xoxp-` `xoxo-` `xoxs-` `xoxr-` | 10+ `[A-Za-z0-9-]` |
//! | `slack_webhook` | `https://hooks.slack.com/services/` | 1+ `[A-Za-z0-9_/-]` |
//! | `stripe_key` | `sk_` `rk_` `pk_` + `live_`/`test_` | 16+ `[A-Za-z0-9]` |
//! | `google_api_key` | `AIza` | exactly 35 `[A-Za-z0-9_-]` |
//! | `openai_key` | `sk-` (not `sk-ant-`) | 20+ `[A-Za-z0-9_-]` holding a digit or capital (`sk-proj-…` included) |
//! | `anthropic_key` | `sk-ant-` | 20+ `[A-Za-z0-9_-]` |
//! | `npm_token` | `npm_` | exactly 36 `[A-Za-z0-9]` |
//! | `sendgrid_key` | `SG.` | exactly 22 `[A-Za-z0-9_-]`, `.`, exactly 43 `[A-Za-z0-9_-]` |
//! | `twilio_key` | `SK` | exactly 32 hex digits |
//!
//! Except for `private_key`, the prefix must not follow an ASCII letter or digit
//! (`task-…` holds no OpenAI key, base64 blobs hold no AWS keys).
//! "Exactly n" means the run of body characters is n long. Stripe's publishable `pk_`
//! keys are included: they are meant for web pages, but in a database they are
//! configuration an agent has no use for, and their format is unmistakable, so masking
//! them costs nothing.
//!
//! Why not an Aho-Corasick automaton over all the prefixes: measured here on ordinary
//! result text it ran at 400–500 MB/s on its own (the prefixes start with common
//! letters, so its prefilter verifies almost everywhere), while a word-start check
//! inside the main pass costs a two-byte compare ([`plausible`]). Aho-Corasick is
//! still used to find `-----END ` lines.
//!
//! Linear time: the main pass resumes after a found secret, and the end of the body
//! run from a position is remembered per detector, so prefixes repeated inside one long
//! run (`-eyJ-eyJ-eyJ…`) do not each rescan it.

use aho_corasick::{AhoCorasick, Input};

use super::{DetectError, Ids, Kind, at};

/// The first byte of every prefix of the enabled detectors (`B` for `-----BEGIN `): the
/// main pass calls [`Secrets::at_word_start`] where one of them starts a word.
pub(super) fn first_bytes(ids: &Ids) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut add = |kind: Kind, firsts: &[u8]| {
        if ids.get(kind).is_some() {
            bytes.extend_from_slice(firsts);
        }
    };
    add(Kind::Jwt, b"e");
    add(Kind::PrivateKey, b"B");
    add(Kind::AwsAccessKey, b"A");
    add(Kind::GithubToken, b"g");
    add(Kind::GitlabToken, b"g");
    add(Kind::SlackToken, b"x");
    add(Kind::SlackWebhook, b"h");
    add(Kind::StripeKey, b"srp");
    add(Kind::GoogleApiKey, b"A");
    add(Kind::OpenaiKey, b"s");
    add(Kind::AnthropicKey, b"s");
    add(Kind::NpmToken, b"n");
    add(Kind::SendgridKey, b"S");
    add(Kind::TwilioKey, b"S");
    bytes.sort_unstable();
    bytes.dedup();
    bytes
}

// Character classes of token bodies, as bits.
const B64URL: u8 = 1; // [A-Za-z0-9_-]
const ALNUM: u8 = 2; // [A-Za-z0-9]
const WORD: u8 = 4; // [A-Za-z0-9_]
const SLACK: u8 = 8; // [A-Za-z0-9-]
const URLPATH: u8 = 16; // [A-Za-z0-9_/-]
const UPPERNUM: u8 = 32; // [0-9A-Z]
const HEX: u8 = 64; // [0-9A-Fa-f]
/// Bytes that count as "strong" for the OpenAI body check.
const STRONG: u8 = 128; // [0-9A-Z]

static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let upper = b.is_ascii_uppercase();
        let lower = b.is_ascii_lowercase();
        let digit = b.is_ascii_digit();
        let alnum = upper || lower || digit;
        let mut c = 0;
        if alnum || b == b'_' || b == b'-' {
            c |= B64URL;
        }
        if alnum {
            c |= ALNUM;
        }
        if alnum || b == b'_' {
            c |= WORD;
        }
        if alnum || b == b'-' {
            c |= SLACK;
        }
        if alnum || b == b'_' || b == b'-' || b == b'/' {
            c |= URLPATH;
        }
        if upper || digit {
            c |= UPPERNUM | STRONG;
        }
        if digit || (b >= b'a' && b <= b'f') || (b >= b'A' && b <= b'F') {
            c |= HEX;
        }
        #[allow(clippy::indexing_slicing)] // constant evaluation
        {
            t[i] = c;
        }
        i += 1;
    }
    t
};

#[inline]
fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

#[inline]
fn in_class(b: u8, c: u8) -> bool {
    class(b) & c != 0
}

/// Whether `t[from..from + n]` is all `c` and the byte after is not.
fn exact_run(t: &[u8], from: usize, n: usize, c: u8) -> bool {
    (from..from + n).all(|p| in_class(at(t, p), c)) && !in_class(at(t, from + n), c)
}

/// The remembered body runs, one per use site, so queries from increasing positions
/// into the same run cost nothing.
#[derive(Clone, Copy)]
enum Slot {
    JwtHeader,
    JwtPayload,
    JwtSignature,
    Github,
    GithubPat,
    Gitlab,
    Slack,
    Webhook,
    Stripe,
    SkDash,
}
const SLOTS: usize = 10;

#[derive(Clone, Copy, Default)]
struct Run {
    start: usize,
    end: usize,
    /// The last STRONG byte in the run, if any.
    last_strong: Option<usize>,
}

#[derive(Default)]
pub(super) struct Memo([Option<Run>; SLOTS]);

impl Memo {
    /// The end of the run of class `c` starting at `from`, and whether `t[from..end]`
    /// holds a STRONG byte.
    fn run(&mut self, slot: Slot, t: &[u8], from: usize, c: u8) -> (usize, bool) {
        let Some(cell) = self.0.get_mut(slot as usize) else {
            return (from, false);
        };
        if let Some(r) = *cell
            && r.start <= from
            && from < r.end
        {
            return (r.end, r.last_strong.is_some_and(|s| s >= from));
        }
        let mut p = from;
        let mut last_strong = None;
        loop {
            let k = class(at(t, p));
            if k & c == 0 {
                break;
            }
            if k & STRONG != 0 {
                last_strong = Some(p);
            }
            p += 1;
        }
        *cell = Some(Run {
            start: from,
            end: p,
            last_strong,
        });
        (p, last_strong.is_some())
    }
}

const PEM_LABELS: &[&[u8]] = &[
    b"RSA ",
    b"EC ",
    b"DSA ",
    b"OPENSSH ",
    b"ENCRYPTED ",
    b"PGP ",
    b"",
];

/// Whether the two bytes can begin a prefix of [`first_bytes`]: a filter before
/// [`Secrets::at_word_start`].
#[inline(always)]
pub(super) fn plausible(b0: u8, b1: u8) -> bool {
    matches!(
        (b0, b1),
        (b'e', b'y')
            | (b'B', b'E')
            | (b'A', b'K' | b'S' | b'B' | b'C' | b'I')
            | (b'g', b'h' | b'i' | b'l')
            | (b'x', b'o')
            | (b'h', b't')
            | (b's' | b'r' | b'p', b'k')
            | (b'n', b'p')
            | (b'S', b'G' | b'K')
    )
}

pub(super) struct Secrets {
    ids: Ids,
    pem_end: AhoCorasick,
}

const STRIPE: &[&[u8]] = &[
    b"sk_live_",
    b"sk_test_",
    b"rk_live_",
    b"rk_test_",
    b"pk_live_",
    b"pk_test_",
];
const AWS: &[&[u8]] = &[b"AKIA", b"ASIA", b"ABIA", b"ACCA"];
const WEBHOOK: &[u8] = b"https://hooks.slack.com/services/";
const PEM_BEGIN: &[u8] = b"-----BEGIN ";

impl Secrets {
    pub(super) fn new(ids: &Ids) -> Result<Secrets, DetectError> {
        Ok(Secrets {
            ids: *ids,
            pem_end: AhoCorasick::new(["-----END "])?,
        })
    }

    fn on(&self, kind: Kind) -> bool {
        self.ids.get(kind).is_some()
    }

    /// The key or token whose prefix starts at `i`, a byte of [`first_bytes`] that does
    /// not follow an ASCII letter or digit: its detector, start and end.
    pub(super) fn at_word_start(
        &self,
        t: &[u8],
        i: usize,
        memo: &mut Memo,
    ) -> Option<(Kind, usize, usize)> {
        if at(t, i) == b'B' {
            let start = i.checked_sub(5)?;
            if !self.on(Kind::PrivateKey) || !t.get(start..)?.starts_with(PEM_BEGIN) {
                return None;
            }
            return self
                .private_key(t, start + PEM_BEGIN.len())
                .map(|end| (Kind::PrivateKey, start, end));
        }
        self.token(t, i, memo).map(|(kind, end)| (kind, i, end))
    }

    fn token(&self, t: &[u8], i: usize, memo: &mut Memo) -> Option<(Kind, usize)> {
        let rest = t.get(i..)?;
        let kind_end = |kind: Kind, end: Option<usize>| end.map(|e| (kind, e));
        match rest.first()? {
            b'e' if self.on(Kind::Jwt) && rest.starts_with(b"eyJ") => {
                kind_end(Kind::Jwt, jwt(t, i, memo))
            }
            b'A' => {
                if self.on(Kind::AwsAccessKey) && AWS.iter().any(|p| rest.starts_with(p)) {
                    kind_end(Kind::AwsAccessKey, exact(t, i + 4, 16, UPPERNUM, ALNUM))
                } else if self.on(Kind::GoogleApiKey) && rest.starts_with(b"AIza") {
                    kind_end(Kind::GoogleApiKey, exact(t, i + 4, 35, B64URL, B64URL))
                } else {
                    None
                }
            }
            b'g' => {
                let classic = rest.len() >= 4
                    && rest.starts_with(b"gh")
                    && matches!(at(t, i + 2), b'p' | b'o' | b'u' | b's' | b'r')
                    && at(t, i + 3) == b'_';
                if self.on(Kind::GithubToken) && classic {
                    let body = i + 4;
                    kind_end(
                        Kind::GithubToken,
                        at_least(memo.run(Slot::Github, t, body, ALNUM).0, body, 36),
                    )
                } else if self.on(Kind::GithubToken) && rest.starts_with(b"github_pat_") {
                    let body = i + 11;
                    kind_end(
                        Kind::GithubToken,
                        at_least(memo.run(Slot::GithubPat, t, body, WORD).0, body, 22),
                    )
                } else if self.on(Kind::GitlabToken) && rest.starts_with(b"glpat-") {
                    let body = i + 6;
                    kind_end(
                        Kind::GitlabToken,
                        at_least(memo.run(Slot::Gitlab, t, body, B64URL).0, body, 20),
                    )
                } else {
                    None
                }
            }
            b'x' if self.on(Kind::SlackToken)
                && rest.starts_with(b"xox")
                && matches!(at(t, i + 3), b'a' | b'b' | b'p' | b'o' | b's' | b'r')
                && at(t, i + 4) == b'-' =>
            {
                let body = i + 5;
                kind_end(
                    Kind::SlackToken,
                    at_least(memo.run(Slot::Slack, t, body, SLACK).0, body, 10),
                )
            }
            b'h' if self.on(Kind::SlackWebhook) && rest.starts_with(WEBHOOK) => {
                let body = i + WEBHOOK.len();
                kind_end(
                    Kind::SlackWebhook,
                    at_least(memo.run(Slot::Webhook, t, body, URLPATH).0, body, 1),
                )
            }
            b's' | b'r' | b'p' => {
                if self.on(Kind::StripeKey) && STRIPE.iter().any(|p| rest.starts_with(p)) {
                    let body = i + 8;
                    kind_end(
                        Kind::StripeKey,
                        at_least(memo.run(Slot::Stripe, t, body, ALNUM).0, body, 16),
                    )
                } else if (self.on(Kind::OpenaiKey) || self.on(Kind::AnthropicKey))
                    && rest.starts_with(b"sk-")
                {
                    let body = i + 3;
                    let (end, strong) = memo.run(Slot::SkDash, t, body, B64URL);
                    if rest.starts_with(b"sk-ant-") {
                        if !self.on(Kind::AnthropicKey) {
                            return None;
                        }
                        kind_end(Kind::AnthropicKey, at_least(end, body + 4, 20))
                    } else if self.on(Kind::OpenaiKey) && strong {
                        kind_end(Kind::OpenaiKey, at_least(end, body, 20))
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            b'n' if self.on(Kind::NpmToken) && rest.starts_with(b"npm_") => {
                kind_end(Kind::NpmToken, exact(t, i + 4, 36, ALNUM, WORD))
            }
            b'S' => {
                if self.on(Kind::SendgridKey) && rest.starts_with(b"SG.") {
                    let body = i + 3;
                    if !exact_run(t, body, 22, B64URL) || at(t, body + 22) != b'.' {
                        return None;
                    }
                    kind_end(Kind::SendgridKey, exact(t, body + 23, 43, B64URL, B64URL))
                } else if self.on(Kind::TwilioKey) && rest.starts_with(b"SK") {
                    kind_end(Kind::TwilioKey, exact(t, i + 2, 32, HEX, ALNUM))
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// `-----BEGIN <label>-----` with `body` after `BEGIN `, through
    /// `-----END <label>-----` or the end of the text.
    fn private_key(&self, t: &[u8], body: usize) -> Option<usize> {
        let rest = t.get(body..)?;
        let label_len = PEM_LABELS.iter().find_map(|prefix| {
            let after = rest.strip_prefix(*prefix)?;
            let after_key = after.strip_prefix(b"PRIVATE KEY".as_slice())?;
            let block = if after_key.starts_with(b" BLOCK") {
                6
            } else {
                0
            };
            after_key
                .get(block..)?
                .starts_with(b"-----")
                .then_some(prefix.len() + 11 + block)
        })?;
        let label = rest.get(..label_len)?;
        let search_from = body + label_len + 5;
        let input = Input::new(t).span(search_from.min(t.len())..t.len());
        for m in self.pem_end.find_iter(input) {
            let after = t.get(m.end()..).unwrap_or_default();
            if let Some(tail) = after.strip_prefix(label)
                && tail.starts_with(b"-----")
            {
                return Some(m.end() + label_len + 5);
            }
        }
        Some(t.len())
    }
}

/// `Some(end)` when the body `[body, end)` is at least `min` long.
fn at_least(end: usize, body: usize, min: usize) -> Option<usize> {
    (end >= body + min).then_some(end)
}

/// Exactly `n` bytes of class `c` at `from`, not followed by a byte of class `stop`.
fn exact(t: &[u8], from: usize, n: usize, c: u8, stop: u8) -> Option<usize> {
    let end = from + n;
    ((from..end).all(|p| in_class(at(t, p), c)) && !in_class(at(t, end), stop | c)).then_some(end)
}

/// `eyJ…` `.` `eyJ…` `.` signature, with `pos` at the first `eyJ`.
fn jwt(t: &[u8], pos: usize, memo: &mut Memo) -> Option<usize> {
    let (header_end, _) = memo.run(Slot::JwtHeader, t, pos, B64URL);
    if header_end < pos + 8 || at(t, header_end) != b'.' {
        return None;
    }
    let payload = header_end + 1;
    if !t.get(payload..).unwrap_or_default().starts_with(b"eyJ") {
        return None;
    }
    let (payload_end, _) = memo.run(Slot::JwtPayload, t, payload, B64URL);
    if payload_end < payload + 8 || at(t, payload_end) != b'.' {
        return None;
    }
    let (end, _) = memo.run(Slot::JwtSignature, t, payload_end + 1, B64URL);
    Some(end)
}
