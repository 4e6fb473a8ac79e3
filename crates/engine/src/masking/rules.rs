//! Masking rules, compiled: which rules apply to a session, and the session's [`Masker`]
//! that masks one value at a time (so results stream).
//!
//! One [`Scanner`] holds the detectors of every rule; a session's masker only acts on the
//! findings of the detectors its rules enable. When several rules cover the same column
//! or detector, the strictest style wins (`redact` over `hash` over `partial`), and an
//! enforcing rule wins over an observe-only one.

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_model::Principal;

use super::columns::{ColumnName, ColumnPattern};
use super::detect::{self, DetectError, DetectorId, DetectorSpec, Finding, Scanner};
use super::redact::{HashKey, Style, rewrite, write_mask};

/// Why rules could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum MaskingError {
    /// A detector is unknown or its regex is invalid.
    #[error("masking rule `{rule}`: {error}")]
    Detector {
        /// The rule.
        rule: String,
        /// What is wrong.
        error: DetectError,
    },
    /// A detector name is not a built-in one.
    #[error(
        "masking rule `{rule}`: unknown detector `{name}`; the built-in ones are {known}, plus `secrets` and `default`"
    )]
    UnknownDetector {
        /// The rule.
        rule: String,
        /// The name given.
        name: String,
        /// The valid names.
        known: String,
    },
    /// Two rules define a regex detector of the same name differently.
    #[error("masking rules define the regex `{name}` twice with different patterns")]
    RegexClash {
        /// The detector name.
        name: String,
    },
}

/// One rule as configured, with its hash key resolved.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Unique name.
    pub name: String,
    /// Targets it applies to; empty means all.
    pub targets: Vec<String>,
    /// Principals it applies to; with `groups` empty too, everyone.
    pub principals: Vec<String>,
    /// Groups it applies to.
    pub groups: Vec<String>,
    /// Column patterns.
    pub columns: Vec<String>,
    /// Built-in detector names (or the groups `secrets`, `default`).
    pub detectors: Vec<String>,
    /// Regex detectors: name → pattern.
    pub regexes: BTreeMap<String, String>,
    /// How values are replaced.
    pub style: Style,
    /// `false`: count only.
    pub enforce: bool,
    /// Key of the `hash` style.
    pub key: Arc<HashKey>,
    /// Withhold what cannot be masked (an HTTP response of a type no masker reads:
    /// images, PDFs, octet streams) instead of passing it unmasked.
    pub withhold_unmaskable: bool,
}

/// The name of the built-in default rule.
pub const DEFAULT_RULE: &str = "default";

/// Column names masked by the built-in default rule.
pub const DEFAULT_COLUMNS: &[&str] = &[
    "password",
    "*_password",
    "*password_hash",
    "rolpassword",
    "passwd",
    "pwd",
    "secret",
    "*_secret",
    "secret_*",
    "token",
    "*_token",
    "api_key",
    "*_api_key",
    "apikey",
    "private_key",
    "*_private_key",
    "access_key",
    "secret_key",
    "*_secret_key",
    "ssn",
    "*_ssn",
    "social_security_number",
    "card_number",
    "*_card_number",
    "card",
    "pan",
    "credit_card",
    "credit_card_number",
    "cc_number",
    "cvv",
    "cvc",
    // E-mail, phone and bank account columns: detectors find such values where they
    // are, but a function of the column (`reverse(email)`, `substr(card, 4)`) hides
    // them from detectors; a column rule follows them through the statement.
    "email",
    "*_email",
    "email_address",
    "*_email_address",
    "e_mail",
    "phone",
    "*_phone",
    "phone_number",
    "*_phone_number",
    "mobile",
    "mobile_number",
    "telephone",
    "iban",
    "*_iban",
    "bank_account",
    "*_bank_account",
    "bank_account_number",
    "account_number",
    "*_account_number",
    "routing_number",
];

