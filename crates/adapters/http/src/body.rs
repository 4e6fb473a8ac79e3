//! Bodies: what Airlock answers itself (`ResponseBody::full`) and the upstream's
//! response streamed through a chain of filters: decompression, credential scrubbing,
//! masking, capture and counting, chunk by chunk in bounded memory.
//!
//! A filter that fails (a JSON body that is not JSON, a value too large to mask) ends
//! the body with an error: hyper then aborts the response (the chunked terminator is
//! never sent, or the connection closes short of `Content-Length`), so the agent sees a
//! broken response, never unmasked bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use airlock_engine::masking::rules::Tally;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

use crate::scrub::ScrubStream;

/// The error type of every body Airlock produces.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A response body as the listener sends it.
pub type ResponseBody = BoxBody<Bytes, BodyError>;

/// Constructors for [`ResponseBody`].
pub trait ResponseBodyExt {
    /// A body of exactly these bytes.
    fn full(bytes: Bytes) -> ResponseBody;
    /// An empty body.
    fn empty() -> ResponseBody;
}

impl ResponseBodyExt for ResponseBody {
    fn full(bytes: Bytes) -> ResponseBody {
        http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed()
    }

    fn empty() -> ResponseBody {
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed()
    }
}

/// One stage that rewrites a body as it streams.
pub trait Filter: Send + Sync {
    /// Feeds a chunk; appends what may be released to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// The body ended: releases the rest, or says why the body was not well formed.
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String>;
    /// What was masked (empty for filters that do not mask).
    fn tally(&mut self) -> Tally {
        Tally::default()
    }
}

/// How a filtered body ended.
#[derive(Debug, Default)]
pub struct BodyOutcome {
    /// Bytes received from the upstream (as sent, before decoding).
    pub bytes_in: u64,
    /// Bytes sent to the agent.
    pub bytes_out: u64,
    /// The first bytes sent to the agent (up to the target's `capture_bytes`).
    pub capture: Vec<u8>,
    /// What masking replaced.
    pub tally: Tally,
    /// Credential occurrences scrubbed.
    pub scrubbed: usize,
    /// Why the body did not complete: an upstream error, a filter refusing it, or the
    /// agent going away (`None`: it completed).
    pub error: Option<String>,
}

/// Called once with the outcome, when the body ends or is dropped.
pub type OnEnd = Box<dyn FnOnce(BodyOutcome) + Send + Sync>;

/// The upstream's body through the filters.
pub struct FilteredBody<B> {
    inner: B,
    filters: Vec<Box<dyn Filter>>,
    scrub: ScrubStream,
    capture_limit: usize,
    outcome: BodyOutcome,
    on_end: Option<OnEnd>,
    done: bool,
    /// The body's exact length, when no filter changes lengths (the scrub never does).
    exact: Option<u64>,
    /// For long streams (a watch, `logs -f`, events): re-checks every second that the
    /// agent's credential still holds, and ends the stream when it does not.
    watchdog: Option<Watchdog>,
    /// Where the bytes sent to the agent are counted (`airlock_relayed_bytes_total`).
    relayed: Option<airlock_metrics::ByteCounter>,
}

/// Says why a stream may not go on (`None`: it may).
pub type StillAllowed = Box<dyn Fn() -> Option<String> + Send + Sync>;

struct Watchdog {
    tick: Pin<Box<tokio::time::Interval>>,
    check: StillAllowed,
}

impl<B> FilteredBody<B> {
    /// `inner` through `filters` in order, then the credential scrub.
    pub fn new(
        inner: B,
        filters: Vec<Box<dyn Filter>>,
        scrub: ScrubStream,
        capture_limit: usize,
        on_end: OnEnd,
    ) -> Self {
        FilteredBody {
            inner,
            filters,
            scrub,
            capture_limit,
            outcome: BodyOutcome::default(),
            on_end: Some(on_end),
            done: false,
            exact: None,
            watchdog: None,
            relayed: None,
        }
    }

