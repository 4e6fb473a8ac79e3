//! The Kubernetes flavour of the HTTP adapter: a `kind = "kubernetes"` target is served
//! on the same listener, and differs only in how a request becomes an action (the API
//! server's request info, `engine::k8s`), in the shape of Airlock's own answers (a
//! Kubernetes `Status`, so kubectl prints them), in the headers it adds or refuses
//! (impersonation), and in masking `Secret` objects (`secrets`).

pub mod secrets;

use airlock_engine::k8s::request_info::{RequestInfo, request_info};
use airlock_model::{K8sAction, Principal};
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{ResponseBody, ResponseBodyExt};
use crate::problem::Problem;

/// A Kubernetes request as Airlock decides it.
pub struct K8sRequest {
    /// What policy decides.
    pub action: K8sAction,
    /// The API server's reading of the request.
    pub info: RequestInfo,
    /// A watch: the response is a stream of events.
    pub watch: bool,
}

/// Whether a request needs its body read for the decision (a write's object).
pub fn wants_body(method: &hyper::Method) -> bool {
    matches!(
        *method,
        hyper::Method::POST | hyper::Method::PUT | hyper::Method::PATCH
    )
}

/// Refuses impersonation asked for by the agent: only Airlock impersonates (with
/// `impersonate = true`), as the agent.
pub fn refuse_impersonation(headers: &HeaderMap) -> Result<(), Problem> {
    match headers
        .keys()
        .find(|n| n.as_str().starts_with("impersonate-"))
    {
        Some(name) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "impersonation-refused",
            "Impersonation refused",
            format!(
                "airlock: the request carries `{name}`; agents cannot impersonate through Airlock (it was not sent). Remove --as/--as-group from the command."
            ),
        )),
        None => Ok(()),
    }
}

/// Reads a request the way the API server will: the verb, resource, namespace and
/// name of `path` (already normalised, under the target), and for a write the object's
/// kind and labels from its body.
pub fn inspect(
    method: &hyper::Method,
    path: &str,
    query: &str,
    body: Option<&[u8]>,
) -> Result<K8sRequest, Problem> {
    let info = request_info(method.as_str(), path, query).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "ambiguous-path",
            "Request refused",
            format!("airlock: the request was refused and not sent: {e}"),
        )
    })?;
    let (kind, labels) = body.map(object_facts).unwrap_or_default();
    let command = if matches!(info.subresource.as_str(), "exec" | "attach") {
        query_values(query, "command").join(" ")
    } else {
        String::new()
    };
    let action = if info.is_resource_request {
        K8sAction {
            verb: info.verb.clone(),
            group: info.api_group.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            path: String::new(),
            kind,
            labels,
            command,
        }
    } else {
        K8sAction {
            verb: "discover".into(),
            group: String::new(),
            resource: String::new(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: info.path.clone(),
            kind: String::new(),
            labels: Vec::new(),
            command: String::new(),
        }
    };
    Ok(K8sRequest {
        watch: info.verb == "watch",
        action,
        info,
    })
}

/// The `kind` and the labels (`key=value`, sorted) of a write's object, JSON or YAML.
fn object_facts(body: &[u8]) -> (String, Vec<String>) {
    let value: Option<Value> = serde_json::from_slice(body)
        .ok()
        .or_else(|| serde_yaml::from_slice(body).ok());
    let Some(Value::Object(object)) = value else {
        return (String::new(), Vec::new());
    };
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut labels: Vec<String> = object
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    (kind, labels)
}

/// Every value of parameter `name` in a query string, percent-decoded (`+` is a space).
fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The headers Airlock changes on the way to the API server: the agent's `Accept` asks
/// for JSON where it asked for protobuf (Airlock masks JSON), and with `impersonate`
/// the agent's identity is asserted.
pub fn upstream_headers(
    headers: &mut HeaderMap,
    resource_request: bool,
    impersonate: Option<&Principal>,
) {
    // Objects come back as JSON, which Airlock masks: any other form an agent asks for
    // (protobuf, YAML) is asked as JSON instead; JSON variants (a Table) are kept.
    // Discovery documents (the OpenAPI schema kubectl validates with) hold no object:
    // they may stay protobuf.
    let json_only = headers.get_all(header::ACCEPT).iter().all(|v| {
        v.to_str().is_ok_and(|t| {
            t.split(',').all(|range| {
                let media = range.split(';').next().unwrap_or_default().trim();
                media.eq_ignore_ascii_case("application/json")
            })
        })
    });
    if resource_request && !json_only {
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    }
    if let Some(p) = impersonate {
        if let Ok(user) = HeaderValue::from_str(&p.name) {
            headers.insert(HeaderName::from_static("impersonate-user"), user);
        }
        for g in &p.groups {
            if let Ok(group) = HeaderValue::from_str(g) {
                headers.append(HeaderName::from_static("impersonate-group"), group);
            }
        }
    }
}

