//! Masking: PII and secrets in results never reach the agent, nor the recording or the
//! logs. The sample `customers` table holds e-mails, SSNs, card numbers and passwords.

use airlock_testkit::psql;

use crate::{Fixture, events_of, py};

/// Every raw sensitive value of the sample data.
const RAW: &[&str] = &[
    "ada@example.com",
    "alan@example.org",
    "078-05-1120",
    "219-09-9999",
    "4111 1111 1111 1111",
    "5500 0000 0000 0004",
    "4111111111111111",
    "hunter2",
    "s3cret",
];

fn assert_clean(what: &str, text: &str) {
    for raw in RAW {
        assert!(!text.contains(raw), "{what} holds raw `{raw}`:\n{text}");
    }
}

/// The recording of every session and the gateway's log hold none of the raw values.
fn assert_recording_and_log_clean(f: &Fixture) {
    for s in f.gw.sessions() {
        let id = s["id"].as_str().unwrap();
        assert_clean("the recording", &f.gw.session(id).to_string());
    }
    assert_clean("the gateway log", &f.gw.log());
}

#[test]
fn the_default_rule_masks_psql_text_results_and_counts_what_it_masked() {
    let f = Fixture::with("mask_default", |b| b.target_extra("capture_rows = 5"));
    let out = psql(
        &f.conn(),
        &["select id, name, email, ssn, card, password from customers order by id"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "1|Ada Lovelace|[REDACTED:column]|[REDACTED:column]|[REDACTED:column]|[REDACTED:column]\n\
         2|Alan Turing|[REDACTED:column]|[REDACTED:column]|[REDACTED:column]|[REDACTED:column]\n"
    );
    let s = f.gw.last_session_of("agent", "shop");
    let result = events_of(&s, "result")[0];
    assert_eq!(result["detail"]["rows"], 2);
    // E-mail and card columns are named by the default rule (their lineage is followed),
    // so they are masked as columns, not found by detectors.
    let masked = &result["detail"]["masked"]["default"];
    assert_eq!(masked["column"], 8, "{result}");
    // Captured rows are recorded as the agent received them.
    assert_eq!(
        result["detail"]["captured_rows"][0],
        serde_json::json!([
            "1",
            "Ada Lovelace",
            "[REDACTED:column]",
            "[REDACTED:column]",
            "[REDACTED:column]",
            "[REDACTED:column]"
        ])
    );
    assert_eq!(
        result["detail"]["captured_rows"].as_array().unwrap().len(),
        2
    );
    // With the columns' names, for the console's replay.
    assert_eq!(
        result["detail"]["captured_columns"],
        serde_json::json!(["id", "name", "email", "ssn", "card", "password"])
    );
    assert_recording_and_log_clean(&f);
}

#[test]
fn aliases_and_computed_values_do_not_dodge_column_rules() {
    let f = Fixture::new("mask_dodge");
    for q in [
        "select password as p from customers",
        "select upper(password) from customers",
        "select password || '' from customers",
        "select (select password from customers where id = 1)",
        "select x.p from (select password as p from customers) x",
        "with x as (select password as p from customers) select p from x",
        "select c::text from customers c",
        "select row(c.*)::text from customers c",
        "select password from customers union all select 'none'",
        "select p from (select password as p from customers union select 'x') u",
        "select format('%s', password) from customers",
        "select row_to_json(c) from customers c",
        "select jsonb_agg(c) from customers c",
        "select json_build_object('k', password) from customers",
        "select to_jsonb(c.*) ->> 'password' from customers c",
        "select array_agg(password) from customers",
        "select upper(email), lower(card) from customers",
        "update customers set name = name where id = 1 returning password, upper(ssn)",
        "update customers set name = name returning upper(password), id",
        "insert into customers select id + 10, name, email, ssn, card, password from customers returning password || ''",
    ] {
        let out = psql(&f.conn(), &[q]);
        assert!(out.ok, "{q}: {}", out.stderr);
        assert_clean(q, &out.stdout);
        assert!(!out.stdout.trim().is_empty(), "{q}: no output");
    }
    assert_recording_and_log_clean(&f);
}

#[test]
fn transformations_of_email_and_card_columns_are_masked_by_lineage() {
    // Detectors cannot see an address reversed or cut in two; the default rule names
    // the usual e-mail, phone, card and bank-account columns, so anything computed from
    // them is masked whatever the function, while a count reveals no value and is kept
    // (in a statement of its own: a statement's computed columns share one rule).
    let f = Fixture::new("mask_lineage");
    let out = psql(
        &f.conn(),
        &[
            "select reverse(email), translate(email, '@', '#'), substr(email, 1, 3), substr(email, 4), \
           encode(convert_to(email, 'UTF8'), 'hex'), reverse(card), upper(card) \
           from customers order by id",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    for line in lines {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 7, "{line}");
        for field in fields {
            assert!(field.starts_with("[REDACTED"), "{line}");
        }
    }
    let out = psql(
        &f.conn(),
        &["select count(email), count(distinct card) from customers"],
    );
    assert_eq!(out.stdout, "2|2\n", "{out:?}");
    assert_recording_and_log_clean(&f);
}

#[test]
fn psycopg_text_binary_prepared_json_and_arrays_are_masked() {
    let f = Fixture::new("mask_psycopg");
    let r = py("masking", &f.conn());
    assert_clean("psycopg results", &r.to_string());
    let row = &r["text"][0];
    assert_eq!(row[0], 1);
    assert_eq!(row[1], "Ada Lovelace");
    assert_eq!(row[2], "[REDACTED:column]");
    assert_eq!(row[5], "[REDACTED:column]");
    assert_eq!(r["binary"], r["text"], "binary and text formats mask alike");
    // An int8 that holds a card number cannot take a text mask: it becomes NULL.
    assert_eq!(r["binary_alias_int8"][0][0], "[REDACTED:column]");
    assert!(r["binary_alias_int8"][0][1].is_null(), "{r}");
    assert_eq!(
        r["binary_array"],
        serde_json::json!(["[REDACTED:email]", "[REDACTED:email]"])
    );
    assert_eq!(r["text_array"], r["binary_array"]);
    assert_eq!(r["json"]["password"], "[REDACTED:column]");
    assert_eq!(r["json"]["email"], "[REDACTED:column]");
    assert_eq!(r["json"]["name"], "Ada Lovelace");
    assert_eq!(r["binary_jsonb"][1]["password"], "[REDACTED:column]");
    assert_eq!(r["binary_jsonb"][1]["id"], 2);
    assert_eq!(
        r["prepared"],
        serde_json::json!([["[REDACTED:column]", "[REDACTED:column]"]])
    );
    assert_eq!(r["prepared_again"], r["prepared"]);
    assert_eq!(r["unicode"], "Zoë Müller <[REDACTED:email]> 北京");
    assert_recording_and_log_clean(&f);
}

#[test]
fn copy_out_masks_the_same_columns_and_still_delivers_the_rows() {
    let f = Fixture::new("mask_copy");
    let out = psql(&f.conn(), &["copy customers to stdout"]);
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "1\tAda Lovelace\t[REDACTED:column]\t[REDACTED:column]\t[REDACTED:column]\t[REDACTED:column]\n\
         2\tAlan Turing\t[REDACTED:column]\t[REDACTED:column]\t[REDACTED:column]\t[REDACTED:column]\n"
    );
    let out = psql(
        &f.conn(),
        &["copy customers (password, name) to stdout with (format csv)"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "[REDACTED:column],Ada Lovelace\n[REDACTED:column],Alan Turing\n"
    );
    for q in [
        "copy (select password, upper(email) from customers) to stdout",
        "copy (select * from customers) to stdout",
        "copy (select c::text from customers c) to stdout",
    ] {
        let out = psql(&f.conn(), &[q]);
        assert!(out.ok, "{q}: {}", out.stderr);
        assert_clean(q, &out.stdout);
        assert_eq!(out.stdout.lines().count(), 2, "{q}: {}", out.stdout);
    }
    // What cannot be masked is refused, and the session goes on.
    for (q, needle) in [
        (
            "copy customers to stdout (format binary)",
            "binary format cannot be masked",
        ),
        (
            "copy customers to stdout (delimiter ':')",
            "delimiter ':' cannot be masked",
        ),
    ] {
        let out = psql(&f.conn(), &[q, "select 1"]);
        assert!(!out.ok, "{q}");
        assert!(out.stderr.contains(needle), "{q}: {}", out.stderr);
    }
    assert_recording_and_log_clean(&f);
}

#[test]
fn errors_and_notices_that_echo_data_are_masked() {
    let f = Fixture::new("mask_errors");
    let out = psql(&f.conn(), &["create unique index on customers(password)"]);
    assert!(out.ok, "{}", out.stderr);
    // The duplicate key is echoed in the error's detail.
    let out = psql(
        &f.conn(),
        &["update customers set password = (select password from customers where id = 1)"],
    );
    assert!(!out.ok);
    assert!(out.stderr.contains("duplicate key"), "{}", out.stderr);
    assert_clean("the error", &out.stderr);
    let out = psql(
        &f.conn(),
        &[
            "do $$ begin raise notice 'card on file: %', (select card from customers where id = 1); end $$",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stderr.contains("card on file: [REDACTED:card]"),
        "{}",
        out.stderr
    );
    let out = psql(
        &f.conn(),
        &["select 1 / 0 from customers where email = 'ada@example.com'"],
    );
    assert!(!out.ok);
    // The statement the agent sent is recorded with its PII masked.
    assert_recording_and_log_clean(&f);
}

#[test]
fn configured_rules_partial_hash_regex_scope_and_observe_only() {
    let f = Fixture::with("mask_rules", |b| {
        b.target_extra("default_masking = false")
            .env("AIRLOCK_TEST_MASK_KEY", "0123456789abcdef0123456789abcdef")
            .extra(
                r#"
[[masking]]
name = "cards-partial"
detectors = ["card"]
style = "partial"

[[masking]]
name = "emails-hashed"
columns = ["public.customers.email", "public.customers.no_such_column"]
style = "hash"
hash_key = "env:AIRLOCK_TEST_MASK_KEY"

[[masking]]
name = "order-refs"
regexes = { order_ref = "ORD-[0-9]{6}" }

[[masking]]
name = "ssn-for-others"
columns = ["ssn"]
groups = ["someone-else"]

[[masking]]
name = "passwords-watched"
columns = ["password"]
enforce = false
"#,
            )
    });
    let out = psql(
        &f.conn(),
        &[
            "select card, email, email as again, ssn, password, 'ref ORD-123456' from customers order by id",
        ],
    );
    assert!(out.ok, "{}", out.stderr);
    let rows: Vec<Vec<&str>> = out.stdout.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows[0][0], "****1111");
    assert_eq!(rows[1][0], "****0004");
    assert!(rows[0][1].starts_with("[HASH:"), "{}", out.stdout);
    assert_eq!(
        rows[0][1], rows[0][2],
        "a keyed hash is the same for the same value"
    );
    assert_ne!(rows[0][1], rows[1][1]);
    // Not this agent's rule, and an observe-only one: passed through.
    assert_eq!(rows[0][3], "078-05-1120");
    assert_eq!(rows[0][4], "hunter2");
    assert_eq!(rows[0][5], "ref [REDACTED:order_ref]");
    let s = f.gw.last_session_of("agent", "shop");
    let masked = &events_of(&s, "result")[0]["detail"]["masked"];
    assert_eq!(masked["passwords-watched"]["column"], 2, "{masked}");
    assert_eq!(masked["cards-partial"]["card"], 2, "{masked}");
}

#[test]
fn values_split_across_network_reads_and_a_million_masked_rows_stream() {
    let f = Fixture::new("mask_stream");
    let out = psql(
        &f.conn(),
        &["select repeat('x', 200000) || ' ada@example.com ' || repeat('y', 200000)"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.len(), 400_000 + " [REDACTED:email] ".len() + 1);
    assert_clean("a long value", &out.stdout);
    let before = f.gw.peak_rss_kib();
    let out = psql(
        &f.conn(),
        &["select g, 'user' || g || '@example.com' from generate_series(1, 1000000) g"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1_000_000);
    assert!(
        out.stdout.ends_with("1000000|[REDACTED:email]\n"),
        "{}",
        out.stdout.get(out.stdout.len() - 200..).unwrap_or("")
    );
    assert!(!out.stdout.contains("@example.com"));
    let peak = f.gw.peak_rss_kib();
    assert!(
        peak < 96 * 1024,
        "gateway peak RSS {peak} KiB (before: {before} KiB)"
    );
}

#[test]
fn without_masking_results_stream_untouched_and_capture_keeps_the_first_rows() {
    let f = Fixture::with("mask_off", |b| {
        b.target_extra("default_masking = false\ncapture_rows = 1")
    });
    let out = psql(
        &f.conn(),
        &["select id, email, password from customers order by id"],
    );
    assert!(out.ok, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "1|ada@example.com|hunter2\n2|alan@example.org|s3cret\n"
    );
    let s = f.gw.last_session_of("agent", "shop");
    let result = events_of(&s, "result")[0];
    assert_eq!(
        result["detail"]["captured_rows"],
        serde_json::json!([["1", "ada@example.com", "hunter2"]])
    );
    assert!(result["detail"].get("masked").is_none());
}
