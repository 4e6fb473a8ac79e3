//! Turning a discovery (per-column detector counts from the target) into a report: which
//! columns to add to a `[[masking]]` rule, which ones a rule already masks, and the
//! reviewable TOML text and `--json` document of `airlock masking discover`.
//!
//! Pure: no I/O, so every rendering is unit-tested here. It lives beside the command
//! rather than in the engine because its output is configuration syntax (TOML for the
//! `[[masking]]` table and comments for a reviewer), which is the surfaces' business;
//! the engine only lends its column patterns, so "already masked" means exactly what
//! the gateway would mask.

use std::collections::BTreeMap;

use airlock_config::Config;
use airlock_engine::masking::columns::{ColumnName, ColumnPattern};
use airlock_engine::masking::rules::{DEFAULT_COLUMNS, DEFAULT_RULE};
use airlock_postgres::discover::{Discovery, TableSample};
use serde_json::{Value, json};

/// The configured rules that already mask whole columns for everyone on the target.
#[derive(Debug, Default)]
pub struct Coverage {
    rules: Vec<(String, Vec<ColumnPattern>)>,
}

impl Coverage {
    /// Rules given as (name, column patterns).
    pub fn new(rules: Vec<(String, Vec<String>)>) -> Coverage {
        Coverage {
            rules: rules
                .into_iter()
                .map(|(name, patterns)| {
                    let compiled = patterns.iter().map(|p| ColumnPattern::new(p)).collect();
                    (name, compiled)
                })
                .collect(),
        }
    }

    /// The column rules of `config` that apply on `target` to everyone and enforce, and
    /// the built-in default rule when the target keeps it.
    pub fn from_config(config: &Config, target: &str) -> Coverage {
        let mut rules = Vec::new();
        if config
            .targets
            .iter()
            .any(|t| t.name() == target && t.default_masking)
        {
            let columns = DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
            rules.push((DEFAULT_RULE.to_owned(), columns));
        }
        for rule in &config.masking {
            let on_target = rule.targets.is_empty() || rule.targets.iter().any(|t| t == target);
            let for_everyone = rule.principals.is_empty() && rule.groups.is_empty();
            if on_target && for_everyone && rule.enforce && !rule.columns.is_empty() {
                rules.push((rule.name().to_owned(), rule.columns.clone()));
            }
        }
        Coverage::new(rules)
    }

    /// The first rule that masks this column, if any.
    pub fn covered_by(&self, schema: &str, table: &str, column: &str) -> Option<&str> {
        let name = ColumnName::of(schema, table, column);
        self.rules
            .iter()
            .find(|(_, patterns)| patterns.iter().any(|p| p.matches(&name)))
            .map(|(rule, _)| rule.as_str())
    }
}

/// What the command was asked, for the report's header.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The target sampled.
    pub target: String,
    /// Name of the generated rule.
    pub rule: String,
    /// `--sample`.
    pub sample: u32,
    /// `--min-share`.
    pub min_share: f64,
    /// When (RFC 3339).
    pub generated_at: String,
}

/// What becomes of a column in which detectors found something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Named in the generated rule.
    Added,
    /// Already masked by this rule.
    Covered(String),
    /// Matched, but in less than `--min-share` of the sampled values.
    BelowThreshold,
    /// A name holds a `.`, so no column pattern can name it.
    Unnameable,
}

impl Status {
    fn label(&self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Covered(_) => "covered",
            Status::BelowThreshold => "below_threshold",
            Status::Unnameable => "unnameable",
        }
    }
}

/// A column in which detectors found something.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
    /// Its type.
    pub type_name: String,
    /// Non-null values sampled.
    pub sampled: u64,
    /// Values in which something was found.
    pub matched: u64,
    /// Values per detector.
    pub detectors: BTreeMap<String, u64>,
    /// What becomes of it.
    pub status: Status,
}

impl Finding {
    fn share(&self) -> f64 {
        share(self.matched, self.sampled)
    }

    /// `schema.table.column`, the rule's pattern.
    fn pattern(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    /// `public.customers.email: email 98.0% of 500 sampled`, escaped for a comment.
    fn comment(&self) -> String {
        let mut detectors: Vec<(&String, &u64)> = self.detectors.iter().collect();
        detectors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let found = detectors
            .iter()
            .map(|(name, n)| format!("{} {}", escape(name), percent(share(**n, self.sampled))))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{}: {found} of {} sampled",
            escape(&self.pattern()),
            self.sampled
        )
    }
}