/// The built-in default rule: the default detectors and the usual sensitive column
/// names, redacted, for everyone on the given targets.
pub fn default_rule(targets: Vec<String>, key: Arc<HashKey>) -> RuleSpec {
    RuleSpec {
        name: DEFAULT_RULE.into(),
        targets,
        principals: Vec::new(),
        groups: Vec::new(),
        columns: DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect(),
        detectors: vec!["default".into()],
        regexes: BTreeMap::new(),
        style: Style::Redact,
        enforce: true,
        key,
        withhold_unmaskable: false,
    }
}

#[derive(Debug)]
struct CompiledRule {
    spec: RuleSpec,
    columns: Vec<ColumnPattern>,
    detectors: Vec<DetectorId>,
}

/// Every configured rule, compiled once per configuration load.
#[derive(Debug)]
pub struct MaskingRules {
    rules: Vec<CompiledRule>,
    scanner: Arc<Scanner>,
}

impl MaskingRules {
    /// Compiles `specs`; an unknown detector or a bad regex is an error naming the rule.
    pub fn compile(specs: Vec<RuleSpec>) -> Result<MaskingRules, MaskingError> {
        let mut detector_specs: Vec<DetectorSpec> = Vec::new();
        let mut builtin_seen: Vec<String> = Vec::new();
        let mut regex_seen: BTreeMap<String, String> = BTreeMap::new();
        let mut per_rule: Vec<Vec<String>> = Vec::new();
        for spec in &specs {
            let mut names = Vec::new();
            for d in &spec.detectors {
                let expanded: Vec<&str> = if d == "default" {
                    detect::DEFAULT_ON.to_vec()
                } else if let Some(group) = detect::expand_group(d) {
                    group.to_vec()
                } else if detect::BUILTIN.contains(&d.as_str()) {
                    vec![d.as_str()]
                } else {
                    return Err(MaskingError::UnknownDetector {
                        rule: spec.name.clone(),
                        name: d.clone(),
                        known: detect::BUILTIN.join(", "),
                    });
                };
                for name in expanded {
                    if !builtin_seen.iter().any(|b| b == name) {
                        builtin_seen.push(name.to_owned());
                        detector_specs.push(DetectorSpec::Builtin(name.to_owned()));
                    }
                    names.push(name.to_owned());
                }
            }
            for (name, pattern) in &spec.regexes {
                match regex_seen.get(name) {
                    Some(p) if p != pattern => {
                        return Err(MaskingError::RegexClash { name: name.clone() });
                    }
                    Some(_) => {}
                    None => {
                        // Compiled alone first, so that an error names its own rule.
                        Scanner::new(&[DetectorSpec::Custom {
                            name: name.clone(),
                            pattern: pattern.clone(),
                        }])
                        .map_err(|error| MaskingError::Detector {
                            rule: spec.name.clone(),
                            error,
                        })?;
                        if builtin_seen.iter().any(|b| b == name) {
                            return Err(MaskingError::RegexClash { name: name.clone() });
                        }
                        regex_seen.insert(name.clone(), pattern.clone());
                        detector_specs.push(DetectorSpec::Custom {
                            name: name.clone(),
                            pattern: pattern.clone(),
                        });
                    }
                }
                names.push(name.clone());
            }
            per_rule.push(names);
        }
        let scanner = Scanner::new(&detector_specs).map_err(|error| MaskingError::Detector {
            rule: "(all rules together)".into(),
            error,
        })?;
        let rules = specs
            .into_iter()
            .zip(per_rule)
            .map(|(spec, names)| CompiledRule {
                columns: spec.columns.iter().map(|c| ColumnPattern::new(c)).collect(),
                detectors: names.iter().filter_map(|n| scanner.id_of(n)).collect(),
                spec,
            })
            .collect();
        Ok(MaskingRules {
            rules,
            scanner: Arc::new(scanner),
        })
    }

