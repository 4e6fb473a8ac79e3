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
//! | `aws_access_key` | `AKIA` `ASIA` `ABIA` `ACCA` | 16 `[0-9A-Z]` (or `[0-9a-z]`), a digit among them if more follow; in mixed case exactly 16 holding a digit |
//! | `github_token` | `ghp_` `gho_` `ghu_` `ghs_` `ghr_` / `github_pat_` | 36+ `[A-Za-z0-9]` / 22+ `[A-Za-z0-9_]` |
//! | `gitlab_token` | `glpat-` | 20+ `[A-Za-z0-9_-]` |
//! | `slack_token` | `xoxa-` `xoxb-` `xoxp-` `xoxo-` `xoxs-` `xoxr-` | 10+ `[A-Za-z0-9-]` |
//! | `slack_webhook` | `hooks.slack.com/services/` (with the `https://` before it) | 1+ `[A-Za-z0-9_/-]` |
//! | `stripe_key` | `sk_` `rk_` `pk_` + `live_`/`test_` | 16+ `[A-Za-z0-9]` |
//! | `google_api_key` | `AIza` (in another case: `AIzaSy`) | 35+ `[A-Za-z0-9_-]` |
//! | `openai_key` | `sk-` (not `sk-ant-`) | 20+ `[A-Za-z0-9_-]` holding a digit or capital (`sk-proj-…` included) |
//! | `anthropic_key` | `sk-ant-` | 20+ `[A-Za-z0-9_-]` |
//! | `npm_token` | `npm_` | 36+ `[A-Za-z0-9]` |
//! | `sendgrid_key` | `SG.` | exactly 22 `[A-Za-z0-9_-]`, `.`, 43+ `[A-Za-z0-9_-]` |
//! | `twilio_key` | `SK` | 32+ hex digits, then any letters and digits |
//!
//! Fail closed:
//!
//! - **case**: prefixes are matched in any case (`GHP_…`, `akia…`), except `sk-`
//!   (OpenAI, Anthropic) and `-----BEGIN`, matched as written: `SK-…` is a common
//!   product-code shape, and those keys are long mixed-case base62, so a case change
//!   leaves nothing usable. A GitHub or npm token with its case changed can be
//!   recovered (its checksum tells the right spelling offline), an AWS key id or a
//!   Twilio key (upper case, hex) loses nothing.
//! - **glued suffix**: the formats of an exact length (AWS, Google, npm, SendGrid,
//!   Twilio) take a longer body as the key with text glued after it, and mask through
//!   the end of the run. An AWS body longer than 16 must be in one case and hold a digit
//!   in its first 16, so that upper-case words (`ASIAPACIFICREGIONALOFFICE`) and random
//!   base64 stay.
//! - **glued prefix**: a key whose prefix follows a letter or digit (`xxghp_…`, from a
//!   concatenation or a generated value) is looked for by [`Secrets::glued`] in every
//!   long run of token characters, with an Aho-Corasick automaton (ASCII case
//!   insensitive) over the distinctive prefixes. The weak ones are left out there:
//!   `sk-` (OpenAI; `task-…`, `risk-…`) and `SK` (Twilio; `DISK…`, `ASK…`) only start
//!   a word; a glued `sk-ant-` needs a digit or capital in its body (`task-ant-farm-…`).
//!   Runs of hex digits and dashes only (UUIDs, hashes) are not searched: `ACCA` is the
//!   one prefix that could appear there, by chance. A prefix deeper than
//!   [`GLUED_REACH`] characters into a run is taken for chance in random base64 (JWTs
//!   aside: their `.eyJ` is not chance), and Google keys are looked for as `AIzaSy`,
//!   the start every one of them has.
//!
//! Stripe's publishable `pk_` keys are included: they are meant for web pages, but in a
//! database they are configuration an agent has no use for, and their format is
//! unmistakable, so masking them costs nothing.
//!
//! Why not an Aho-Corasick automaton over all the text: measured here on ordinary
//! result text it ran at 400–500 MB/s on its own (the prefixes start with common
//! letters, so its prefilter verifies almost everywhere), while a word-start check
//! inside the main pass costs a two-byte compare ([`plausible`]). The automaton only
//! reads the long runs the skip search finds, and `-----END ` lines.
//!
//! Linear time: the main pass resumes after a found secret, and the end of the body
//! run from a position is remembered per detector, so prefixes repeated inside one long
//! run (`-eyJ-eyJ-eyJ…`, `AKIAAKIA…`) do not each rescan it.

use aho_corasick::{AhoCorasick, Input};

use super::{DetectError, Ids, Kind, at};

