//! Refusing a statement in order. A refused statement is not dropped: the server is sent
//! a replacement that fails at once, naming a marker (`airlock_denied_<nonce>_<n>`), so
//! it skips to the next Sync and reports the transaction state as for any error. The
//! server→client side swaps the server's error at the marker for Airlock's refusal, so
//! the refusal reaches the client exactly where the statement's answer would have.
//!
//! Also the replies and verdicts every refusal is made of.

use airlock_model::{Decision, Verdict};
use bytes::BytesMut;

use super::client::ClientSide;
use super::inspect::Step;
use super::state::Shared;
use crate::codec;
use crate::reply::Reply;
use crate::syntax::{self, SyntaxAnswer};

/// Every refusal marker starts with this (see `ClientSide::refuse_in_order`).
const DENIAL_MARKER: &str = "airlock_denied_";

impl ClientSide<'_> {
    /// A replacement the server will fail on at once, with a marker naming `reply`.
    pub(super) fn refuse_in_order(&mut self, reply: Reply, as_query: bool) -> Step {
        let (replacement, sync) = self.refusal_frame(reply, as_query);
        Step::Substitute { replacement, sync }
    }

    /// Refuses `text`, which the grammar rejected, with the server's own error where
    /// the server can be asked without running anything (see [`syntax`]).
    pub(super) fn refuse_unparsed(
        &mut self,
        text: &str,
        answer: SyntaxAnswer,
        as_query: bool,
    ) -> Step {
        let ahead = answer.ask_server.then_some(text);
        let (replacement, sync) = self.marked_frame(answer.reply, as_query, ahead);
        Step::Substitute { replacement, sync }
    }

    /// The frame behind [`ClientSide::refuse_in_order`], and whether it is a Query.
    pub(super) fn refusal_frame(&mut self, reply: Reply, as_query: bool) -> (BytesMut, bool) {
        self.marked_frame(reply, as_query, None)
    }

    /// A Query or Parse of the next refusal marker, with `ahead` (text the server is to
    /// parse first, see [`syntax::probe`]) before it.
    fn marked_frame(
        &mut self,
        reply: Reply,
        as_query: bool,
        ahead: Option<&str>,
    ) -> (BytesMut, bool) {
        self.refusals += 1;
        let marker = format!("{DENIAL_MARKER}{}_{}", self.nonce, self.refusals);
        self.shared.with(|s| {
            // A refusal the server skipped (it was already failing) is never claimed;
            // keep the map small.
            if s.denials.len() >= 256 {
                s.denials.clear();
            }
            s.denials.insert(marker.clone(), reply)
        });
        let sent = match ahead {
            Some(text) => syntax::probe(text, &marker),
            None => marker,
        };
        let mut replacement = BytesMut::new();
        if as_query {
            let mut body = sent.into_bytes();
            body.push(0);
            codec::put_message(&mut replacement, b'Q', &body);
        } else {
            // Parse of the unnamed statement: fails immediately, and the server then
            // discards everything up to the client's Sync, as for any error.
            let mut body = vec![0u8];
            body.extend_from_slice(sent.as_bytes());
            body.extend_from_slice(&[0, 0, 0]);
            codec::put_message(&mut replacement, b'P', &body);
        }
        (replacement, as_query)
    }
}

/// A verdict for something that could not be decided at all (fail closed).
pub(super) fn refused_verdict(reason: String) -> Verdict {
    Verdict {
        decision: Decision::Deny { reason },
        policies: Vec::new(),
        policy_version: String::new(),
        observed: None,
    }
}

/// A refusal as the client reads it (`42501`, insufficient privilege).
pub(super) fn denial_reply(message: String, hint: Option<String>) -> Reply {
    Reply {
        severity: "ERROR",
        code: "42501",
        message,
        detail: None,
        hint,
        position: None,
    }
}

/// The error an agent gets for a refused statement.
pub(super) fn refusal(verdict: &Verdict) -> Reply {
    match &verdict.decision {
        Decision::Allow => denial_reply("airlock: allowed".into(), None),
        Decision::Deny { reason } => denial_reply(
            format!("airlock: {reason}"),
            Some("The statement was not run. Rephrase it within what policy permits, or ask the operator for access.".into()),
        ),
        Decision::Hold { group, reason } => denial_reply(
            format!("airlock: {reason}"),
            Some(format!(
                "The statement was not run: it needs approval by a member of group \"{group}\"."
            )),
        ),
    }
}

/// The refusal an error from the server stands for, if its message names a refusal
/// marker: the one that marker was made for, or, for a marker Airlock no longer knows, a
/// plain refusal (a marker never reaches the client).
pub(super) fn claimed(shared: &Shared, message: &str) -> Option<Reply> {
    let at = message.find(DENIAL_MARKER)?;
    let marker: String = message
        .get(at..)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    // A marker Airlock no longer knows still never reaches the client.
    Some(
        shared
            .with(|s| s.denials.remove(&marker))
            .unwrap_or_else(|| {
                denial_reply(
                    "airlock: the statement was refused and not run".into(),
                    None,
                )
            }),
    )
}
