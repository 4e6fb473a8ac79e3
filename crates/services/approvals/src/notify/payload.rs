//! The bodies webhooks receive: Airlock's own JSON document (`json`) and a Slack
//! incoming-webhook message (`slack`).
//!
//! Everything in a request (principal, statement, reason) may come from the agent, so
//! the Slack message escapes it: an agent must not be able to put a link, a mention or
//! the end of a code block into an approver's channel.

use airlock_model::{Approval, ApprovalStatus, Timestamp};
use serde::Serialize;
use serde_json::{Value, json};

/// The `event` field and `X-Airlock-Event` header of a new request.
pub const EVENT_REQUESTED: &str = "approval.requested";

/// Statement text shown in a Slack message, in characters after escaping (Slack allows
/// 3000 in a section).
const SLACK_STATEMENT_MAX: usize = 2500;
/// Parameters shown in a Slack message, in characters after escaping.
const SLACK_PARAMS_MAX: usize = 500;
/// The reason shown in a Slack message, in characters after escaping.
const SLACK_REASON_MAX: usize = 1000;
/// A Slack header block holds at most 150 characters.
const SLACK_HEADER_MAX: usize = 150;

/// Where approvers act on a request through the admin API.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    this: String,
    approve: String,
    deny: String,
}

impl Links {
    /// The links of request `id` under the API base `public_url` (no trailing slash).
    pub(crate) fn new(public_url: &str, id: &str) -> Self {
        let this = format!("{public_url}/api/approvals/{id}");
        Links {
            approve: format!("{this}/approve"),
            deny: format!("{this}/deny"),
            this,
        }
    }
}

/// The CLI commands that decide request `id`.
#[derive(Debug, Clone, Serialize)]
struct Commands {
    approve: String,
    deny: String,
}

impl Commands {
    fn new(id: &str) -> Self {
        Commands {
            approve: format!("airlock approve {id} --comment '...'"),
            deny: format!("airlock deny {id} --reason '...'"),
        }
    }
}

/// The request as receivers see it (the store's bookkeeping fields left out).
#[derive(Serialize)]
struct ApprovalView<'a> {
    id: &'a str,
    status: ApprovalStatus,
    session_id: &'a str,
    principal: &'a str,
    target: &'a str,
    protocol: &'a str,
    statement: &'a str,
    params: &'a Value,
    approver_group: &'a str,
    reason: &'a str,
    policies: &'a [String],
    policy_version: &'a str,
    created_at: Timestamp,
    expires_at: Timestamp,
}

#[derive(Serialize)]
struct JsonPayload<'a> {
    event: &'static str,
    approval: ApprovalView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<&'a Links>,
    commands: Commands,
}

/// The `json` body: `{"event", "approval", "links"?, "commands"}`.
pub(crate) fn json_body(a: &Approval, links: Option<&Links>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&JsonPayload {
        event: EVENT_REQUESTED,
        approval: ApprovalView {
            id: &a.id,
            status: a.status,
            session_id: &a.session_id,
            principal: &a.principal,
            target: &a.target,
            protocol: &a.protocol,
            statement: &a.statement,
            params: &a.params,
            approver_group: &a.approver_group,
            reason: &a.reason,
            policies: &a.policies,
            policy_version: &a.policy_version,
            created_at: a.created_at,
            expires_at: a.expires_at,
        },
        links,
        commands: Commands::new(&a.id),
    })
}

/// The `slack` body: a one-line `text` (notifications, clients without blocks) and
/// `blocks` with who, where, why, what and how to decide.
pub(crate) fn slack_body(
    a: &Approval,
    links: Option<&Links>,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&slack_message(a, links))
}

fn slack_message(a: &Approval, links: Option<&Links>) -> Value {
    let principal = escape(&a.principal);
    let target = escape(&a.target);
    let group = escape(&a.approver_group);
    let (reason, _) = escape_within(single_line(&a.reason).as_str(), SLACK_REASON_MAX);
    let text = format!(
        "Approval requested: {principal} on {target} needs a member of {group} to approve: {reason}"
    );

    let header = truncate_chars(
        &format!("Approval requested: {} on {}", a.principal, a.target),
        SLACK_HEADER_MAX,
    );
    let expires = format!(
        "<!date^{}^{{date_short_pretty}} at {{time}}|{}>",
        a.expires_at.unix(),
        a.expires_at
    );
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header, "emoji": false}}),
        json!({"type": "section", "fields": [
            {"type": "mrkdwn", "text": format!("*Principal*\n{principal}")},
            {"type": "mrkdwn", "text": format!("*Target*\n{target} ({})", escape(&a.protocol))},
            {"type": "mrkdwn", "text": format!("*Approver group*\n{group}")},
            {"type": "mrkdwn", "text": format!("*Expires*\n{expires}")},
        ]}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Reason*\n{reason}")}}),
    ];

    let (statement, cut) = escape_within(&a.statement, SLACK_STATEMENT_MAX);
    let mut shown = format!("*Statement*\n```{}```", unfence(&statement));
    if cut {
        shown.push_str(&format!(
            "\n_Truncated: the statement has {} characters; the full text is in the request (`GET /api/approvals/{}`)._",
            a.statement.chars().count(),
            a.id
        ));
    }
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": shown}}));

    if !params_empty(&a.params) {
        let params = a.params.to_string();
        let (params, cut) = escape_within(&params, SLACK_PARAMS_MAX);
        let mut shown = format!("*Parameters*\n```{}```", unfence(&params));
        if cut {
            shown.push_str("\n_Truncated._");
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": shown}}));
    }

    let commands = Commands::new(&a.id);
    blocks.push(
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!(
            "*Decide* (as a member of {group}, not {principal})\n```{}\n{}```",
            escape(&commands.approve),
            escape(&commands.deny)
        )}}),
    );

    let mut context = format!("Request `{}`", escape(&a.id));
    if let Some(l) = links {
        context.push_str(&format!(
            " · <{}|view in the API> · approve: `POST {}` · deny: `POST {}`",
            l.this, l.approve, l.deny
        ));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));

    json!({"text": text, "blocks": blocks})
}

