//! Reading the principal and its groups out of a token's claims, by configured paths.
//!
//! A path is dot-separated keys (`realm_access.roles`). Groups may be an array of
//! strings or one space-separated string (the `scope` claim's form).

use serde_json::Value;

/// The value at a dotted `path`, if every step exists.
pub fn at<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(claims, |v, key| v.as_object().and_then(|o| o.get(key)))
}

/// The principal's name: a string (or a number, written as text) at `path`.
pub fn principal(claims: &Value, path: &str) -> Option<String> {
    match at(claims, path)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The groups at `path`: an array of strings, or a space-separated string. Anything
/// else (absent, a number, an array with non-strings) gives no groups from it.
pub fn groups(claims: &Value, path: &str) -> Vec<String> {
    match at(claims, path) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_arrays_and_scope_strings() {
        let c = json!({
            "sub": "svc-1",
            "client_id": "agent-1",
            "groups": ["ai-agents", 7, "", "dba"],
            "realm_access": { "roles": ["reader"] },
            "scope": "db:read  k8s:read",
            "num": 42
        });
        assert_eq!(principal(&c, "client_id").as_deref(), Some("agent-1"));
        assert_eq!(principal(&c, "num").as_deref(), Some("42"));
        assert_eq!(principal(&c, "missing"), None);
        assert_eq!(groups(&c, "groups"), ["ai-agents", "dba"]);
        assert_eq!(groups(&c, "realm_access.roles"), ["reader"]);
        assert_eq!(groups(&c, "scope"), ["db:read", "k8s:read"]);
        assert!(groups(&c, "realm_access.missing").is_empty());
        assert!(groups(&c, "num").is_empty());
    }
}
