//! The relay's per-frame work in isolation: finding frames in a read buffer and
//! decoding the one message per statement that is read (Query).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use airlock_postgres::codec::{self, frontend};
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn query_frame(sql: &str) -> BytesMut {
    let mut out = BytesMut::new();
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    codec::put_message(&mut out, b'Q', &body);
    out
}

/// 1,000 DataRows of two text columns, as the server sends a result.
fn data_rows() -> BytesMut {
    let mut out = BytesMut::new();
    for i in 0..1000u32 {
        let a = i.to_string();
        let b = format!("{:x}", u64::from(i) * 2654435761);
        let mut body = Vec::new();
        body.extend_from_slice(&2i16.to_be_bytes());
        for col in [a.as_bytes(), b.as_bytes()] {
            body.extend_from_slice(&(col.len() as i32).to_be_bytes());
            body.extend_from_slice(col);
        }
        codec::put_message(&mut out, b'D', &body);
    }
    out
}

fn bench(c: &mut Criterion) {
    let q = query_frame("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;");
    c.bench_function("frame/query_header_and_decode", |b| {
        b.iter(|| {
            let h = codec::header(black_box(&q)).unwrap().unwrap();
            let text = frontend::query(&q[5..h.frame_len]).unwrap();
            black_box(text.len())
        })
    });
    let rows = data_rows();
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(rows.len() as u64));
    group.bench_function("scan_1000_data_rows", |b| {
        b.iter(|| {
            let mut at = 0;
            let mut n = 0;
            while let Some(h) = codec::header(&rows[at..]).unwrap() {
                at += h.frame_len;
                n += 1;
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
