//! Masking what an MCP server answers, by the shape MCP gives it: text content (as
//! JSON when the text is JSON, so the column-name rules apply to its keys; else by the
//! detectors), `structuredContent`, embedded resources, resource reads and prompt
//! messages. Binary content (images, audio, blobs) cannot be masked: it passes, unless
//! a rule withholds what cannot be masked.

use serde_json::Value;

use crate::masking::json::mask_json;
use crate::masking::rules::{Masker, Tally};

/// A result that holds something masking cannot read, under a rule that withholds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the result holds {what}, which cannot be masked, and masking rule `{rule}` withholds what cannot be masked"
)]
pub struct Withheld {
    /// What could not be masked.
    pub what: String,
    /// The rule that withholds it.
    pub rule: String,
}

/// Masks the `result` of a response to `method`, in place.
pub fn mask_result(
    masker: &Masker,
    method: &str,
    result: &mut Value,
    tally: &mut Tally,
) -> Result<(), Withheld> {
    match method {
        // What the server is and offers: names and descriptions, nothing of the data.
        "initialize"
        | "server/discover"
        | "tools/list"
        | "prompts/list"
        | "resources/list"
        | "resources/templates/list"
        | "ping" => Ok(()),
        "tools/call" => {
            let Some(map) = result.as_object_mut() else {
                mask_value(masker, result, tally);
                return Ok(());
            };
            for (key, value) in map.iter_mut() {
                match key.as_str() {
                    "content" => content_blocks(masker, value, tally)?,
                    "isError" | "resultType" => {}
                    _ => mask_value(masker, value, tally),
                }
            }
            Ok(())
        }
        "resources/read" => {
            if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
                for c in contents {
                    resource_contents(masker, c, tally)?;
                }
            }
            if let Some(meta) = result.get_mut("_meta") {
                mask_value(masker, meta, tally);
            }
            Ok(())
        }
        "prompts/get" => {
            if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
                for m in messages {
                    if let Some(c) = m.get_mut("content") {
                        content_blocks(masker, c, tally)?;
                    }
                }
            }
            if let Some(d) = result.get_mut("description") {
                mask_value(masker, d, tally);
            }
            Ok(())
        }
        _ => {
            mask_value(masker, result, tally);
            Ok(())
        }
    }
}

/// Masks the params of something the server sends on its own (a log message, a
/// progress note, a sampling request): every value, keys included.
pub fn mask_params(masker: &Masker, params: &mut Value, tally: &mut Tally) {
    mask_value(masker, params, tally);
}

/// One content block or a list of them.
fn content_blocks(masker: &Masker, value: &mut Value, tally: &mut Tally) -> Result<(), Withheld> {
    match value {
        Value::Array(blocks) => {
            for b in blocks {
                content_block(masker, b, tally)?;
            }
            Ok(())
        }
        Value::Object(_) => content_block(masker, value, tally),
        _ => {
            mask_value(masker, value, tally);
            Ok(())
        }
    }
}

fn content_block(masker: &Masker, block: &mut Value, tally: &mut Tally) -> Result<(), Withheld> {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    match kind.as_str() {
        "text" => {
            if let Some(text) = block.get_mut("text") {
                mask_text(masker, text, tally);
            }
        }
        "resource" => {
            if let Some(r) = block.get_mut("resource") {
                resource_contents(masker, r, tally)?;
            }
        }
        "image" | "audio" => unmaskable(masker, &format!("{kind} content"))?,
        // A link names a resource; reading it is decided and masked on its own.
        "resource_link" => {}
        _ => {
            mask_value(masker, block, tally);
            return Ok(());
        }
    }
    if let Some(meta) = block.get_mut("_meta") {
        mask_value(masker, meta, tally);
    }
    Ok(())
}

/// A resource's contents: `text` (JSON or not) or a Base64 `blob`.
fn resource_contents(masker: &Masker, r: &mut Value, tally: &mut Tally) -> Result<(), Withheld> {
    if r.get("blob").is_some() {
        unmaskable(masker, "a binary resource (blob)")?;
    }
    if let Some(text) = r.get_mut("text") {
        mask_text(masker, text, tally);
    }
    if let Some(meta) = r.get_mut("_meta") {
        mask_value(masker, meta, tally);
    }
    Ok(())
}

fn unmaskable(masker: &Masker, what: &str) -> Result<(), Withheld> {
    match masker.withholds_unmaskable() {
        Some(rule) => Err(Withheld {
            what: what.to_owned(),
            rule: rule.to_owned(),
        }),
        None => Ok(()),
    }
}

