//! What a request asks for, as policy sees it: method, normalised path, query, media
//! type and, for a JSON object body, its top-level field names.

use airlock_model::HttpAction;

use crate::route::Route;

/// A request body's media type: lower case, without parameters; empty when absent.
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|v| v.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Whether a media type is JSON (`application/json`, `application/*+json`).
pub fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

/// The top-level field names of a JSON object body, sorted; empty for any other body
/// (an array, a scalar, or text that is not JSON: the upstream answers that).
pub fn body_fields(body: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => {
            // serde_json keeps the last of duplicate keys; the names are what matter.
            let mut names: Vec<String> = map.keys().cloned().collect();
            names.sort();
            names
        }
        _ => Vec::new(),
    }
}

/// The action of a request.
pub fn action(
    method: &str,
    route: &Route,
    query: &str,
    media_type: &str,
    fields: Vec<String>,
) -> HttpAction {
    HttpAction {
        method: method.to_owned(),
        path: route.path.segments().join("/"),
        query: query.to_owned(),
        content_type: media_type.to_owned(),
        body_fields: fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_media_types_and_fields() {
        assert_eq!(
            media_type(Some("Application/JSON; charset=utf-8")),
            "application/json"
        );
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/json-ish"));
        assert_eq!(
            body_fields(br#"{"b":1,"a":{"x":2},"b":3}"#),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert!(body_fields(b"[1,2]").is_empty());
        assert!(body_fields(b"not json").is_empty());
    }
}