/// Airlock's own answer as a Kubernetes `Status`, so kubectl and client libraries print
/// its message (`Error from server (Forbidden): ...`).
pub fn status(problem: &Problem) -> Response<ResponseBody> {
    let reason = match problem.status {
        StatusCode::UNAUTHORIZED => "Unauthorized",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        StatusCode::BAD_REQUEST => "BadRequest",
        _ => "InternalError",
    };
    let mut message = problem.detail.clone();
    if let Some(Value::String(hint)) = problem.extra.get("hint") {
        message.push(' ');
        message.push_str(hint);
    }
    let mut details = serde_json::Map::new();
    details.insert("airlock".into(), problem.document());
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": problem.status.as_u16(),
    });
    let mut response = Response::new(ResponseBody::full(Bytes::from(
        body.to_string().into_bytes(),
    )));
    *response.status_mut() = problem.status;
    let plain = problem.response();
    for (name, value) in plain.headers() {
        if name != header::CONTENT_TYPE {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_requests_as_the_api_server_does() {
        let get = hyper::Method::GET;
        let r = inspect(&get, "/api/v1/namespaces/kube%2Dsystem/pods", "", None).unwrap();
        assert_eq!(r.action.verb, "list");
        assert_eq!(r.action.namespace, "kube-system");
        assert_eq!(r.action.resource, "pods");
        let r = inspect(&hyper::Method::DELETE, "/api/v1/namespaces/foo", "", None).unwrap();
        assert_eq!(
            (
                r.action.verb.as_str(),
                r.action.resource.as_str(),
                r.action.name.as_str()
            ),
            ("delete", "namespaces", "foo")
        );
        let r = inspect(&get, "/version", "", None).unwrap();
        assert_eq!(r.action.verb, "discover");
        assert_eq!(r.action.path, "/version");
        let r = inspect(&get, "/api/v1/pods", "watch=true", None).unwrap();
        assert!(r.watch);
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"tier":"fe","app":"web"}}}"#;
        let r = inspect(
            &hyper::Method::POST,
            "/apis/apps/v1/namespaces/default/deployments",
            "",
            Some(body),
        )
        .unwrap();
        assert_eq!(r.action.kind, "Deployment");
        assert_eq!(
            r.action.labels,
            vec!["app=web".to_owned(), "tier=fe".to_owned()]
        );
        let yaml = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  labels:\n    a: b\n";
        let r = inspect(
            &hyper::Method::PATCH,
            "/api/v1/namespaces/default/secrets/s",
            "fieldManager=kubectl",
            Some(yaml),
        )
        .unwrap();
        assert_eq!(
            (r.action.kind.as_str(), r.action.labels.clone()),
            ("Secret", vec!["a=b".to_owned()])
        );
        let r = inspect(
            &hyper::Method::POST,
            "/api/v1/namespaces/default/pods/web/exec",
            "command=sh&command=-c&command=rm+-rf+%2Fdata&stdin=true",
            None,
        )
        .unwrap();
        assert_eq!(r.action.command, "sh -c rm -rf /data");
        assert_eq!(r.action.subresource, "exec");
        assert!(inspect(&get, "/api/v1/namespaces/a%2Fb/pods", "", None).is_err());
    }

    #[test]
    fn impersonation_is_refused_and_protobuf_is_asked_as_json() {
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", HeaderValue::from_static("admin"));
        assert!(refuse_impersonation(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/vnd.kubernetes.protobuf,application/json"),
        );
        upstream_headers(&mut h, true, None);
        assert_eq!(h.get(header::ACCEPT).unwrap(), "application/json");
        for asked in [
            "application/yaml",
            "*/*",
            "application/json, application/yaml",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(asked));
            upstream_headers(&mut h, true, None);
            assert_eq!(
                h.get(header::ACCEPT).unwrap(),
                "application/json",
                "{asked}"
            );
        }
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static(table));
        upstream_headers(&mut h, true, None);
        assert_eq!(
            h.get(header::ACCEPT).unwrap(),
            table,
            "a Table is JSON: kept"
        );
    }
}