/// The first byte of every prefix of the enabled detectors, in both cases where the
/// prefix is matched in any case (`B` for `-----BEGIN `): the main pass calls
/// [`Secrets::at_word_start`] where one of them starts a word.
pub(super) fn first_bytes(ids: &Ids) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut add = |kind: Kind, firsts: &[u8]| {
        if ids.get(kind).is_some() {
            bytes.extend_from_slice(firsts);
        }
    };
    add(Kind::Jwt, b"eE");
    add(Kind::PrivateKey, b"B");
    add(Kind::AwsAccessKey, b"aA");
    add(Kind::GithubToken, b"gG");
    add(Kind::GitlabToken, b"gG");
    add(Kind::SlackToken, b"xX");
    add(Kind::SlackWebhook, b"hH");
    add(Kind::StripeKey, b"srpSRP");
    add(Kind::GoogleApiKey, b"aA");
    add(Kind::OpenaiKey, b"s");
    add(Kind::AnthropicKey, b"s");
    add(Kind::NpmToken, b"nN");
    add(Kind::SendgridKey, b"sS");
    add(Kind::TwilioKey, b"sS");
    bytes.sort_unstable();
    bytes.dedup();
    bytes
}

/// The prefixes [`Secrets::glued`] looks for inside a word, by detector.
const GLUED: &[(Kind, &[&str])] = &[
    (Kind::Jwt, &["eyj"]),
    (Kind::AwsAccessKey, &["akia", "asia", "abia", "acca"]),
    (
        Kind::GithubToken,
        &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"],
    ),
    (Kind::GitlabToken, &["glpat-"]),
    (
        Kind::SlackToken,
        &["xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"],
    ),
    (
        Kind::StripeKey,
        &[
            "sk_live_", "sk_test_", "rk_live_", "rk_test_", "pk_live_", "pk_test_",
        ],
    ),
    (Kind::GoogleApiKey, &["aizasy"]),
    (Kind::AnthropicKey, &["sk-ant-"]),
    (Kind::NpmToken, &["npm_"]),
];

/// How far into a run of token characters [`Secrets::glued`] takes a prefix glued to
/// the text before it (JWTs aside).
const GLUED_REACH: usize = 64;

/// Whether `rest` starts with `prefix` (lower case), ignoring ASCII case.
#[inline]
fn starts_ci(rest: &[u8], prefix: &[u8]) -> bool {
    rest.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
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
    /// `[A-Za-z0-9]` runs of AWS, npm and Twilio bodies.
    Alnum,
    /// `[A-Za-z0-9_-]` runs of Google and SendGrid bodies.
    B64,
    /// Hex runs of Twilio bodies.
    Hex,
}
const SLOTS: usize = 13;

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
/// [`Secrets::at_word_start`]. Letters are compared in lower case (`| 0x20` maps no
/// other byte onto a lower-case letter).
#[inline(always)]
pub(super) fn plausible(b0: u8, b1: u8) -> bool {
    (b0 == b'B' && b1 == b'E')
        || matches!(
            (b0 | 0x20, b1 | 0x20),
            (b'e', b'y')
                | (b'a', b'k' | b's' | b'b' | b'c' | b'i')
                | (b'g', b'h' | b'i' | b'l')
                | (b'x', b'o')
                | (b'h', b'o')
                | (b's' | b'r' | b'p', b'k')
                | (b'n', b'p')
                | (b's', b'g')
        )
}