    /// Whether any rule exists at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The masker for a session of `principal` on `target`, or `None` when no rule
    /// applies.
    pub fn for_session(&self, target: &str, principal: &Principal) -> Option<Arc<Masker>> {
        let mut masker = Masker {
            scanner: self.scanner.clone(),
            detectors: vec![None; self.scanner.len()],
            columns: Vec::new(),
            rule_names: Vec::new(),
            withholds: None,
            names: std::sync::Mutex::default(),
        };
        for rule in &self.rules {
            let s = &rule.spec;
            let on_target = s.targets.is_empty() || s.targets.iter().any(|t| t == target);
            let for_everyone = s.principals.is_empty() && s.groups.is_empty();
            let for_principal = for_everyone
                || s.principals.contains(&principal.name)
                || s.groups.iter().any(|g| principal.groups.contains(g));
            if !(on_target && for_principal) {
                continue;
            }
            let index = u16::try_from(masker.rule_names.len()).unwrap_or(u16::MAX);
            masker.rule_names.push(s.name.clone());
            if s.withhold_unmaskable && s.enforce && masker.withholds.is_none() {
                masker.withholds = Some(s.name.clone());
            }
            let apply = Apply {
                style: s.style,
                enforce: s.enforce,
                rule: index,
                key: s.key.clone(),
            };
            for id in &rule.detectors {
                if let Some(slot) = masker.detectors.get_mut(usize::from(id.0)) {
                    *slot = Some(match slot.take() {
                        Some(old) => old.stricter(apply.clone()),
                        None => apply.clone(),
                    });
                }
            }
            for c in &rule.columns {
                masker.columns.push((c.clone(), apply.clone()));
            }
        }
        (!masker.rule_names.is_empty()).then(|| Arc::new(masker))
    }
}

/// How one rule masks: its style, whether it enforces, and its key.
#[derive(Debug, Clone)]
pub struct Apply {
    /// The replacement style.
    pub style: Style,
    /// `false`: counted, passed through.
    pub enforce: bool,
    rule: u16,
    key: Arc<HashKey>,
}

impl Apply {
    /// Of two rules covering the same thing, the one that wins.
    pub fn stricter(self, other: Apply) -> Apply {
        match (self.enforce, other.enforce) {
            (true, false) => self,
            (false, true) => other,
            _ if other.style > self.style => other,
            _ => self,
        }
    }
}

/// What a session's masking did, per rule and per detector (or `column`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    counts: BTreeMap<(u16, String), u64>,
}

impl Tally {
    fn add(&mut self, rule: u16, what: &str) {
        match self.counts.get_mut(&(rule, what.to_owned())) {
            Some(n) => *n += 1,
            None => {
                self.counts.insert((rule, what.to_owned()), 1);
            }
        }
    }

    /// Nothing counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Moves the counts of `other` into this one.
    pub fn absorb(&mut self, other: &mut Tally) {
        for (k, v) in std::mem::take(&mut other.counts) {
            *self.counts.entry(k).or_insert(0) += v;
        }
    }

