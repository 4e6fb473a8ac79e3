//! Detector throughput on generated result text, with the default detector set on.
//! `cargo bench -p airlock-engine --bench detectors -- --warm-up-time 1 --measurement-time 3`
//!
//! - `typical`: ~1 MiB of customer/order rows in COPY text form (names, some non-ASCII,
//!   addresses, cities, dates, timestamps, integers, decimals, UUIDs, statuses, notes),
//!   about 1 value in 200 an e-mail, a card or a phone number. Scanned whole, value by
//!   value as the masking stage does, and value by value with `may_match` only.
//! - `dense`: PII in most values.
//! - `non_ascii`: mostly CJK, Cyrillic and accented text with a few numbers.
//! - `encoded`: the typical rows, with about 1 value in 200 a glued or encoded e-mail
//!   or card (`%40`, `\u0040`, full-width digits, base64, `bytea` hex, glued text), so
//!   the decoded view and base64/hex decoding are on the measured path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use airlock_engine::masking::detect::{DEFAULT_ON, DetectorSpec, Scanner};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TARGET: usize = 1 << 20;

/// A small deterministic generator (xorshift64*), so every run scans the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const FIRST: &[&str] = &[
    "Alice",
    "Bob",
    "Carol",
    "David",
    "Emma",
    "Zoë",
    "José",
    "François",
    "Søren",
    "Łukasz",
    "Ana",
    "Mei",
    "Hiroshi",
    "Olga",
    "Ahmed",
    "Priya",
    "李",
    "Иван",
];
const LAST: &[&str] = &[
    "Smith",
    "Müller",
    "García",
    "Dubois",
    "Rossi",
    "Nowak",
    "Andersson",
    "Tanaka",
    "王",
    "Петров",
    "O'Brien",
    "van der Berg",
    "Nguyen",
    "Kowalski",
];
const STREETS: &[&str] = &[
    "Main St",
    "Oak Avenue",
    "Hauptstraße",
    "Rue de la Paix",
    "Calle Mayor",
    "High Street",
    "Baker St",
    "Elm Rd",
    "Via Roma",
];
const CITIES: &[&str] = &[
    "Berlin",
    "München",
    "Paris",
    "São Paulo",
    "北京",
    "Москва",
    "New York",
    "London",
    "Zürich",
    "Kraków",
    "Tokyo",
    "Austin",
];
const STATUS: &[&str] = &[
    "pending",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
    "on_hold",
];
const NOTES: &[&str] = &[
    "leave at the door",
    "gift wrap please",
    "call before delivery",
    "fragile: glassware",
    "customer requested invoice",
    "",
    "2nd attempt, no answer",
    "Lieferung an Nachbarn",
    "请在工作日送货",
    "order 4 of 12, batch B-17",
];
const EMAILS: &[&str] = &[
    "alice.smith@example.com",
    "zoe.muller@mail.example.de",
    "j.garcia+shop@example.org",
];
const CARDS: &[&str] = &[
    "4111 1111 1111 1111",
    "5555555555554444",
    "3782-822463-10005",
];
const PHONES: &[&str] = &["+44 20 7946 0958", "(415) 555-2671", "+1-415-555-2671"];
const ENCODED: &[&str] = &[
    "ref:alice.smith@example.com2024",
    "alice.smith%40example.com",
    "alice.smith\\u0040example.com",
    "YWxpY2Uuc21pdGhAZXhhbXBsZS5jb20=",
    "eyJjYXJkIjoiNDExMSAxMTExIDExMTEgMTExMSJ9",
    "\\x616c6963652e736d697468406578616d706c652e636f6d",
    "４１１１１１１１１１１１１１１１",
    "cc4111111111111111x",
];

fn pii(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => rng.pick(EMAILS).to_owned(),
        1 => rng.pick(CARDS).to_owned(),
        _ => rng.pick(PHONES).to_owned(),
    }
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next();
    let b = rng.next();
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn typical_row(rng: &mut Rng, id: usize) -> Vec<String> {
    let year = 2019 + rng.below(6);
    let (m, d) = (1 + rng.below(12), 1 + rng.below(28));
    vec![
        id.to_string(),
        uuid(rng),
        format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
        format!("{} {}", 1 + rng.below(9999), rng.pick(STREETS)),
        rng.pick(CITIES).to_owned(),
        format!("{:05}", rng.below(99999)),
        format!("{year}-{m:02}-{d:02}"),
        format!(
            "{year}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}+00",
            rng.below(24),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000)
        ),
        (1 + rng.below(20)).to_string(),
        format!("{}.{:02}", rng.below(5000), rng.below(100)),
        rng.pick(STATUS).to_owned(),
        rng.pick(NOTES).to_owned(),
    ]
}