pub(super) struct Secrets {
    ids: Ids,
    pem_end: AhoCorasick,
    /// The distinctive prefixes of the enabled detectors, for [`Secrets::glued`]; `None`
    /// when none is on.
    glued: Option<AhoCorasick>,
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
const WEBHOOK: &[u8] = b"hooks.slack.com/services/";
const PEM_BEGIN: &[u8] = b"-----BEGIN ";

impl Secrets {
    pub(super) fn new(ids: &Ids) -> Result<Secrets, DetectError> {
        let prefixes: Vec<&str> = GLUED
            .iter()
            .filter(|(kind, _)| ids.get(*kind).is_some())
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let glued = if prefixes.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(prefixes)?,
            )
        };
        Ok(Secrets {
            ids: *ids,
            pem_end: AhoCorasick::new(["-----END "])?,
            glued,
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
        self.token(t, i, memo, false)
    }

    /// Keys whose prefix is glued to the letters or digits before it, inside the run of
    /// token characters `t[s..e]`: each is reported as `(detector, start, end)` until
    /// `report` returns `true`.
    /// `hex_only`: the run is hex digits and dashes only.
    pub(super) fn glued(
        &self,
        t: &[u8],
        s: usize,
        e: usize,
        hex_only: bool,
        report: &mut dyn FnMut(Kind, usize, usize) -> bool,
    ) {
        let mut memo = Memo::default();
        // SendGrid's `SG.` glued to a word: the run is the part after the dot.
        if self.on(Kind::SendgridKey)
            && let Some(p) = s.checked_sub(3)
            && starts_ci(t.get(p..).unwrap_or_default(), b"sg.")
            && let Some((kind, start, end)) = self.token(t, p, &mut memo, true)
            && report(kind, start, end)
        {
            return;
        }
        if hex_only {
            return;
        }
        if let Some(ac) = &self.glued {
            let mut resume = s;
            for m in ac.find_iter(Input::new(t).span(s..e)) {
                // Deep in a long run, a prefix is more likely chance in random base64
                // than a key glued after 64 letters and digits; a JWT's `.eyJ` is not.
                let at_prefix = t.get(m.start()..).unwrap_or_default();
                let deep = m.start() - s > GLUED_REACH && !starts_ci(at_prefix, b"eyj");
                if m.start() < resume || deep {
                    continue;
                }
                if let Some((kind, start, end)) = self.token(t, m.start(), &mut memo, true) {
                    resume = end;
                    if report(kind, start, end) {
                        return;
                    }
                }
            }
        }
    }

    /// The key or token whose prefix starts at `i`. `glued`: the prefix follows a
    /// letter or digit, and weak prefixes do not count.
    fn token(
        &self,
        t: &[u8],
        i: usize,
        memo: &mut Memo,
        glued: bool,
    ) -> Option<(Kind, usize, usize)> {
        let rest = t.get(i..)?;
        let ci = |prefix: &[u8]| starts_ci(rest, prefix);
        let found = |kind: Kind, end: Option<usize>| end.map(|e| (kind, i, e));
        match rest.first()?.to_ascii_lowercase() {
            b'e' if self.on(Kind::Jwt) && ci(b"eyj") => found(Kind::Jwt, jwt(t, i, memo)),
            b'a' => {
                if self.on(Kind::AwsAccessKey) && AWS.iter().any(|p| ci(p)) {
                    found(Kind::AwsAccessKey, aws(t, i + 4, memo))
                } else if self.on(Kind::GoogleApiKey)
                    && (rest.starts_with(b"AIza") || ci(b"aizasy"))
                {
                    let body = i + 4;
                    let end = memo.run(Slot::B64, t, body, B64URL).0;
                    found(Kind::GoogleApiKey, at_least(end, body, 35))
                } else {
                    None
                }
            }
            b'g' => {
                let classic = ci(b"gh")
                    && matches!(
                        at(t, i + 2).to_ascii_lowercase(),
                        b'p' | b'o' | b'u' | b's' | b'r'
                    )
                    && at(t, i + 3) == b'_';
                if self.on(Kind::GithubToken) && classic {
                    let body = i + 4;
                    found(
                        Kind::GithubToken,
                        at_least(memo.run(Slot::Github, t, body, ALNUM).0, body, 36),
                    )
                } else if self.on(Kind::GithubToken) && ci(b"github_pat_") {
                    let body = i + 11;
                    found(
                        Kind::GithubToken,
                        at_least(memo.run(Slot::GithubPat, t, body, WORD).0, body, 22),
                    )
                } else if self.on(Kind::GitlabToken) && ci(b"glpat-") {
                    let body = i + 6;
                    found(
                        Kind::GitlabToken,
                        at_least(memo.run(Slot::Gitlab, t, body, B64URL).0, body, 20),
                    )
                } else {
                    None
                }
            }
            b'x' if self.on(Kind::SlackToken)
                && ci(b"xox")
                && matches!(
                    at(t, i + 3).to_ascii_lowercase(),
                    b'a' | b'b' | b'p' | b'o' | b's' | b'r'
                )
                && at(t, i + 4) == b'-' =>
            {
                let body = i + 5;
                found(
                    Kind::SlackToken,
                    at_least(memo.run(Slot::Slack, t, body, SLACK).0, body, 10),
                )
            }
            b'h' if self.on(Kind::SlackWebhook) && ci(WEBHOOK) => {
                let body = i + WEBHOOK.len();
                let end = at_least(memo.run(Slot::Webhook, t, body, URLPATH).0, body, 1)?;
                // The scheme before the host is part of the URL to mask.
                let scheme = [b"https://".as_slice(), b"http://"]
                    .into_iter()
                    .find(|s| {
                        i.checked_sub(s.len())
                            .and_then(|p| t.get(p..i))
                            .is_some_and(|w| w.eq_ignore_ascii_case(s))
                    })
                    .map_or(0, <[u8]>::len);
                Some((Kind::SlackWebhook, i - scheme, end))
            }
            b's' | b'r' | b'p' => self.s_token(t, i, memo, glued),
            b'n' if self.on(Kind::NpmToken) && ci(b"npm_") => {
                let body = i + 4;
                let end = memo.run(Slot::Alnum, t, body, ALNUM).0;
                found(Kind::NpmToken, at_least(end, body, 36))
            }
            _ => None,
        }
    }

    /// The tokens that start with `s`, `r` or `p`: Stripe, OpenAI, Anthropic, SendGrid,
    /// Twilio.
    fn s_token(
        &self,
        t: &[u8],
        i: usize,
        memo: &mut Memo,
        glued: bool,
    ) -> Option<(Kind, usize, usize)> {
        let rest = t.get(i..)?;
        let ci = |prefix: &[u8]| starts_ci(rest, prefix);
        let found = |kind: Kind, end: Option<usize>| end.map(|e| (kind, i, e));
        if self.on(Kind::StripeKey) && STRIPE.iter().any(|p| ci(p)) {
            let body = i + 8;
            return found(
                Kind::StripeKey,
                at_least(memo.run(Slot::Stripe, t, body, ALNUM).0, body, 16),
            );
        }
        if (self.on(Kind::OpenaiKey) || self.on(Kind::AnthropicKey)) && rest.starts_with(b"sk-") {
            let body = i + 3;
            let (end, strong) = memo.run(Slot::SkDash, t, body, B64URL);
            if rest.starts_with(b"sk-ant-") {
                if !self.on(Kind::AnthropicKey) || (glued && !strong) {
                    return None;
                }
                return found(Kind::AnthropicKey, at_least(end, body + 4, 20));
            }
            if self.on(Kind::OpenaiKey) && strong && !glued {
                return found(Kind::OpenaiKey, at_least(end, body, 20));
            }
            return None;
        }
        if self.on(Kind::SendgridKey) && ci(b"sg.") {
            let body = i + 3;
            if !exact_run(t, body, 22, B64URL) || at(t, body + 22) != b'.' {
                return None;
            }
            let second = body + 23;
            let end = memo.run(Slot::B64, t, second, B64URL).0;
            return found(Kind::SendgridKey, at_least(end, second, 43));
        }
        if self.on(Kind::TwilioKey) && ci(b"sk") && !glued {
            let body = i + 2;
            let hex_end = memo.run(Slot::Hex, t, body, HEX).0;
            if hex_end < body + 32 {
                return None;
            }
            // Letters and digits glued after the hex are masked with it.
            let end = memo.run(Slot::Alnum, t, body, ALNUM).0;
            return found(Kind::TwilioKey, Some(end));
        }
        None
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

/// An AWS key id's body at `body`, returning the end of its run of letters and digits:
///
/// - 16 `[0-9A-Z]` (or, lower-cased, `[0-9a-z]`) as issued, with a digit among them
///   when more letters or digits are glued after (`ASIAPACIFICREGIONALOFFICE` is a
///   word);
/// - or, its case changed at random, exactly 16 holding a digit.
///
/// A body of mixed case with text glued after it is not taken: random base64 holds
/// `akia`-like text every few hundred KB, and would be masked.
fn aws(t: &[u8], body: usize, memo: &mut Memo) -> Option<usize> {
    let end = memo.run(Slot::Alnum, t, body, ALNUM).0;
    let first = t.get(body..body + 16)?;
    if end < body + 16 {
        return None;
    }
    let one_case = first.iter().all(|b| in_class(*b, UPPERNUM))
        || first
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let digit = first.iter().any(u8::is_ascii_digit);
    let exact = end == body + 16;
    ((one_case && (exact || digit)) || (exact && digit)).then_some(end)
}

/// `eyJ…` `.` `eyJ…` `.` signature, with `pos` at the first `eyJ` (any case).
fn jwt(t: &[u8], pos: usize, memo: &mut Memo) -> Option<usize> {
    let (header_end, _) = memo.run(Slot::JwtHeader, t, pos, B64URL);
    if header_end < pos + 8 || at(t, header_end) != b'.' {
        return None;
    }
    let payload = header_end + 1;
    if !starts_ci(t.get(payload..).unwrap_or_default(), b"eyj") {
        return None;
    }
    let (payload_end, _) = memo.run(Slot::JwtPayload, t, payload, B64URL);
    if payload_end < payload + 8 || at(t, payload_end) != b'.' {
        return None;
    }
    let (end, _) = memo.run(Slot::JwtSignature, t, payload_end + 1, B64URL);
    Some(end)
}
