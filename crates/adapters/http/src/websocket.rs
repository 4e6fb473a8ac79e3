//! WebSocket upgrades: decided as `Http::Action::"websocket"` on their path (in
//! `handler`), then relayed byte for byte in both directions. A passive frame reader on
//! each direction records the text messages (masked, as every recording is) and the
//! byte counts; it never changes what is relayed.
//!
//! Kubernetes targets also upgrade to SPDY/3.1 (kubectl's exec, attach and
//! port-forward): relayed the same way, byte for byte, with only the byte counts
//! recorded (its frames are not read).
//!
//! The frame reader is hand-written: it only needs the RFC 6455 header (opcode,
//! length, mask key) to find text payloads, where a WebSocket crate would want to own
//! the connection and re-frame the messages.

use std::sync::Arc;
use std::time::Instant;

use airlock_model::EventKind;
use airlock_session::EventDraft;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::body::{ResponseBody, ResponseBodyExt};
use crate::conn::Slot;
use crate::headers::{self, LocationRewrite};
use crate::problem::{self, Problem};

/// Most of one text message kept for its record.
const RECORDED_TEXT: usize = 16 * 1024;

/// Answers the agent's upgrade with the upstream's 101 and relays the two upgraded
/// connections in a task of their own (the connection's sessions end after it).
pub fn relay(
    slot: Arc<Slot>,
    response: Response<Incoming>,
    agent: Option<OnUpgrade>,
    rewrite: &LocationRewrite<'_>,
    // What of the frames is read and recorded.
    frames: Frames,
    started: Instant,
) -> Result<(Response<ResponseBody>, tokio::task::JoinHandle<()>), Problem> {
    let target = slot.session.target().model.name.clone();
    let Some(agent) = agent else {
        return Err(problem::upstream_failed(
            &target,
            "the agent's connection cannot be upgraded",
        ));
    };
    let (headers, _) = headers::agent_response(
        response.headers(),
        &slot.credential.scrubber,
        rewrite,
        false,
        true,
        true,
    );
    let upstream = hyper::upgrade::on(response);
    let relay = tokio::spawn(async move {
        let (agent, upstream) = match tokio::try_join!(agent, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "a WebSocket upgrade did not complete");
                return;
            }
        };
        let (agent_read, agent_write) = tokio::io::split(TokioIo::new(agent));
        let (up_read, up_write) = tokio::io::split(TokioIo::new(upstream));
        let to_upstream = pump(agent_read, up_write, &slot, "agent", frames);
        let to_agent = pump(up_read, agent_write, &slot, "upstream", frames);
        let (sent, received) = tokio::join!(to_upstream, to_agent);
        let detail = json!({
            "status": 101,
            "upgrade": if frames == Frames::None { "spdy" } else { "websocket" },
            "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "request_bytes": sent,
            "response_bytes": received,
        });
        if let Err(e) = slot
            .session
            .record_later(vec![EventDraft::new(EventKind::Result, detail)])
            .await
        {
            tracing::error!(error = %e, "a WebSocket outcome could not be recorded");
        }
    });
    let mut out = Response::new(ResponseBody::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = headers;
    Ok((out, relay))
}

/// Copies one direction until it ends, recording its text messages; returns the bytes
/// copied.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    slot: &Slot,
    direction: &'static str,
    frames: Frames,
) -> u64
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = FrameReader {
        binary: frames == Frames::KubernetesChannels,
        ..FrameReader::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0u64;
    let relayed = if direction == "agent" {
        slot.session.metrics().to_target()
    } else {
        slot.session.metrics().to_client()
    };
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or(&[]);
        if to.write_all(chunk).await.is_err() {
            break;
        }
        total += n as u64;
        relayed.add(n);
        if frames == Frames::None {
            continue;
        }
        for message in reader.feed(chunk) {
            let detail = if message.binary {
                // Kubernetes channel protocols (v4/v5.channel.k8s.io): the first byte
                // names the stream.
                let channel = match message.text.first() {
                    Some(0) => "stdin",
                    Some(1) => "stdout",
                    Some(2) => "stderr",
                    Some(3) => "error",
                    Some(4) => "resize",
                    Some(255) => "close",
                    _ => "unknown",
                };
                json!({
                    "direction": direction,
                    "channel": channel,
                    "bytes": message.len.saturating_sub(1),
                    "text": String::from_utf8_lossy(message.text.get(1..).unwrap_or(&[])),
                    "truncated": message.len > message.text.len(),
                })
            } else {
                json!({
                    "direction": direction,
                    "bytes": message.len,
                    "text": String::from_utf8_lossy(&message.text),
                    "truncated": message.len > message.text.len(),
                })
            };
            let draft = EventDraft::new(EventKind::Message, detail);
            if let Err(e) = slot.session.record_later(vec![draft]).await {
                tracing::error!(error = %e, "a WebSocket message could not be recorded");
            }
        }
    }
    let _ = to.shutdown().await;
    total
}

/// What of an upgraded connection's frames is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frames {
    /// Nothing (SPDY): bytes are counted.
    None,
    /// WebSocket text messages.
    Text,
    /// WebSocket text and binary messages, binary ones as Kubernetes channels (exec,
    /// attach: stdin, stdout, stderr).
    KubernetesChannels,
}

