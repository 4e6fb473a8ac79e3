//! Holding a statement for approval: the request is recorded (or the earlier one
//! found), the client is told, and the client direction waits for the decision while
//! watching for the client to leave. Nothing of the statement is forwarded meanwhile: an
//! approval lets the same frame be inspected again, a refusal answers it in order.

use airlock_session::{HoldFailure, HoldOutcome, HoldTicket, Waiting};
use bytes::BytesMut;
use tokio::io::{ReadHalf, WriteHalf};

use super::client::{ClientSide, read_client};
use super::inspect::Grant;
use super::refusal::denial_reply;
use super::{End, ended_by};
use crate::reply;
use crate::stream::BoxIo;

/// Most bytes kept from a client while its statement waits for approval; beyond this
/// the client is not read until the wait ends.
const MAX_READ_WHILE_HELD: usize = 1024 * 1024;

impl ClientSide<'_> {
    /// Holds the statement at the front of `buf` (`skip` bytes) until it is decided:
    /// approved, it stays there for the next scan to run; refused or canceled, the
    /// server is sent a failing replacement in its place.
    pub(super) async fn hold(
        &mut self,
        ticket: HoldTicket,
        skip: usize,
        as_query: bool,
        rd: &mut ReadHalf<BoxIo>,
        buf: &mut BytesMut,
        up: &mut WriteHalf<BoxIo>,
    ) -> Result<(), End> {
        // Everything sent before it is answered first, so that the notice (and
        // a refusal, if it comes to that) reach the client in order.
        self.shared.wait_idle().await;
        let digest = ticket.digest.clone();
        let policy_version = ticket.verdict.policy_version.clone();
        let outcome = hold_statement(self, ticket, rd, buf).await?;
        let reply = match outcome {
            HoldOutcome::Run { approval_id } => {
                // The frame is still at the front of the buffer: it is inspected
                // again, and runs if policy still holds exactly it.
                self.grant = Some(Grant {
                    approval_id,
                    digest,
                    policy_version,
                });
                return Ok(());
            }
            HoldOutcome::Refuse { message, hint } | HoldOutcome::Pending { message, hint, .. } => {
                denial_reply(message, Some(hint))
            }
            HoldOutcome::Canceled { approval_id } => reply::hold_canceled(&approval_id),
        };
        self.extended_open |= !as_query;
        let (replacement, sync) = self.refusal_frame(reply, as_query);
        self.substitute(up, buf, replacement, skip, sync).await
    }
}

/// Holds a statement for approval through the session's shared hold (request, notice,
/// wait), while watching for the client to leave.
async fn hold_statement(
    client: &ClientSide<'_>,
    ticket: HoldTicket,
    rd: &mut ReadHalf<BoxIo>,
    buf: &mut BytesMut,
) -> Result<HoldOutcome, End> {
    let shared = &client.shared;
    let announce = |waiting: &Waiting, timeout| {
        // Nothing of the server's is half-written to the client (it owes nothing), so
        // the notice lands between messages.
        let notice = (!shared.with(|s| s.mid_frame))
            .then(|| reply::approval_pending(&waiting.approval, waiting.created, timeout));
        async move {
            match notice {
                Some(n) => shared.reply(&[n], false).await.map_err(ended_by),
                None => Ok(()),
            }
        }
    };
    let watch = async {
        loop {
            if buf.len() >= MAX_READ_WHILE_HELD {
                std::future::pending::<()>().await;
            }
            if let Err(end) = read_client(rd, buf).await {
                return end;
            }
        }
    };
    tokio::select! {
        outcome = client.session.hold_until_decided(ticket, announce) => outcome.map_err(|e| match e {
            HoldFailure::Recorder(e) => {
                tracing::error!(error = %e, "held statement not run: recording failed");
                End::RecorderFailed
            }
            HoldFailure::Announce(end) => end,
        }),
        end = watch => Err(end),
    }
}