/// A table or column that was not sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `schema.table` or `schema.table.column`.
    pub what: String,
    /// Why.
    pub reason: String,
}

/// The outcome of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What was asked.
    pub settings: Settings,
    /// Tables with text-like columns, as sampled.
    pub tables: Vec<TableSample>,
    /// Text-like columns examined.
    pub columns: usize,
    /// Columns in which something was found, in table order.
    pub findings: Vec<Finding>,
    /// What was not sampled.
    pub skipped: Vec<Skipped>,
}

/// Not readable by the target's role.
pub const UNREADABLE: &str = "not readable by the target's role";

/// Classifies every column of `discovery`.
pub fn build(discovery: Discovery, coverage: &Coverage, settings: Settings) -> Report {
    let mut findings = Vec::new();
    let mut skipped = Vec::new();
    let mut columns = 0;
    for t in &discovery.tables {
        columns += t.columns.len();
        let table = format!("{}.{}", t.schema, t.table);
        if let Some(reason) = &t.error {
            skipped.push(Skipped {
                what: table.clone(),
                reason: reason.clone(),
            });
        }
        for c in &t.columns {
            if !c.readable {
                skipped.push(Skipped {
                    what: format!("{table}.{}", c.name),
                    reason: UNREADABLE.into(),
                });
                continue;
            }
            if c.matched == 0 {
                continue;
            }
            let status = if let Some(rule) = coverage.covered_by(&t.schema, &t.table, &c.name) {
                Status::Covered(rule.to_owned())
            } else if share(c.matched, c.sampled) < settings.min_share {
                Status::BelowThreshold
            } else if [&t.schema, &t.table, &c.name]
                .iter()
                .any(|n| n.contains('.'))
            {
                Status::Unnameable
            } else {
                Status::Added
            };
            findings.push(Finding {
                schema: t.schema.clone(),
                table: t.table.clone(),
                column: c.name.clone(),
                type_name: c.type_name.clone(),
                sampled: c.sampled,
                matched: c.matched,
                detectors: c.detectors.clone(),
                status,
            });
        }
    }
    Report {
        settings,
        tables: discovery.tables,
        columns,
        findings,
        skipped,
    }
}