    /// Counts the bytes sent to the agent on `relayed` as well, chunk by chunk.
    pub fn counting(mut self, relayed: airlock_metrics::ByteCounter) -> Self {
        self.relayed = Some(relayed);
        self
    }

    /// Ends the body, with `check`'s reason, once `check` says the stream may not go on
    /// (checked every `every`).
    pub fn with_watchdog(mut self, every: std::time::Duration, check: StillAllowed) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.watchdog = Some(Watchdog {
            tick: Box::pin(tick),
            check,
        });
        self
    }

    /// Declares the body's exact length (only when no filter changes lengths).
    pub fn with_exact_length(mut self, length: Option<u64>) -> Self {
        self.exact = length.filter(|_| self.filters.is_empty());
        self
    }

    /// Runs `chunk` through every filter (`None`: the body ended).
    fn run(&mut self, chunk: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut data = chunk.map(<[u8]>::to_vec).unwrap_or_default();
        for f in &mut self.filters {
            let mut out = Vec::with_capacity(data.len() + 64);
            match chunk {
                Some(_) => f.push(&data, &mut out)?,
                None => {
                    f.push(&data, &mut out)?;
                    f.finish(&mut out)?;
                }
            }
            data = out;
        }
        let mut out = Vec::with_capacity(data.len());
        self.scrub.push(&data, &mut out);
        if chunk.is_none() {
            self.scrub.finish(&mut out);
        }
        self.count_out(&out);
        Ok(out)
    }

    /// Counts bytes sent to the agent and keeps the first ones for the record.
    fn count_out(&mut self, out: &[u8]) {
        self.outcome.bytes_out += out.len() as u64;
        if let Some(relayed) = &self.relayed {
            relayed.add(out.len());
        }
        let room = self
            .capture_limit
            .saturating_sub(self.outcome.capture.len());
        if room > 0 {
            self.outcome
                .capture
                .extend_from_slice(out.get(..room.min(out.len())).unwrap_or(&[]));
        }
    }

    fn end(&mut self, error: Option<String>) {
        self.done = true;
        if let Some(on_end) = self.on_end.take() {
            let mut outcome = std::mem::take(&mut self.outcome);
            for f in &mut self.filters {
                outcome.tally.absorb(&mut f.tally());
            }
            outcome.scrubbed = self.scrub.found();
            outcome.error = error;
            on_end(outcome);
        }
    }
}

impl<B> Drop for FilteredBody<B> {
    fn drop(&mut self) {
        if self.on_end.is_some() {
            self.end(Some(
                "the agent closed the connection before the response ended".into(),
            ));
        }
    }
}

impl<B> Body for FilteredBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(w) = this.watchdog.as_mut() {
                let mut stop = None;
                while w.tick.as_mut().poll_tick(cx).is_ready() {
                    if let Some(why) = (w.check)() {
                        stop = Some(why);
                        break;
                    }
                }
                if let Some(why) = stop {
                    this.end(Some(why.clone()));
                    return Poll::Ready(Some(Err(why.into())));
                }
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    // Trailers are dropped: they could carry what masking would hide.
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.outcome.bytes_in += data.len() as u64;
                    if this.filters.is_empty() {
                        // Passed through: only the scrub, without copying more than once.
                        let out = this.scrub.push_bytes(data);
                        this.count_out(&out);
                        if out.is_empty() {
                            continue;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                    match this.run(Some(&data)) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out))))),
                        Err(e) => {
                            this.end(Some(e.clone()));
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let e = format!("the upstream's body failed: {e}");
                    this.end(Some(e.clone()));
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => {
                    let result = this.run(None);
                    match result {
                        Ok(out) => {
                            this.end(None);
                            if out.is_empty() {
                                return Poll::Ready(None);
                            }
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                        Err(e) => {
                            this.end(Some(e.clone()));
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        // Lengths change when masking does (then the listener chunks the body); the
        // scrub alone keeps them.
        match self.exact {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.outcome.bytes_out)),
            None => SizeHint::default(),
        }
    }
}

/// A body whose chunks another task sends as they come (an answer Airlock writes over
/// time, such as progress while a call waits for approval); it ends when the sender is
/// dropped.
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}