/// A text value: masked as JSON when it is a JSON object or array, else by the
/// detectors.
fn mask_text(masker: &Masker, text: &mut Value, tally: &mut Tally) {
    let Value::String(s) = text else {
        mask_value(masker, text, tally);
        return;
    };
    let trimmed = s.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::with_capacity(s.len());
        let mut local = Tally::default();
        if let Ok(changed) = mask_json(masker, s.as_bytes(), &mut out, &mut local) {
            tally.absorb(&mut local);
            if changed {
                *s = String::from_utf8_lossy(&out).into_owned();
            }
            return;
        }
    }
    if let Some(masked) = masker.scan_str(s, tally) {
        *s = masked;
    }
}

/// Any JSON value: its keys by the column-name rules, its strings by the detectors.
fn mask_value(masker: &Masker, value: &mut Value, tally: &mut Tally) {
    if matches!(value, Value::Null | Value::Bool(_)) {
        return;
    }
    let Ok(text) = serde_json::to_vec(value) else {
        return;
    };
    let mut out = Vec::with_capacity(text.len());
    let mut local = Tally::default();
    match mask_json(masker, &text, &mut out, &mut local) {
        Ok(true) => {
            if let Ok(masked) = serde_json::from_slice(&out) {
                tally.absorb(&mut local);
                *value = masked;
            } else {
                masker.mask_json_strings(value, tally);
            }
        }
        Ok(false) => {}
        // serde_json wrote it, so it is JSON; should the walk still refuse it (depth),
        // the detectors still see every string.
        Err(_) => masker.mask_json_strings(value, tally),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use airlock_model::{Principal, PrincipalSource};
    use serde_json::json;

    use super::*;
    use crate::masking::redact::HashKey;
    use crate::masking::rules::{MaskingRules, default_rule};

    fn masker() -> Arc<Masker> {
        let rules = MaskingRules::compile(vec![default_rule(
            vec!["tools".into()],
            Arc::new(HashKey::new(b"0123456789abcdef".to_vec())),
        )])
        .unwrap();
        let p = Principal {
            name: "agent".into(),
            groups: Vec::new(),
            source: PrincipalSource::ServiceToken,
            expires_at: None,
        };
        rules.for_session("tools", &p).unwrap()
    }

    const PII: [&str; 3] = ["ada@example.com", "4111 1111 1111 1111", "hunter2"];

    fn raw(v: &Value) -> Vec<&'static str> {
        let text = v.to_string();
        PII.into_iter().filter(|p| text.contains(p)).collect()
    }

    #[test]
    fn tool_results_are_masked_in_text_json_and_structured_content() {
        let m = masker();
        let customer = json!({"id": 1, "name": "Ada Lovelace", "email": "ada@example.com",
            "card": "4111 1111 1111 1111", "password": "hunter2"});
        let mut result = json!({
            "content": [
                {"type": "text", "text": serde_json::to_string_pretty(&customer).unwrap()},
                {"type": "text", "text": "mail ada@example.com about it"},
                {"type": "resource", "resource": {"uri": "c://1", "mimeType": "application/json",
                    "text": customer.to_string()}}
            ],
            "structuredContent": customer,
            "isError": false
        });
        let mut tally = Tally::default();
        mask_result(&m, "tools/call", &mut result, &mut tally).unwrap();
        assert!(raw(&result).is_empty(), "{result:#}");
        assert!(!tally.is_empty());
        assert_eq!(result["isError"], json!(false));
        assert_eq!(result["structuredContent"]["name"], json!("Ada Lovelace"));
        let text = result["content"][0]["text"].as_str().unwrap();
        let parsed: Value = serde_json::from_str(text).expect("masked JSON text stays JSON");
        assert_ne!(parsed["password"], json!("hunter2"));
    }

    #[test]
    fn reads_and_prompts_are_masked_and_listings_are_not() {
        let m = masker();
        let mut read =
            json!({"contents": [{"uri": "c://1", "text": "{\"password\": \"hunter2\"}"}]});
        mask_result(&m, "resources/read", &mut read, &mut Tally::default()).unwrap();
        assert!(raw(&read).is_empty(), "{read}");
        let mut prompt = json!({"messages": [{"role": "user",
            "content": {"type": "text", "text": "write to ada@example.com"}}]});
        mask_result(&m, "prompts/get", &mut prompt, &mut Tally::default()).unwrap();
        assert!(raw(&prompt).is_empty(), "{prompt}");
        let mut list = json!({"tools": [{"name": "mail", "description": "mails ada@example.com"}]});
        let before = list.clone();
        mask_result(&m, "tools/list", &mut list, &mut Tally::default()).unwrap();
        assert_eq!(list, before, "a listing describes tools; it holds no data");
        let mut log = json!({"level": "info", "data": {"password": "hunter2"}});
        mask_params(&m, &mut log, &mut Tally::default());
        assert!(raw(&log).is_empty(), "{log}");
    }
}