impl Report {
    /// The columns named in the generated rule.
    pub fn added(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.status == Status::Added)
    }

    /// How many findings have this status label.
    pub fn count(&self, label: &str) -> usize {
        self.findings
            .iter()
            .filter(|f| f.status.label() == label)
            .count()
    }

    /// The rules file: comments for the reviewer, then the `[[masking]]` rule naming the
    /// added columns (absent when there are none, so the file is always valid to append
    /// to a configuration).
    pub fn rules_toml(&self) -> String {
        let s = &self.settings;
        let target = escape(&s.target);
        let mut out = String::new();
        let mut line = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };
        line(&format!(
            "# Masking rule proposed by `airlock masking discover` for target `{target}` at {}.",
            escape(&s.generated_at)
        ));
        line(&format!(
            "# Sampled up to {} rows of each of {} tables ({} text-like columns) and ran the default",
            s.sample,
            self.tables.len(),
            self.columns
        ));
        line(&format!(
            "# detectors; a column is proposed when at least {} of its sampled values matched.",
            percent(s.min_share)
        ));
        line("# Review it before adding it to the configuration: each column named below is then");
        line(&format!(
            "# masked whole, with every value computed from it, for every agent on `{target}`."
        ));
        line("# Detectors read values, not names: columns of passwords or free-form secrets are");
        line("# only found when their values have a recognisable shape.");
        let section = |out: &mut String, title: String, items: Vec<String>| {
            if items.is_empty() {
                return;
            }
            out.push_str("#\n");
            out.push_str(&format!("# {title}\n"));
            for item in items {
                out.push_str(&format!("#   {item}\n"));
            }
        };
        let of = |status: fn(&Status) -> bool| -> Vec<&Finding> {
            self.findings.iter().filter(|f| status(&f.status)).collect()
        };
        section(
            &mut out,
            "Already masked by a rule (already covered):".into(),
            of(|s| matches!(s, Status::Covered(_)))
                .iter()
                .map(|f| match &f.status {
                    Status::Covered(rule) => format!("{} (rule `{}`)", f.comment(), escape(rule)),
                    _ => f.comment(),
                })
                .collect(),
        );
        section(
            &mut out,
            format!("Below the threshold of {}:", percent(s.min_share)),
            of(|s| *s == Status::BelowThreshold)
                .iter()
                .map(|f| f.comment())
                .collect(),
        );
        section(
            &mut out,
            "A name holds a `.`, so no column pattern can name it (rely on detectors):".into(),
            of(|s| *s == Status::Unnameable)
                .iter()
                .map(|f| f.comment())
                .collect(),
        );
        section(
            &mut out,
            "Not sampled:".into(),
            self.skipped
                .iter()
                .map(|k| format!("{}: {}", escape(&k.what), escape(&k.reason)))
                .collect(),
        );
        out.push('\n');
        let added: Vec<&Finding> = self.added().collect();
        if added.is_empty() {
            out.push_str("# No new column holds PII above the threshold: nothing to add.\n");
            return out;
        }
        out.push_str("[[masking]]\n");
        out.push_str(&format!("name = {}\n", toml_string(&s.rule)));
        out.push_str(&format!("targets = [{}]\n", toml_string(&s.target)));
        out.push_str("columns = [\n");
        for f in added {
            out.push_str(&format!("  # {}\n", f.comment()));
            out.push_str(&format!("  {},\n", toml_string(&f.pattern())));
        }
        out.push_str("]\n");
        out
    }

    /// The `--json` document.
    pub fn to_json(&self) -> Value {
        let s = &self.settings;
        let tables: Vec<Value> = self
            .tables
            .iter()
            .map(|t| {
                json!({
                    "table": format!("{}.{}", t.schema, t.table),
                    "estimated_rows": t.estimated_rows,
                    "rows": t.rows,
                    "method": t.method.map(|m| m.label()),
                    "error": t.error,
                })
            })
            .collect();
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "column": f.pattern(),
                    "schema": f.schema,
                    "table": f.table,
                    "name": f.column,
                    "type": f.type_name,
                    "sampled": f.sampled,
                    "matched": f.matched,
                    "share": (f.share() * 10_000.0).round() / 10_000.0,
                    "detectors": f.detectors,
                    "status": f.status.label(),
                    "covered_by": match &f.status {
                        Status::Covered(rule) => Some(rule.as_str()),
                        _ => None,
                    },
                })
            })
            .collect();
        let skipped: Vec<Value> = self
            .skipped
            .iter()
            .map(|k| json!({ "what": k.what, "reason": k.reason }))
            .collect();
        json!({
            "target": s.target,
            "rule": s.rule,
            "generated_at": s.generated_at,
            "sample": s.sample,
            "min_share": s.min_share,
            "columns": self.columns,
            "tables": tables,
            "findings": findings,
            "skipped": skipped,
            "rules": self.rules_toml(),
        })
    }
}

fn share(matched: u64, sampled: u64) -> f64 {
    if sampled == 0 {
        0.0
    } else {
        matched as f64 / sampled as f64
    }
}