/// A complete message seen on the wire.
#[derive(Debug, PartialEq)]
struct Message {
    /// A binary message (read only for Kubernetes channels).
    binary: bool,
    /// Its length.
    len: usize,
    /// Its first `RECORDED_TEXT` bytes, unmasked.
    text: Vec<u8>,
}

/// Reads frames passively (see the module doc).
#[derive(Default)]
struct FrameReader {
    /// Read binary messages too.
    binary: bool,
    buf: Vec<u8>,
    /// A text message being assembled from fragments.
    text: Option<Message>,
    /// The relay stopped understanding the stream (an oversized header, say): from
    /// here on nothing more is recorded, but bytes still flow.
    lost: bool,
    /// Bytes of a payload that is not recorded, still to come.
    pending_skip: usize,
}

impl FrameReader {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Message> {
        let mut done = Vec::new();
        if self.lost {
            return done;
        }
        let skipped = self.pending_skip.min(bytes.len());
        self.pending_skip -= skipped;
        self.buf
            .extend_from_slice(bytes.get(skipped..).unwrap_or(&[]));
        while let Some((header_len, payload_len, mask)) = parse_header(&self.buf) {
            let Ok(payload_len) = usize::try_from(payload_len) else {
                self.lost = true;
                break;
            };
            let total = header_len + payload_len;
            // Only text payloads are kept; others are skipped without buffering more
            // than one read.
            let opcode = self.buf.first().map_or(0, |b| b & 0x0f);
            let fin = self.buf.first().is_some_and(|b| b & 0x80 != 0);
            let wants_text =
                opcode == 1 || (opcode == 2 && self.binary) || (opcode == 0 && self.text.is_some());
            if wants_text && self.buf.len() < total {
                if total > 64 * 1024 * 1024 {
                    self.lost = true;
                }
                break;
            }
            if !wants_text {
                if self.buf.len() < total {
                    // Skip what is here; remember how much more to skip.
                    let skip = total - self.buf.len();
                    self.buf.clear();
                    self.skip_more(skip);
                    break;
                }
                self.buf.drain(..total);
                continue;
            }
            let mut payload = self.buf.get(header_len..total).unwrap_or(&[]).to_vec();
            if let Some(key) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key.get(i % 4).copied().unwrap_or(0);
                }
            }
            self.buf.drain(..total);
            let message = self.text.get_or_insert(Message {
                binary: opcode == 2,
                len: 0,
                text: Vec::new(),
            });
            message.len += payload.len();
            let room = RECORDED_TEXT.saturating_sub(message.text.len());
            message
                .text
                .extend_from_slice(payload.get(..room.min(payload.len())).unwrap_or(&[]));
            if fin && let Some(m) = self.text.take() {
                done.push(m);
            }
        }
        done
    }

    /// Bytes of a skipped payload still to come are dropped as they arrive.
    fn skip_more(&mut self, n: usize) {
        self.pending_skip = self.pending_skip.saturating_add(n);
    }
}

/// The header length, payload length and mask key of the frame at the start of `b`.
fn parse_header(b: &[u8]) -> Option<(usize, u64, Option<[u8; 4]>)> {
    let second = *b.get(1)?;
    let masked = second & 0x80 != 0;
    let (len, mut at) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(b.get(2..10)?);
            (u64::from_be_bytes(n), 10)
        }
        n => (u64::from(n), 2),
    };
    let key = if masked {
        let k = [
            *b.get(at)?,
            *b.get(at + 1)?,
            *b.get(at + 2)?,
            *b.get(at + 3)?,
        ];
        at += 4;
        Some(k)
    } else {
        None
    };
    Some((at, len, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![u8::from(fin) << 7 | opcode];
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n < 65536 => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match key {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    #[test]
    fn finds_text_messages_fragmented_masked_and_split_anywhere() {
        let mut wire = frame(true, 2, &[0u8; 70_000], None);
        wire.extend(frame(false, 1, b"hello ", Some([1, 2, 3, 4])));
        wire.extend(frame(true, 9, b"ping", None));
        wire.extend(frame(true, 0, b"ada@example.com", Some([9, 8, 7, 6])));
        wire.extend(frame(true, 1, &vec![b'x'; 300], None));
        for size in [1, 3, 1000, wire.len()] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for c in wire.chunks(size) {
                got.extend(r.feed(c));
            }
            assert_eq!(got.len(), 2, "chunks of {size}");
            assert!(!got[0].binary);
            assert_eq!(got[0].text, b"hello ada@example.com");
            assert_eq!(got[1].len, 300);
        }
    }

    #[test]
    fn kubernetes_channels_are_read_from_binary_frames() {
        let mut wire = frame(true, 2, b"\x01hello from stdout", None);
        wire.extend(frame(true, 2, b"\x00ls -la\n", Some([7, 7, 7, 7])));
        let mut text_only = FrameReader::default();
        assert!(
            text_only.feed(&wire).is_empty(),
            "binary frames are skipped by default"
        );
        let mut r = FrameReader {
            binary: true,
            ..FrameReader::default()
        };
        let got = r.feed(&wire);
        assert_eq!(got.len(), 2);
        assert!(got[0].binary);
        assert_eq!(got[0].text, b"\x01hello from stdout");
        assert_eq!(got[1].text, b"\x00ls -la\n");
    }
}