    /// `{"rule": {"detector": n}}` as recorded in result events (`masked`).
    pub fn to_json(&self, masker: &Masker) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for ((rule, what), n) in &self.counts {
            let name = masker
                .rule_names
                .get(usize::from(*rule))
                .cloned()
                .unwrap_or_default();
            let entry = out
                .entry(name)
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(m) = entry {
                m.insert(what.clone(), serde_json::Value::from(*n));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// What a scan of one value found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Nothing to mask: pass the value as it is.
    Clean,
    /// Something was masked: the replacement text is in `out`.
    Masked,
}

/// One session's masking: column rules and detectors, one value at a time.
#[derive(Debug)]
pub struct Masker {
    scanner: Arc<Scanner>,
    /// Per detector id, the rule that acts on its findings in this session.
    detectors: Vec<Option<Apply>>,
    columns: Vec<(ColumnPattern, Apply)>,
    rule_names: Vec<String>,
    /// The rule that withholds what cannot be masked, if one applies.
    withholds: Option<String>,
    /// What `name_is_masked` found for names seen before.
    names: std::sync::Mutex<std::collections::HashMap<Box<str>, Option<Apply>>>,
}

/// Most names `name_is_masked` remembers per session (then it starts over).
const NAME_CACHE: usize = 4096;

impl Masker {
    /// The rule that masks a column known by any of `names` (its origin and its label),
    /// if one does.
    pub fn column(&self, names: &[ColumnName<'_>]) -> Option<Apply> {
        let mut found: Option<Apply> = None;
        for (pattern, apply) in &self.columns {
            if names.iter().any(|n| pattern.matches(n)) {
                found = Some(match found {
                    Some(f) => f.stricter(apply.clone()),
                    None => apply.clone(),
                });
            }
        }
        found
    }

    /// Whether some column rule names a column called `name` (in any table): used for
    /// JSON keys and for expressions over columns.
    pub fn name_is_masked(&self, name: &str) -> Option<Apply> {
        // JSON documents repeat their keys (every object of an array, every response
        // of an API): each distinct name is matched against the patterns once.
        if let Ok(cache) = self.names.lock()
            && let Some(hit) = cache.get(name)
        {
            return hit.clone();
        }
        let found = self.column(&[ColumnName::bare(name)]);
        if let Ok(mut cache) = self.names.lock() {
            if cache.len() >= NAME_CACHE {
                cache.clear();
            }
            cache.insert(name.into(), found.clone());
        }
        found
    }

    /// The strictest of the session's column rules: what a column of unknown origin gets.
    pub fn strictest_column_rule(&self) -> Option<Apply> {
        self.columns
            .iter()
            .map(|(_, a)| a.clone())
            .reduce(Apply::stricter)
    }

    /// Whether the session has column rules at all.
    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Writes the mask of a whole value covered by `apply` (a masked column) and counts
    /// it. Returns whether the value is to be replaced (`false` for observe-only rules).
    pub fn whole(&self, apply: &Apply, value: &[u8], out: &mut Vec<u8>, tally: &mut Tally) -> bool {
        tally.add(apply.rule, "column");
        if !apply.enforce {
            return false;
        }
        write_mask(apply.style, "column", value, &apply.key, out);
        true
    }

    /// Runs the detectors over `text`. When something enforced is found, the whole text
    /// with each finding replaced is written to `out`.
    pub fn scan(&self, text: &[u8], out: &mut Vec<u8>, tally: &mut Tally) -> Scan {
        if self.scanner.is_empty() {
            return Scan::Clean;
        }
        // `find` on text without findings costs what `may_match` does: one pass.
        let mut findings: Vec<Finding> = Vec::new();
        self.scanner.find(text, &mut findings);
        if findings.is_empty() {
            return Scan::Clean;
        }
        let start = out.len();
        let masked = rewrite(
            text,
            &findings,
            |f, found, out| {
                let Some(Some(apply)) = self.detectors.get(usize::from(f.detector.0)) else {
                    return false;
                };
                let kind = self.scanner.name(f.detector);
                tally.add(apply.rule, kind);
                if apply.enforce {
                    write_mask(apply.style, kind, found, &apply.key, out);
                }
                apply.enforce
            },
            out,
        );
        if !masked {
            out.truncate(start);
            return Scan::Clean;
        }
        Scan::Masked
    }

    /// `text` with the detectors' findings replaced, or `None` when nothing is masked.
    pub fn scan_str(&self, text: &str, tally: &mut Tally) -> Option<String> {
        let mut out = Vec::new();
        match self.scan(text.as_bytes(), &mut out, tally) {
            Scan::Clean => None,
            // Replacements are ASCII and cut at finding boundaries of the (UTF-8) input.
            Scan::Masked => Some(String::from_utf8_lossy(&out).into_owned()),
        }
    }

    /// Masks every string inside a recorded JSON value (statement parameters, error
    /// messages), in place.
    pub fn mask_json_strings(&self, value: &mut serde_json::Value, tally: &mut Tally) {
        match value {
            serde_json::Value::String(s) => {
                if let Some(masked) = self.scan_str(s, tally) {
                    *s = masked;
                }
            }
            serde_json::Value::Array(items) => {
                for i in items {
                    self.mask_json_strings(i, tally);
                }
            }
            serde_json::Value::Object(map) => {
                for (_, v) in map.iter_mut() {
                    self.mask_json_strings(v, tally);
                }
            }
            _ => {}
        }
    }

    /// The enforcing rule of this session that withholds what cannot be masked, if any.
    pub fn withholds_unmaskable(&self) -> Option<&str> {
        self.withholds.as_deref()
    }

    /// Whether any detector of this session could find something in `text` (a cheap
    /// pre-check).
    pub fn may_find(&self, text: &[u8]) -> bool {
        !self.scanner.is_empty() && self.scanner.may_match(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::json::mask_json;

    fn principal(name: &str, groups: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            source: airlock_model::PrincipalSource::ServiceToken,
            expires_at: None,
        }
    }

    fn rule(name: &str, style: Style) -> RuleSpec {
        RuleSpec {
            name: name.into(),
            targets: Vec::new(),
            principals: Vec::new(),
            groups: Vec::new(),
            columns: Vec::new(),
            detectors: Vec::new(),
            regexes: BTreeMap::new(),
            style,
            enforce: true,
            withhold_unmaskable: false,
            key: Arc::new(HashKey::new(b"0123456789abcdef".to_vec())),
        }
    }

    fn masked(m: &Masker, text: &str) -> String {
        let mut out = Vec::new();
        let mut t = Tally::default();
        match m.scan(text.as_bytes(), &mut out, &mut t) {
            Scan::Clean => text.to_owned(),
            Scan::Masked => String::from_utf8(out).unwrap(),
        }
    }

    #[test]
    fn rules_apply_by_target_principal_and_group() {
        let mut scoped = rule("scoped", Style::Redact);
        scoped.targets = vec!["shop".into()];
        scoped.groups = vec!["analysts".into()];
        scoped.detectors = vec!["email".into()];
        let rules = MaskingRules::compile(vec![scoped]).unwrap();
        assert!(
            rules
                .for_session("shop", &principal("a", &["analysts"]))
                .is_some()
        );
        assert!(
            rules
                .for_session("shop", &principal("a", &["ops"]))
                .is_none()
        );
        assert!(
            rules
                .for_session("crm", &principal("a", &["analysts"]))
                .is_none()
        );
    }

    #[test]
    fn the_strictest_enforcing_rule_wins() {
        let mut partial = rule("partial", Style::Partial);
        partial.detectors = vec!["card".into()];
        partial.columns = vec!["password".into()];
        let mut watch = rule("watch", Style::Redact);
        watch.detectors = vec!["card".into()];
        watch.enforce = false;
        let rules = MaskingRules::compile(vec![partial.clone(), watch]).unwrap();
        let m = rules.for_session("shop", &principal("a", &[])).unwrap();
        assert_eq!(masked(&m, "card 4111 1111 1111 1111"), "card ****1111");
        let mut redact = rule("redact", Style::Redact);
        redact.detectors = vec!["card".into()];
        let rules = MaskingRules::compile(vec![partial, redact]).unwrap();
        let m = rules.for_session("shop", &principal("a", &[])).unwrap();
        assert_eq!(masked(&m, "4111111111111111"), "[REDACTED:card]");
        assert_eq!(
            m.column(&[ColumnName::bare("PASSWORD")]).unwrap().style,
            Style::Partial
        );
    }

    #[test]
    fn observe_only_counts_and_passes() {
        let mut watch = rule("watch", Style::Redact);
        watch.detectors = vec!["email".into()];
        watch.enforce = false;
        let rules = MaskingRules::compile(vec![watch]).unwrap();
        let m = rules.for_session("shop", &principal("a", &[])).unwrap();
        let mut out = Vec::new();
        let mut t = Tally::default();
        assert_eq!(m.scan(b"a@example.com", &mut out, &mut t), Scan::Clean);
        assert_eq!(t.to_json(&m), serde_json::json!({"watch": {"email": 1}}));
    }

    #[test]
    fn bad_rules_are_errors_naming_the_rule() {
        let mut r = rule("r1", Style::Redact);
        r.detectors = vec!["emial".into()];
        let e = MaskingRules::compile(vec![r]).unwrap_err().to_string();
        assert!(e.contains("r1") && e.contains("emial"), "{e}");
        let mut r = rule("r2", Style::Redact);
        r.regexes.insert("empty".into(), "x*".into());
        let e = MaskingRules::compile(vec![r]).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let mut r = rule("r3", Style::Redact);
        r.regexes.insert("bad".into(), "(".into());
        assert!(MaskingRules::compile(vec![r]).is_err());
    }

    #[test]
    fn json_is_masked_by_key_and_value_and_otherwise_kept_byte_for_byte() {
        let rules = MaskingRules::compile(vec![default_rule(
            vec!["shop".into()],
            Arc::new(HashKey::new(Vec::new())),
        )])
        .unwrap();
        let m = rules.for_session("shop", &principal("a", &[])).unwrap();
        let mut t = Tally::default();
        let doc = br#"{"id": 12345678901234567890, "password": {"nested": [1, "x"]}, "note" : "mail ada@example.com", "api_key": null, "n": 4111111111111111}"#;
        let mut out = Vec::new();
        assert!(mask_json(&m, doc, &mut out, &mut t).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"id": 12345678901234567890, "password": "[REDACTED:column]", "note" : "mail [REDACTED:email]", "api_key": null, "n": "[REDACTED:card]"}"#
        );
        let mut out = Vec::new();
        assert!(!mask_json(&m, br#"[1, {"a": "b"}]"#, &mut out, &mut t).unwrap());
        assert_eq!(out, br#"[1, {"a": "b"}]"#);
        for bad in [&b"{"[..], b"[1,]x", b"{\"a\" 1}", b"\"open"] {
            assert!(
                mask_json(&m, bad, &mut Vec::new(), &mut t).is_err(),
                "{bad:?}"
            );
        }
        let deep = "[".repeat(300) + &"]".repeat(300);
        assert!(mask_json(&m, deep.as_bytes(), &mut Vec::new(), &mut t).is_err());
    }

    #[test]
    fn escaped_and_encoded_json_values_are_masked_and_stay_json() {
        let rules = MaskingRules::compile(vec![default_rule(
            vec!["shop".into()],
            Arc::new(HashKey::new(Vec::new())),
        )])
        .unwrap();
        let m = rules.for_session("shop", &principal("a", &[])).unwrap();
        let mut t = Tally::default();
        for doc in [
            r#"{"a": "ada\u0040example.com"}"#,
            r#"{"a": "x\u0040ada@example.com"}"#,
            r#"{"a": "line\nada@example.com"}"#,
            r#"{"a": "\\nada@example.com"}"#,
            r#"{"a": "\u0034111111111111111"}"#,
            r#"{"a": "id4111111111111111\""}"#,
            r#"{"a": "https:\/\/hooks.slack.com\/services\/T0\/B0\/XX"}"#,
            r#"{"a": "YWRhQGV4YW1wbGUuY29t"}"#,
            r#"{"a": "\uff41\uff44\uff41\uff20example.com"}"#,
            r#"{"a": "ada%40example.com"}"#,
        ] {
            let mut out = Vec::new();
            assert!(
                mask_json(&m, doc.as_bytes(), &mut out, &mut t).unwrap(),
                "{doc}"
            );
            let value: serde_json::Value = serde_json::from_slice(&out)
                .unwrap_or_else(|e| panic!("{doc} -> {}: {e}", String::from_utf8_lossy(&out)));
            let a = value["a"].as_str().unwrap();
            for secret in [
                "ada@",
                "4111111111111111",
                "hooks.slack",
                "YWRh",
                "%40",
                "\u{ff20}",
            ] {
                assert!(!a.contains(secret), "{doc} -> {a}");
            }
        }
    }
}