/// `0.98` as `98.0%`.
fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// The inside of a TOML basic string: `"` and `\` escaped, control characters as
/// `\uXXXX`. Also what a comment shows of a name, so no name can end a comment line.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_postgres::discover::{ColumnSample, Method};

    fn column(name: &str, sampled: u64, found: &[(&str, u64)]) -> ColumnSample {
        ColumnSample {
            name: name.into(),
            type_name: "text".into(),
            readable: true,
            sampled,
            matched: found.iter().map(|(_, n)| *n).max().unwrap_or(0),
            detectors: found.iter().map(|(d, n)| ((*d).to_owned(), *n)).collect(),
        }
    }

    fn table(schema: &str, name: &str, columns: Vec<ColumnSample>) -> TableSample {
        TableSample {
            schema: schema.into(),
            table: name.into(),
            estimated_rows: 500.0,
            rows: 500,
            method: Some(Method::Limit),
            columns,
            error: None,
        }
    }

    fn settings() -> Settings {
        Settings {
            target: "shop".into(),
            rule: "discovered-shop".into(),
            sample: 1000,
            min_share: 0.05,
            generated_at: "2026-01-02T03:04:05.000000Z".into(),
        }
    }

    fn sample() -> Discovery {
        let mut hidden = column("note", 0, &[]);
        hidden.readable = false;
        let mut broken = table("public", "big", vec![column("body", 0, &[])]);
        broken.error = Some("canceling statement due to statement timeout".into());
        broken.method = None;
        Discovery {
            tables: vec![
                table(
                    "public",
                    "customers",
                    vec![
                        column("name", 500, &[]),
                        column("email", 500, &[("email", 490)]),
                        column("ssn", 500, &[("ssn", 500)]),
                        column("notes", 500, &[("email", 5), ("phone", 1)]),
                        column("contact", 200, &[("email", 120), ("phone", 20)]),
                    ],
                ),
                table(
                    "odd",
                    "we\"ird\ntable",
                    vec![column("Mixed Case", 10, &[("card", 10)])],
                ),
                table("odd", "a.b", vec![column("c", 10, &[("iban", 10)])]),
                broken,
                table("public", "secrets", vec![hidden]),
            ],
        }
    }

    /// A fixed stand-in for the default rule (whose list grows over time).
    fn coverage() -> Coverage {
        Coverage::new(vec![(
            "default".into(),
            vec!["password".into(), "*_ssn".into(), "ssn".into()],
        )])
    }

    #[test]
    fn columns_are_added_covered_below_threshold_or_unnameable() {
        let r = build(sample(), &coverage(), settings());
        let status: Vec<(String, Status)> = r
            .findings
            .iter()
            .map(|f| (f.pattern(), f.status.clone()))
            .collect();
        assert_eq!(
            status,
            vec![
                ("public.customers.email".into(), Status::Added),
                (
                    "public.customers.ssn".into(),
                    Status::Covered("default".into())
                ),
                ("public.customers.notes".into(), Status::BelowThreshold),
                ("public.customers.contact".into(), Status::Added),
                ("odd.we\"ird\ntable.Mixed Case".into(), Status::Added),
                ("odd.a.b.c".into(), Status::Unnameable),
            ]
        );
        assert_eq!(r.columns, 9);
        assert_eq!(
            r.skipped,
            vec![
                Skipped {
                    what: "public.big".into(),
                    reason: "canceling statement due to statement timeout".into()
                },
                Skipped {
                    what: "public.secrets.note".into(),
                    reason: UNREADABLE.into()
                },
            ]
        );
    }

    #[test]
    fn the_rules_file_names_the_added_columns_with_a_comment_each() {
        let text = build(sample(), &coverage(), settings()).rules_toml();
        let expected_rule = "[[masking]]\n\
             name = \"discovered-shop\"\n\
             targets = [\"shop\"]\n\
             columns = [\n  \
               # public.customers.email: email 98.0% of 500 sampled\n  \
               \"public.customers.email\",\n  \
               # public.customers.contact: email 60.0%, phone 10.0% of 200 sampled\n  \
               \"public.customers.contact\",\n  \
               # odd.we\\\"ird\\ntable.Mixed Case: card 100.0% of 10 sampled\n  \
               \"odd.we\\\"ird\\ntable.Mixed Case\",\n\
             ]\n";
        assert!(text.ends_with(expected_rule), "{text}");
        for line in [
            "#   public.customers.ssn: ssn 100.0% of 500 sampled (rule `default`)\n",
            "# Below the threshold of 5.0%:\n#   public.customers.notes: email 1.0%, phone 0.2% of 500 sampled\n",
            "#   odd.a.b.c: iban 100.0% of 10 sampled\n",
            "# Not sampled:\n#   public.big: canceling statement due to statement timeout\n#   public.secrets.note: not readable by the target's role\n",
            "for target `shop` at 2026-01-02T03:04:05.000000Z.\n",
            "Sampled up to 1000 rows of each of 5 tables (9 text-like columns)",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // No name can break out of a comment: every line is a comment, blank, or TOML.
        for l in text.lines() {
            assert!(
                l.is_empty()
                    || l.starts_with('#')
                    || l.starts_with("  ")
                    || l.starts_with('[')
                    || l.starts_with("name =")
                    || l.starts_with("targets =")
                    || l.starts_with("columns =")
                    || l == "]",
                "unexpected line {l:?}"
            );
        }
    }

    /// The rule appended to a configuration loads and validates, and masks the columns
    /// it names (checked with the engine's own patterns).
    #[test]
    fn the_rules_file_appended_to_a_configuration_is_valid() {
        let base = "[server]\ndata_dir = \"d\"\n[postgres]\nlisten = \"127.0.0.1:16432\"\n\
                    [[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"h\"\n\
                    database = \"shop\"\nuser = \"app\"\npassword = \"env:PW\"\n";
        let report = build(sample(), &coverage(), settings());
        let text = format!("{base}\n{}", report.rules_toml());
        let config = airlock_config::parse_str(
            &text,
            std::path::Path::new("a.toml"),
            std::path::Path::new("/"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.masking.len(), 1);
        let rule = &config.masking[0];
        assert_eq!(rule.name(), "discovered-shop");
        assert_eq!(rule.targets, vec!["shop".to_owned()]);
        assert_eq!(
            rule.columns,
            vec![
                "public.customers.email".to_owned(),
                "public.customers.contact".to_owned(),
                "odd.we\"ird\ntable.Mixed Case".to_owned(),
            ]
        );
        // Once appended, a second run finds every column covered.
        let again = Coverage::from_config(&config, "shop");
        assert_eq!(
            again.covered_by("public", "customers", "contact"),
            Some("discovered-shop")
        );
        assert_eq!(
            again.covered_by("odd", "we\"ird\ntable", "mixed case"),
            Some("discovered-shop")
        );
        assert_eq!(
            again.covered_by("public", "customers", "ssn"),
            Some("default")
        );
        assert_eq!(again.covered_by("public", "customers", "name"), None);
        let second = build(sample(), &again, settings());
        assert_eq!(second.added().count(), 0);
        let text = format!("{base}\n{}", second.rules_toml());
        assert!(text.contains("nothing to add"), "{text}");
        let config = airlock_config::parse_str(
            &text,
            std::path::Path::new("a.toml"),
            std::path::Path::new("/"),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(config.masking.is_empty());
    }

    #[test]
    fn coverage_follows_targets_principals_and_default_masking() {
        let base = "[server]\ndata_dir = \"d\"\n[postgres]\nlisten = \"127.0.0.1:16432\"\n\
                    [[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"h\"\n\
                    database = \"shop\"\nuser = \"app\"\npassword = \"env:PW\"\n\
                    default_masking = false\n\
                    [[targets]]\nname = \"crm\"\nkind = \"postgres\"\nhost = \"h\"\n\
                    database = \"crm\"\nuser = \"app\"\npassword = \"env:PW\"\n\
                    [[masking]]\nname = \"crm-only\"\ntargets = [\"crm\"]\ncolumns = [\"contact\"]\n\
                    [[masking]]\nname = \"analysts\"\ngroups = [\"analysts\"]\ncolumns = [\"contact\"]\n\
                    [[masking]]\nname = \"watch\"\nenforce = false\ncolumns = [\"contact\"]\n\
                    [[masking]]\nname = \"all\"\ncolumns = [\"customers.notes\"]\n";
        let config = airlock_config::parse_str(
            base,
            std::path::Path::new("a.toml"),
            std::path::Path::new("/"),
        )
        .unwrap();
        let shop = Coverage::from_config(&config, "shop");
        assert_eq!(shop.covered_by("public", "customers", "contact"), None);
        assert_eq!(shop.covered_by("public", "customers", "ssn"), None);
        assert_eq!(shop.covered_by("public", "customers", "notes"), Some("all"));
        assert_eq!(shop.covered_by("public", "orders", "notes"), None);
        let crm = Coverage::from_config(&config, "crm");
        assert_eq!(
            crm.covered_by("public", "customers", "contact"),
            Some("crm-only")
        );
        assert_eq!(
            crm.covered_by("public", "customers", "ssn"),
            Some("default")
        );
    }

    #[test]
    fn the_json_report_has_the_documented_shape() {
        let r = build(sample(), &coverage(), settings());
        let j = r.to_json();
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "target",
                "rule",
                "generated_at",
                "sample",
                "min_share",
                "columns",
                "tables",
                "findings",
                "skipped",
                "rules"
            ]
        );
        assert_eq!(
            j["findings"][3],
            json!({
                "column": "public.customers.contact",
                "schema": "public",
                "table": "customers",
                "name": "contact",
                "type": "text",
                "sampled": 200,
                "matched": 120,
                "share": 0.6,
                "detectors": {"email": 120, "phone": 20},
                "status": "added",
                "covered_by": null,
            })
        );
        assert_eq!(j["findings"][1]["covered_by"], "default");
        assert_eq!(
            j["tables"][3],
            json!({
                "table": "public.big",
                "estimated_rows": 500.0,
                "rows": 500,
                "method": null,
                "error": "canceling statement due to statement timeout",
            })
        );
        assert_eq!(j["tables"][0]["method"], "limit");
        assert_eq!(j["rules"], r.rules_toml());
    }

    #[test]
    fn escaping_keeps_names_inside_strings_and_comments() {
        assert_eq!(escape("plain"), "plain");
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(
            escape("l1\nl2\r\t\u{7}\u{7f}"),
            "l1\\nl2\\r\\t\\u0007\\u007F"
        );
        assert_eq!(toml_string("ünï"), "\"ünï\"");
        assert_eq!(percent(0.98), "98.0%");
        assert_eq!(percent(0.05), "5.0%");
        assert_eq!(share(1, 0), 0.0);
    }
}