fn params_empty(params: &Value) -> bool {
    match params {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Escapes the three characters Slack's `mrkdwn` treats as control characters.
fn escape(text: &str) -> String {
    escape_within(text, usize::MAX).0
}

/// Escapes `text` and keeps at most `max` characters of the result, cutting between
/// escapes; the flag says whether something was cut.
fn escape_within(text: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(max));
    let mut used = 0usize;
    for c in text.chars() {
        let piece = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => {
                if used + 1 > max {
                    return (out, true);
                }
                out.push(c);
                used += 1;
                continue;
            }
        };
        if used + piece.len() > max {
            return (out, true);
        }
        out.push_str(piece);
        used += piece.len();
    }
    (out, false)
}

/// Keeps text from closing the code block it is shown in: a zero-width space splits
/// every run of three backticks.
fn unfence(text: &str) -> String {
    text.replace("```", "`\u{200b}`\u{200b}`")
}

/// Newlines and tabs become spaces (for the one-line summary).
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters of `text`, with an ellipsis when cut.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Approval {
        let now = Timestamp::parse("2026-11-25T10:00:00Z").unwrap();
        Approval {
            id: "0193a3b4-0000-7000-8000-000000000001".into(),
            status: ApprovalStatus::Pending,
            session_id: "s1".into(),
            principal: "agent-7".into(),
            target: "shop".into(),
            protocol: "postgres".into(),
            statement: "DELETE FROM orders WHERE id = $1".into(),
            params: json!(["42"]),
            digest: "ab".repeat(32),
            policy_version: "v3".into(),
            policies: vec!["hold-deletes".into()],
            approver_group: "dba".into(),
            reason: "deletes need a DBA".into(),
            created_at: now,
            expires_at: now.plus(std::time::Duration::from_secs(3600)),
            decided_by: None,
            decided_at: None,
            comment: None,
            used_at: None,
            used_in_session: None,
        }
    }

    #[test]
    fn json_has_the_listed_fields_and_no_bookkeeping() {
        let a = approval();
        let links = Links::new("https://gw:8080", &a.id);
        let v: Value = serde_json::from_slice(&json_body(&a, Some(&links)).unwrap()).unwrap();
        assert_eq!(v["event"], "approval.requested");
        assert_eq!(v["approval"]["status"], "pending");
        assert_eq!(v["approval"]["created_at"], "2026-11-25T10:00:00.000000Z");
        assert!(v["approval"].get("digest").is_none());
        assert!(v["approval"].get("decided_by").is_none());
        assert_eq!(
            v["links"]["deny"],
            format!("https://gw:8080/api/approvals/{}/deny", a.id)
        );
        let v: Value = serde_json::from_slice(&json_body(&a, None).unwrap()).unwrap();
        assert!(v.get("links").is_none());
        assert_eq!(
            v["commands"]["approve"],
            format!("airlock approve {} --comment '...'", a.id)
        );
    }

    #[test]
    fn slack_escapes_agent_text() {
        let mut a = approval();
        a.reason = "<!channel> see <https://evil.example|here> & more".into();
        a.statement = "SELECT 1 ``` <@U123>".into();
        let v = slack_message(&a, None);
        let all = v.to_string();
        assert!(!all.contains("<!channel>"));
        assert!(!all.contains("<https://evil"));
        assert!(!all.contains("<@U123>"));
        assert!(all.contains("&lt;!channel&gt;"));
        assert!(all.contains("&amp; more"));
        assert!(!all.contains("SELECT 1 ```"));
    }

    #[test]
    fn long_statements_are_cut_with_a_note() {
        let mut a = approval();
        a.statement = "<".repeat(5000);
        let v = slack_message(&a, None);
        let section = v["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|b| {
                b["text"]["text"]
                    .as_str()
                    .filter(|t| t.starts_with("*Statement*"))
            })
            .unwrap()
            .to_owned();
        assert!(section.contains("5000 characters"));
        assert!(section.chars().count() < 3000);
        assert!(!section.contains("&lt&")); // cut between escapes
    }

    #[test]
    fn escape_within_counts_escapes() {
        assert_eq!(escape_within("a<b", 10), ("a&lt;b".to_owned(), false));
        assert_eq!(escape_within("a<b", 4), ("a".to_owned(), true));
        assert_eq!(escape_within("ééé", 2), ("éé".to_owned(), true));
        assert_eq!(truncate_chars("abcdef", 4), "abc…");
    }
}
