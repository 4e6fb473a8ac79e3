//! Fuzzes the client → server direction as the relay reads it: typed frames found in a
//! buffer by `header`, and the messages Airlock decodes (Query, Parse, Bind, Execute,
//! Close, PasswordMessage). Any input must give frames or an error, never a panic; a
//! frame's length is what its header says; a decoded Query re-encodes to its frame.
#![no_main]

use airlock_postgres_codec::{self as codec, frontend};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0usize;
    while let Some(rest) = data.get(at..) {
        let h = match codec::header(rest) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => break,
        };
        assert!(h.frame_len >= 5, "a frame holds at least its tag and length");
        let Some(frame) = rest.get(..h.frame_len) else { break };
        let body = &frame[5..];
        match h.tag {
            b'Q' => {
                if let Ok(text) = frontend::query(body) {
                    let mut again = BytesMut::new();
                    let mut b = text.as_bytes().to_vec();
                    b.push(0);
                    codec::put_message(&mut again, b'Q', &b);
                    assert_eq!(&again[..], frame, "a Query re-encodes to its frame");
                }
            }
            b'P' => {
                if let Ok(p) = frontend::parse(body) {
                    assert!(p.param_types.len() <= usize::from(u16::MAX));
                }
            }
            b'B' => {
                if let Ok(b) = frontend::bind(body) {
                    for i in 0..b.params.len() + 2 {
                        let _ = b.param_format(i);
                    }
                }
            }
            b'E' => {
                let _ = frontend::execute(body);
            }
            b'C' => {
                let _ = frontend::close(body);
            }
            b'p' => {
                let _ = frontend::password(body);
            }
            _ => {}
        }
        at += h.frame_len;
    }
});
