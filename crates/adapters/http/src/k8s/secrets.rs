//! Masking Kubernetes `Secret` objects in API responses while keeping them valid
//! objects: every value under `data` becomes the Base64 of `[REDACTED]` (so it still
//! decodes as `data` must), every value under `stringData` becomes `[REDACTED]`, and the
//! copy of the object that `kubectl apply` keeps in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation is masked the same way.
//!
//! A Secret is an object whose `kind` is `Secret`, or, in a response about `secrets`
//! (a list's items, a watch's events, a table's rows), any object with `metadata`. A
//! whole document (or one watch event: the API server ends each with a newline) is
//! parsed at a time, up to a bound; the detectors of the session's masking still run
//! over the result.

use base64::Engine;
use serde_json::{Map, Value};

use crate::body::Filter;

/// The annotation in which `kubectl apply` keeps the last applied object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Largest document (or watch event) masked; a larger one fails the response.
const MAX_DOCUMENT: usize = 32 * 1024 * 1024;

/// What a masked `data` value decodes to.
const MASK: &str = "[REDACTED]";

/// Masks the Secrets in `value`; returns how many values were replaced.
pub fn mask_secrets(value: &mut Value, about_secrets: bool) -> usize {
    match value {
        Value::Object(map) => {
            let mut n = 0;
            let is_secret = map.get("kind").and_then(Value::as_str) == Some("Secret")
                || (about_secrets && map.contains_key("metadata"));
            if is_secret {
                n += mask_secret(map);
            }
            for (_, v) in map.iter_mut() {
                n += mask_secrets(v, about_secrets);
            }
            n
        }
        Value::Array(items) => items
            .iter_mut()
            .map(|v| mask_secrets(v, about_secrets))
            .sum(),
        _ => 0,
    }
}

/// Masks one Secret object's values and its last-applied copy.
fn mask_secret(map: &mut Map<String, Value>) -> usize {
    let mut n = 0;
    let encoded = base64::engine::general_purpose::STANDARD.encode(MASK);
    if let Some(Value::Object(data)) = map.get_mut("data") {
        for v in data.values_mut() {
            *v = Value::String(encoded.clone());
            n += 1;
        }
    }
    if let Some(Value::Object(data)) = map.get_mut("stringData") {
        for v in data.values_mut() {
            *v = Value::String(MASK.to_owned());
            n += 1;
        }
    }
    if let Some(Value::Object(meta)) = map.get_mut("metadata")
        && let Some(Value::Object(annotations)) = meta.get_mut("annotations")
        && let Some(Value::String(applied)) = annotations.get_mut(LAST_APPLIED)
    {
        match serde_json::from_str::<Value>(applied) {
            Ok(mut copy) => {
                n += mask_secrets(&mut copy, true);
                *applied = copy.to_string();
            }
            // Not JSON: nothing of it can be shown.
            Err(_) => {
                *applied = MASK.to_owned();
                n += 1;
            }
        }
    }
    n
}

/// The filter over a response body about Secrets (or that may hold some).
pub struct SecretFilter {
    about_secrets: bool,
    /// Watch streams: one event per line.
    events: bool,
    pending: Vec<u8>,
}

impl SecretFilter {
    /// A filter for a response; `events` for a watch stream.
    pub fn new(about_secrets: bool, events: bool) -> Self {
        SecretFilter {
            about_secrets,
            events,
            pending: Vec::new(),
        }
    }

    fn document(&self, text: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if text.iter().all(u8::is_ascii_whitespace) {
            out.extend_from_slice(text);
            return Ok(());
        }
        let mut value: Value = serde_json::from_slice(text).map_err(|e| {
            format!("a Kubernetes response could not be read to mask its Secrets: {e}")
        })?;
        mask_secrets(&mut value, self.about_secrets);
        serde_json::to_writer(&mut *out, &value).map_err(|e| e.to_string())?;
        Ok(())
    }
}

impl Filter for SecretFilter {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        if self.events {
            // One event at a time, as soon as it is complete (the API server ends each
            // with a newline, which a filter before this one may still hold back).
            loop {
                let mut values =
                    serde_json::Deserializer::from_slice(&self.pending).into_iter::<Value>();
                match values.next() {
                    Some(Ok(mut event)) => {
                        let used = values.byte_offset();
                        mask_secrets(&mut event, self.about_secrets);
                        serde_json::to_writer(&mut *out, &event).map_err(|e| e.to_string())?;
                        out.push(b'\n');
                        self.pending.drain(..used);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    Some(Err(e)) => {
                        return Err(format!(
                            "a Kubernetes watch event could not be read to mask its Secrets: {e}"
                        ));
                    }
                    None => {
                        self.pending.clear();
                        break;
                    }
                }
            }
        }
        if self.pending.len() > MAX_DOCUMENT {
            return Err(format!(
                "a Kubernetes response larger than {MAX_DOCUMENT} bytes cannot be masked for Secrets"
            ));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let rest = std::mem::take(&mut self.pending);
        self.document(&rest, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &str, about: bool, events: bool) -> String {
        let mut f = SecretFilter::new(about, events);
        let mut out = Vec::new();
        for c in input.as_bytes().chunks(7) {
            f.push(c, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn secrets_keep_their_shape_and_lose_their_values() {
        let applied = r#"{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"data\":{\"pw\":\"aHVudGVyMg==\"},\"stringData\":{\"x\":\"plain-secret\"}}"#;
        let doc = format!(
            r#"{{"kind":"Secret","metadata":{{"name":"db","annotations":{{"{LAST_APPLIED}":"{applied}"}}}},"data":{{"pw":"aHVudGVyMg==","user":"YWRh"}},"type":"Opaque"}}"#
        );
        let out = run(&doc, false, false);
        let v: Value = serde_json::from_str(&out).unwrap();
        let masked = base64::engine::general_purpose::STANDARD.encode(MASK);
        assert_eq!(v["data"]["pw"], masked.as_str());
        assert_eq!(v["data"]["user"], masked.as_str());
        assert_eq!(v["type"], "Opaque");
        let copy = v["metadata"]["annotations"][LAST_APPLIED].as_str().unwrap();
        assert!(
            !copy.contains("aHVudGVyMg") && !copy.contains("plain-secret"),
            "{copy}"
        );
        assert!(serde_json::from_str::<Value>(copy).is_ok());
    }

    #[test]
    fn list_items_and_watch_events_about_secrets_are_masked() {
        let list =
            r#"{"kind":"SecretList","items":[{"metadata":{"name":"a"},"data":{"k":"c2VjcmV0"}}]}"#;
        let out = run(list, true, false);
        assert!(!out.contains("c2VjcmV0"), "{out}");
        let events = "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Secret\",\"metadata\":{},\"data\":{\"k\":\"c2VjcmV0\"}}}\n{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Secret\",\"metadata\":{},\"data\":{\"k\":\"b3RoZXI=\"}}}\n";
        let out = run(events, true, true);
        assert_eq!(out.lines().count(), 2);
        assert!(
            !out.contains("c2VjcmV0") && !out.contains("b3RoZXI="),
            "{out}"
        );
        // A ConfigMap outside a Secrets response is left alone.
        let cm = r#"{"kind":"ConfigMap","metadata":{},"data":{"k":"v"}}"#;
        assert_eq!(run(cm, false, false), cm);
    }
}