/// COPY-text rows and the byte ranges of their values.
fn build(mut row: impl FnMut(&mut Rng, usize) -> Vec<String>) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut text = Vec::with_capacity(TARGET + 4096);
    let mut values = Vec::new();
    let mut id = 1;
    while text.len() < TARGET {
        for (k, v) in row(&mut rng, id).into_iter().enumerate() {
            if k > 0 {
                text.push(b'\t');
            }
            values.push((text.len(), text.len() + v.len()));
            text.extend_from_slice(v.as_bytes());
        }
        text.push(b'\n');
        id += 1;
    }
    (text, values)
}

fn typical() -> (Vec<u8>, Vec<(usize, usize)>) {
    build(|rng, id| {
        let mut row = typical_row(rng, id);
        for v in row.iter_mut() {
            if rng.below(200) == 0 {
                *v = pii(rng);
            }
        }
        row
    })
}

fn encoded() -> (Vec<u8>, Vec<(usize, usize)>) {
    build(|rng, id| {
        let mut row = typical_row(rng, id);
        for v in row.iter_mut() {
            if rng.below(200) == 0 {
                *v = rng.pick(ENCODED).to_owned();
            }
        }
        row
    })
}

fn dense() -> (Vec<u8>, Vec<(usize, usize)>) {
    build(|rng, id| {
        vec![
            id.to_string(),
            rng.pick(EMAILS).to_owned(),
            rng.pick(CARDS).to_owned(),
            rng.pick(PHONES).to_owned(),
            "123-45-6789".to_owned(),
            "DE89 3704 0044 0532 0130 00".to_owned(),
            "AKIAIOSFODNN7EXAMPLE".to_owned(),
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned(),
            format!("contact {} or {}", rng.pick(EMAILS), rng.pick(PHONES)),
        ]
    })
}

fn non_ascii() -> (Vec<u8>, Vec<(usize, usize)>) {
    const TEXTS: &[&str] = &[
        "北京市朝阳区建国路八十八号",
        "Москва, Тверская улица, дом семь",
        "Zoë Müller aus Köln, Straße über dem Fluß",
        "東京都渋谷区神南一丁目",
        "Ελληνικά γράμματα και λέξεις",
        "서울특별시 중구 세종대로",
        "עברית ועוד מילים",
        "Ça coûte très cher à São Paulo",
    ];
    build(|rng, id| {
        vec![
            id.to_string(),
            rng.pick(TEXTS).to_owned(),
            rng.pick(TEXTS).to_owned(),
            format!("{} {}", rng.pick(FIRST), rng.pick(LAST)),
            rng.pick(CITIES).to_owned(),
            rng.pick(TEXTS).to_owned(),
        ]
    })
}

fn bench(c: &mut Criterion) {
    let specs: Vec<DetectorSpec> = DEFAULT_ON
        .iter()
        .map(|n| DetectorSpec::Builtin((*n).to_owned()))
        .collect();
    let scanner = Scanner::new(&specs).unwrap();
    let mut group = c.benchmark_group("detectors");
    for (name, (text, values)) in [
        ("typical", typical()),
        ("dense", dense()),
        ("non_ascii", non_ascii()),
        ("encoded", encoded()),
    ] {
        let mut found = Vec::new();
        scanner.find(&text, &mut found);
        eprintln!(
            "{name}: {} bytes, {} values, {} findings",
            text.len(),
            values.len(),
            found.len()
        );
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(format!("{name}/whole"), |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                scanner.find(black_box(&text), &mut out);
                out.len()
            })
        });
        group.bench_function(format!("{name}/per_value"), |b| {
            let mut out = Vec::with_capacity(16);
            b.iter(|| {
                let mut n = 0;
                for &(s, e) in &values {
                    out.clear();
                    scanner.find(black_box(&text[s..e]), &mut out);
                    n += out.len();
                }
                n
            })
        });
        group.bench_function(format!("{name}/may_match_per_value"), |b| {
            b.iter(|| {
                values
                    .iter()
                    .filter(|&&(s, e)| scanner.may_match(black_box(&text[s..e])))
                    .count()
            })
        });
    }
    group.finish();

    // Where the time goes on typical text: each family alone.
    let (text, _) = typical();
    let mut parts = c.benchmark_group("detectors_parts");
    parts.throughput(Throughput::Bytes(text.len() as u64));
    for (name, names) in [
        (
            "numbers_email",
            &["email", "card", "ssn", "iban", "phone"][..],
        ),
        ("email", &["email"][..]),
        ("secrets", &["secrets"][..]),
    ] {
        let specs: Vec<DetectorSpec> = names
            .iter()
            .map(|n| DetectorSpec::Builtin((*n).to_owned()))
            .collect();
        let scanner = Scanner::new(&specs).unwrap();
        parts.bench_function(format!("typical/{name}"), |b| {
            let mut out = Vec::with_capacity(1024);
            b.iter(|| {
                out.clear();
                scanner.find(black_box(&text), &mut out);
                out.len()
            })
        });
    }
    parts.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
