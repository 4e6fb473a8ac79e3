//! `airlock masking discover`: sampling a real target through its vaulted credential
//! finds exactly the columns that hold PII (glued into text, inside JSON, in arrays, in
//! a table sampled with TABLESAMPLE, under names that need quoting), skips what the
//! role cannot read, proposes a rule that `airlock check` accepts and the gateway
//! applies, and never prints the credential.

use std::collections::BTreeMap;
use std::process::Output;

use airlock_testkit::{APP_PASSWORD, AirlockBuilder, Postgres, psql};

use crate::bin;

/// The sample database plus tables with PII in less obvious places.
fn seed(pg: &Postgres, db: &str) {
    pg.sql_as(
        "app",
        APP_PASSWORD,
        db,
        r#"create table tickets(id int primary key, contact text, notes text, meta jsonb, tags text[]);
           insert into tickets
             select g,
                    'call me back:user' || g || '@example.net,thanks',
                    'customer asked about order ' || g || ' and its delivery window',
                    case when g % 2 = 0
                         then jsonb_build_object('payment', jsonb_build_object('card', '4111 1111 1111 1111'), 'n', g)
                         else jsonb_build_object('pan', 5500000000000004, 'n', g) end,
                    array['vip', 'refund to DE89 3704 0044 0532 0130 00']
               from generate_series(1, 40) g;
           create view ticket_contacts as select contact from tickets;
           -- Sparse pages and enough rows that a sample of 100 is a TABLESAMPLE.
           create table events(id int, payload varchar(300)) with (fillfactor = 10);
           insert into events
             select g, 'sms sent to +44 20 7946 0958 ' || repeat('.', 150) from generate_series(1, 2000) g;
           analyze events;
           create schema "Sales";
           create table "Sales"."Leads ""2024""" ("E-mail" text, score int);
           insert into "Sales"."Leads ""2024""" values ('lead@example.com', 1), ('x.y@example.org', 2);"#,
    )
    .expect("seed tables");
    // A table the target's role may not read.
    pg.superuser_sql(
        db,
        "create table staff_only(note text); insert into staff_only values ('boss@example.com')",
    )
    .expect("seed staff_only");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_credential(what: &str, s: &str) {
    assert!(
        !s.contains(APP_PASSWORD),
        "{what} holds the credential:\n{s}"
    );
}

#[test]
fn discover_proposes_a_rule_naming_exactly_the_pii_columns() {
    let pg = Postgres::shared();
    let db = pg.create_database("discover");
    seed(pg, &db);
    let mut gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .target_extra("default_masking = false")
        .write();
    let rules_path = gw.dir.join("discovered.toml");
    let rules_arg = rules_path.to_str().unwrap().to_owned();

    let out = gw.cli(&[
        "masking", "discover", "--target", "shop", "--sample", "100", "--json", "--out", &rules_arg,
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_no_credential("discover's output", &all);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    assert_no_credential("the rules file", &rules);
    assert_eq!(report["rules"], rules.as_str());
    assert_eq!(report["target"], "shop");
    assert_eq!(report["rule"], "discovered-shop");

    // Exactly the PII columns, each with the detector that found it.
    let by_status = |status: &str| -> BTreeMap<String, Vec<String>> {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["status"] == status)
            .map(|f| {
                let detectors = f["detectors"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect();
                (f["column"].as_str().unwrap().to_owned(), detectors)
            })
            .collect()
    };
    let expected: BTreeMap<String, Vec<String>> = [
        ("Sales.Leads \"2024\".E-mail", "email"),
        ("public.customers.card", "card"),
        ("public.customers.email", "email"),
        ("public.customers.ssn", "ssn"),
        ("public.events.payload", "phone"),
        ("public.tickets.contact", "email"),
        ("public.tickets.meta", "card"),
        ("public.tickets.tags", "iban"),
    ]
    .into_iter()
    .map(|(c, d)| (c.to_owned(), vec![d.to_owned()]))
    .collect();
    assert_eq!(by_status("added"), expected, "{report:#}");
    assert_eq!(report["findings"].as_array().unwrap().len(), expected.len());
    for f in report["findings"].as_array().unwrap() {
        assert_eq!(f["share"], 1.0, "{f}");
    }

    // The rule in the file names them, one comment each.
    let columns: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.strip_suffix("\","))
        .collect();
    assert_eq!(columns.len(), expected.len(), "{rules}");
    assert!(
        rules.contains("[[masking]]\nname = \"discovered-shop\"\ntargets = [\"shop\"]\n"),
        "{rules}"
    );
    for line in [
        "  # public.tickets.contact: email 100.0% of 40 sampled\n  \"public.tickets.contact\",\n",
        "  # public.customers.card: card 100.0% of 2 sampled\n",
        "  # Sales.Leads \\\"2024\\\".E-mail: email 100.0% of 2 sampled\n  \"Sales.Leads \\\"2024\\\".E-mail\",\n",
        "  # public.events.payload: phone 100.0% of 100 sampled\n",
        "#   public.staff_only.note: not readable by the target's role\n",
    ] {
        assert!(rules.contains(line), "missing {line:?} in:\n{rules}");
    }
    // The big table was sampled, the small ones read with LIMIT; views are not tables.
    let tables: BTreeMap<&str, &serde_json::Value> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["table"].as_str().unwrap(), t))
        .collect();
    assert!(
        tables["public.events"]["method"]
            .as_str()
            .unwrap()
            .starts_with("tablesample system "),
        "{report:#}"
    );
    assert_eq!(tables["public.events"]["rows"], 100);
    assert_eq!(tables["public.tickets"]["method"], "limit");
    assert_eq!(tables["public.tickets"]["rows"], 40);
    assert!(!tables.contains_key("public.ticket_contacts"));
    assert!(
        !tables.contains_key("public.orders"),
        "no text-like columns"
    );
    assert_eq!(
        report["skipped"],
        serde_json::json!([{"what": "public.staff_only.note", "reason": "not readable by the target's role"}])
    );

    // The file is not overwritten without --force.
    let again = gw.cli(&[
        "masking", "discover", "--target", "shop", "--out", &rules_arg,
    ]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("exists; pass --force"),
        "{}",
        text(&again)
    );
    assert_eq!(std::fs::read_to_string(&rules_path).unwrap(), rules);

    // Appended to the configuration, `check` accepts it...
    let config = gw.config_path();
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push('\n');
    toml.push_str(&rules);
    std::fs::write(&config, &toml).unwrap();
    let check = gw.cli(&["check"]);
    assert!(check.status.success(), "{}", text(&check));

    // ...a second run finds every column covered and proposes nothing new...
    let out = gw.cli(&[
        "masking", "discover", "--target", "shop", "--sample", "100", "--out", &rules_arg,
        "--force",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert_no_credential("discover's output", &all);
    assert!(
        all.contains("0 column(s) proposed, 8 already masked"),
        "{all}"
    );
    let second = std::fs::read_to_string(&rules_path).unwrap();
    assert!(!second.contains("[[masking]]"), "{second}");
    assert!(
        second.contains(
            "#   public.tickets.contact: email 100.0% of 40 sampled (rule `discovered-shop`)"
        ),
        "{second}"
    );

    // ...and the gateway masks what is computed from a proposed column, which no
    // detector would recognise.
    gw.start().unwrap();
    let token = gw.token("agent", &["ai-agents"]);
    let got = psql(
        &gw.conn("shop", &token),
        &["select substr(contact, 14, 6), notes from tickets where id = 1"],
    );
    assert!(got.ok, "{}", got.stderr);
    assert_eq!(
        got.stdout,
        "[REDACTED:column]|customer asked about order 1 and its delivery window\n"
    );
}

#[test]
fn a_refused_credential_is_reported_without_the_secret() {
    let pg = Postgres::shared();
    let db = pg.create_database("discover_refused");
    let wrong = "Wr0ng-Secret-Pa55";
    let gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .env("AIRLOCK_TEST_PW_SHOP", wrong)
        .write();
    let out = gw.cli(&["masking", "discover", "--target", "shop"]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("password authentication failed"), "{all}");
    assert!(!all.contains(wrong) && !all.contains(APP_PASSWORD), "{all}");

    let out = gw.cli(&["masking", "discover", "--target", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no target `nope`"), "{}", text(&out));
}
