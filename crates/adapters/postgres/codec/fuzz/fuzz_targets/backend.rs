//! Fuzzes the server → client direction as the relay and the upstream handshake read
//! it: frames by `header`, and ErrorResponse/NoticeResponse, CommandComplete,
//! ReadyForQuery, ParameterStatus, BackendKeyData, Authentication (with SASL mechanism
//! lists) and the first value of a DataRow. Never a panic; an error Airlock writes reads
//! back with the same fields.
#![no_main]

use airlock_postgres_codec::{self as codec, backend};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut at = 0usize;
    while let Some(rest) = data.get(at..) {
        let h = match codec::header(rest) {
            Ok(Some(h)) => h,
            Ok(None) | Err(_) => break,
        };
        let Some(frame) = rest.get(..h.frame_len) else { break };
        let body = &frame[5..];
        match h.tag {
            b'E' | b'N' => {
                if let Ok(f) = backend::error_fields(body) {
                    // What Airlock writes itself reads back the same (NULs are dropped).
                    let mut out = BytesMut::new();
                    backend::put_error_like(
                        &mut out,
                        h.tag,
                        &backend::OwnError {
                            severity: &f.severity,
                            code: &f.code,
                            message: &f.message,
                            detail: None,
                            hint: None,
                            position: None,
                        },
                    );
                    let back = backend::error_fields(&out[5..]).expect("reads back");
                    assert_eq!(back.message, f.message);
                    assert_eq!(back.code, f.code);
                }
            }
            b'C' => {
                if let Ok(tag) = backend::command_complete(body) {
                    let _ = backend::tag_rows(tag);
                }
            }
            b'Z' => {
                if let Ok(s) = backend::ready_for_query(body) {
                    assert!(matches!(s, b'I' | b'T' | b'E'));
                }
            }
            b'S' => {
                let _ = backend::parameter_status(body);
            }
            b'K' => {
                let _ = backend::backend_key_data(body);
            }
            b'R' => {
                if let Ok((code, rest)) = backend::authentication(body)
                    && code == 10
                {
                    let _ = backend::sasl_mechanisms(rest);
                }
            }
            b'D' => {
                let _ = backend::first_text_value(body);
            }
            _ => {}
        }
        at += h.frame_len;
    }
});
