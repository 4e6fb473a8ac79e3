//! Table tests for the request-info port: the API server's own tables from
//! `k8s.io/apiserver/pkg/endpoints/request/requestinfo_test.go` (re-expressed, with the
//! cases where Airlock deliberately refuses marked so), then Airlock's percent-decoding,
//! refusals and query rules, then properties over random paths.

use super::*;
use proptest::prelude::*;

/// Decides `url` (a path with an optional `?query`) as `request_info` would receive it.
fn decide(method: &str, url: &str) -> Result<RequestInfo, RequestInfoError> {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    request_info(method, path, query)
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|part| (*part).to_owned()).collect()
}

/// One row of the API server's `TestGetAPIRequestInfo` success table: method, url,
/// verb, API prefix, group, version, namespace, resource, subresource, name, parts.
type ApiRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
);

// The Go table's API-prefix column reads "api" for its `/apis/extensions/...` rows but
// the Go test never checks that column; the Go code gives "apis", and so do we.
#[rustfmt::skip]
const GET_API_REQUEST_INFO: &[ApiRow] = &[
    // resource paths
    ("GET", "/api/v1/namespaces", "list", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("GET", "/api/v1/namespaces/other", "get", "api", "", "v1", "other", "namespaces", "", "other", &["namespaces", "other"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("HEAD", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("HEAD", "/api/v1/pods", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods/foo", "get", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/namespaces/other/pods", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // special verbs
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("GET", "/api/v1/proxy/namespaces/other/pods/foo/subpath/not/a/subresource", "proxy", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo", "subpath", "not", "a", "subresource"]),
    ("GET", "/api/v1/watch/pods", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=true", "watch", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/pods?watch=false", "list", "api", "", "v1", "", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/watch/namespaces/other/pods", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=1", "watch", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("GET", "/api/v1/namespaces/other/pods?watch=0", "list", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // subresource identification
    ("GET", "/api/v1/namespaces/other/pods/foo/status", "get", "api", "", "v1", "other", "pods", "status", "foo", &["pods", "foo", "status"]),
    ("GET", "/api/v1/namespaces/other/pods/foo/proxy/subpath", "get", "api", "", "v1", "other", "pods", "proxy", "foo", &["pods", "foo", "proxy", "subpath"]),
    ("PUT", "/api/v1/namespaces/other/finalize", "update", "api", "", "v1", "other", "namespaces", "finalize", "other", &["namespaces", "other", "finalize"]),
    ("PUT", "/api/v1/namespaces/other/status", "update", "api", "", "v1", "other", "namespaces", "status", "other", &["namespaces", "other", "status"]),
    // verb identification
    ("PATCH", "/api/v1/namespaces/other/pods/foo", "patch", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("DELETE", "/api/v1/namespaces/other/pods/foo", "delete", "api", "", "v1", "other", "pods", "", "foo", &["pods", "foo"]),
    ("POST", "/api/v1/namespaces/other/pods", "create", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    // deletecollection verb identification
    ("DELETE", "/api/v1/nodes", "deletecollection", "api", "", "v1", "", "nodes", "", "", &["nodes"]),
    ("DELETE", "/api/v1/namespaces", "deletecollection", "api", "", "v1", "", "namespaces", "", "", &["namespaces"]),
    ("DELETE", "/api/v1/namespaces/other/pods", "deletecollection", "api", "", "v1", "other", "pods", "", "", &["pods"]),
    ("DELETE", "/apis/extensions/v1/namespaces/other/pods", "deletecollection", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    // api group identification
    ("POST", "/apis/extensions/v1/namespaces/other/pods", "create", "apis", "extensions", "v1", "other", "pods", "", "", &["pods"]),
    // api version identification
    ("POST", "/apis/extensions/v1beta3/namespaces/other/pods", "create", "apis", "extensions", "v1beta3", "other", "pods", "", "", &["pods"]),
];

#[test]
fn api_server_get_api_request_info_success_table() {
    assert_eq!(GET_API_REQUEST_INFO.len(), 30);
    for &(method, url, verb, prefix, group, version, namespace, resource, sub, name, parts) in
        GET_API_REQUEST_INFO
    {
        let info = decide(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let expected = RequestInfo {
            is_resource_request: true,
            path: url.split('?').next().unwrap_or(url).to_owned(),
            verb: verb.to_owned(),
            api_prefix: prefix.to_owned(),
            api_group: group.to_owned(),
            api_version: version.to_owned(),
            namespace: namespace.to_owned(),
            resource: resource.to_owned(),
            subresource: sub.to_owned(),
            name: name.to_owned(),
            parts: strings(parts),
            field_selector: String::new(),
            label_selector: String::new(),
        };
        assert_eq!(info, expected, "{method} {url}");
    }
}

#[test]
fn api_server_get_api_request_info_non_resource_table() {
    // The Go table's "error cases": none is an error, all are non-resource requests.
    let cases = [
        ("no resource path", "/"),
        ("just apiversion", "/api/version/"),
        ("just prefix, group, version", "/apis/group/version/"),
        ("apiversion with no resource", "/api/version/"),
        ("bad prefix", "/badprefix/version/resource"),
        ("missing api group", "/apis/version/resource"),
    ];
    for (name, url) in cases {
        let info = decide("GET", url).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!info.is_resource_request, "{name}: {info:?}");
        assert_eq!(info.verb, "get", "{name}");
        assert_eq!(info.path, url, "{name}");
        assert!(info.parts.is_empty(), "{name}");
    }
}

#[test]
fn api_server_get_non_api_request_info_table() {
    #[rustfmt::skip]
    let cases = [
        ("simple groupless", "/api/version/resource", true),
        ("simple group", "/apis/group/version/resource/name/subresource", true),
        ("more steps", "/api/version/resource/name/subresource", true),
        ("group list", "/apis/batch/v1/job", true),
        ("group get", "/apis/batch/v1/job/foo", true),
        ("group subresource", "/apis/batch/v1/job/foo/scale", true),
        ("bad root", "/not-api/version/resource", false),
        ("group without enough steps", "/apis/extensions/v1beta1", false),
        ("group without enough steps 2", "/apis/extensions/v1beta1/", false),
        ("not enough steps", "/api/version", false),
        ("one step", "/api", false),
        ("zero step", "/", false),
    ];
    for (name, url, resource) in cases {
        let info = decide("GET", url).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info.is_resource_request, resource, "{name}");
    }
    // Go's "empty" case ("" is a non-resource request) builds the request by hand; a
    // real server never receives an empty path, and Airlock refuses one.
    assert_eq!(
        decide("GET", ""),
        Err(RequestInfoError::NotOriginForm { got: String::new() })
    );
}

/// One row of the API server's `TestSelectorParsing`: name, method, url, then the
/// expected name, verb, field selector and label selector.
type SelectorRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const SELECTOR_PARSING: &[SelectorRow] = &[
    ("no selector", "GET", "/apis/group/version/resource", "", "list", "", ""),
    ("metadata.name selector", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list", "metadata.name=name1", ""),
    ("metadata.name selector with watch", "GET", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch", "metadata.name=name1", ""),
    ("random selector", "GET", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "list", "foo=bar", "baz=qux"),
    ("invalid selector with metadata.name", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list", "metadata.name=name1,foo", ""),
    ("invalid selector with metadata.name with watch", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch", "metadata.name=name1,foo", ""),
    ("invalid selector with metadata.name with watch false", "GET", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list", "metadata.name=name1,foo", ""),
    ("selector on deletecollection is honored", "DELETE", "/apis/group/version/resource?fieldSelector=foo=bar&labelSelector=baz=qux", "", "deletecollection", "foo=bar", "baz=qux"),
    ("selector on other verb is ignored", "GET", "/apis/group/version/resource/name?fieldSelector=foo=bar&labelSelector=foo=bar", "name", "get", "", ""),
    ("selector on deprecated root type watch is not parsed", "GET", "/apis/group/version/watch/resource?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "", "watch", "", ""),
    ("selector on deprecated root item watch is not parsed", "GET", "/apis/group/version/watch/resource/name?fieldSelector=metadata.name=foo&labelSelector=foo=bar", "name", "watch", "", ""),
];

#[test]
fn api_server_selector_parsing_table() {
    for &(case, method, url, name, verb, field, label) in SELECTOR_PARSING {
        let info = decide(method, url).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(info.name, name, "{case}");
        assert_eq!(info.verb, verb, "{case}");
        assert_eq!(info.field_selector, field, "{case}");
        assert_eq!(info.label_selector, label, "{case}");
    }
    // Go's "selector on repeated param matches parsed param" reads the first of two
    // `fieldSelector`s and of two `labelSelector`s; Airlock refuses the ambiguity.
    let repeated = "/apis/group/version/resource?fieldSelector=metadata.name=foo\
                    &fieldSelector=metadata.name=bar&labelSelector=foo=bar&labelSelector=foo=baz";
    assert_eq!(
        decide("GET", repeated),
        Err(RequestInfoError::RepeatedParameter {
            name: "fieldSelector"
        })
    );
}

#[test]
fn api_server_field_selector_parsing_table() {
    // The older `TestFieldSelectorParsing` (name and verb only).
    #[rustfmt::skip]
    let cases = [
        ("no selector", "/apis/group/version/resource", "", "list"),
        ("metadata.name selector", "/apis/group/version/resource?fieldSelector=metadata.name=name1", "name1", "list"),
        ("metadata.name selector with watch", "/apis/group/version/resource?watch=true&fieldSelector=metadata.name=name1", "name1", "watch"),
        ("random selector", "/apis/group/version/resource?fieldSelector=foo=bar", "", "list"),
        ("invalid selector with metadata.name", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo", "", "list"),
        ("invalid selector with metadata.name with watch", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=true", "", "watch"),
        ("invalid selector with metadata.name with watch false", "/apis/group/version/resource?fieldSelector=metadata.name=name1,foo&watch=false", "", "list"),
    ];
    for (case, url, name, verb) in cases {
        let info = decide("GET", url).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(
            (info.name.as_str(), info.verb.as_str()),
            (name, verb),
            "{case}"
        );
    }
}

// === Airlock: accepted requests ===

#[test]
fn non_resource_paths_keep_the_lower_case_method_as_verb() {
    let cases = [
        ("GET", "/version", "get"),
        ("GET", "/healthz", "get"),
        ("HEAD", "/livez/etcd", "head"),
        ("GET", "/openapi/v2", "get"),
        ("GET", "/openapi/v3/apis/apps/v1", "get"),
        ("GET", "/apis", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis/apps", "get"),
        ("OPTIONS", "/version", "options"),
        ("POST", "/metrics", "post"),
    ];
    for (method, url, verb) in cases {
        let info = decide(method, url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(!info.is_resource_request, "{url}");
        assert_eq!(info.verb, verb, "{url}");
        assert_eq!(info.path, url, "{url}");
        assert_eq!(info.resource, "", "{url}");
    }
    // Group-version discovery: the Go code has consumed the prefix before it finds too
    // few segments, and leaves it set.
    let info = decide("GET", "/apis/apps/v1").unwrap();
    assert!(!info.is_resource_request);
    assert_eq!(info.api_prefix, "apis");
    assert_eq!(info.api_group, "");
    assert_eq!(decide("GET", "/api/v1").unwrap().api_prefix, "");
}

#[test]
fn percent_escapes_are_decoded_before_deciding() {
    // Raw path, decoded path, namespace, resource, name.
    #[rustfmt::skip]
    let cases = [
        ("/%61pi/v1/namespaces/kube%2Dsystem/config%6Daps", "/api/v1/namespaces/kube-system/configmaps", "kube-system", "configmaps", ""),
        ("/api/v1/namespaces/kube%2dsystem/secrets/%74oken", "/api/v1/namespaces/kube-system/secrets/token", "kube-system", "secrets", "token"),
        ("/apis/%61pps/v1/namespaces/default/deployments/web", "/apis/apps/v1/namespaces/default/deployments/web", "default", "deployments", "web"),
        ("/api/v1/n%61mespaces/%6B%75%62%65-system", "/api/v1/namespaces/kube-system", "kube-system", "namespaces", "kube-system"),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles/system%3Aaggregate-to-view", "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:aggregate-to-view", "", "clusterroles", "system:aggregate-to-view"),
        ("/api/v1/namespaces/default/configmaps/caf%C3%A9%20au%20lait", "/api/v1/namespaces/default/configmaps/café au lait", "default", "configmaps", "café au lait"),
        ("/api/v1/namespaces/a+b/pods", "/api/v1/namespaces/a+b/pods", "a+b", "pods", ""),
        ("/api/v1/namespaces/a%2Bb/pods", "/api/v1/namespaces/a+b/pods", "a+b", "pods", ""),
    ];
    for (raw, decoded, namespace, resource, name) in cases {
        let info = decide("GET", raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert!(info.is_resource_request, "{raw}");
        assert_eq!(info.path, decoded, "{raw}");
        assert_eq!(info.namespace, namespace, "{raw}");
        assert_eq!(info.resource, resource, "{raw}");
        assert_eq!(info.name, name, "{raw}");
    }
}

#[test]
fn one_trailing_slash_decides_as_none_and_is_kept_in_the_path() {
    #[rustfmt::skip]
    let cases = [
        ("GET", "/api/v1/pods/", "list", "pods", ""),
        ("GET", "/api/v1/namespaces/default/pods/web/", "get", "pods", "web"),
        ("DELETE", "/api/v1/namespaces/default/pods/", "deletecollection", "pods", ""),
        ("GET", "/api/v1/namespaces/default/pods/web/log/", "get", "pods", "web"),
    ];
    for (method, url, verb, resource, name) in cases {
        let with = decide(method, url).unwrap();
        let without = decide(method, url.trim_end_matches('/')).unwrap();
        assert_eq!(with.path, url);
        let decided = (
            with.verb.as_str(),
            with.resource.as_str(),
            with.name.as_str(),
        );
        assert_eq!(decided, (verb, resource, name), "{url}");
        let path = without.path.clone();
        assert_eq!(RequestInfo { path, ..with }, without, "{url}");
    }
}

#[test]
fn namespaces_and_their_subresources_are_in_their_own_namespace() {
    // Method, url, then verb, namespace, resource, subresource, name.
    #[rustfmt::skip]
    let cases = [
        ("GET", "/api/v1/namespaces/foo", "get", "foo", "namespaces", "", "foo"),
        ("DELETE", "/api/v1/namespaces/foo", "delete", "foo", "namespaces", "", "foo"),
        ("PUT", "/api/v1/namespaces/foo/status", "update", "foo", "namespaces", "status", "foo"),
        ("PUT", "/api/v1/namespaces/foo/finalize", "update", "foo", "namespaces", "finalize", "foo"),
        ("GET", "/api/v1/namespaces/foo/pods", "list", "foo", "pods", "", ""),
        ("GET", "/api/v1/namespaces/status/pods", "list", "status", "pods", "", ""),
        ("GET", "/api/v1/namespaces/foo/status/x", "get", "foo", "namespaces", "status", "foo"),
        ("GET", "/api/v1/watch/namespaces/foo", "watch", "foo", "namespaces", "", "foo"),
        ("POST", "/api/v1/namespaces", "create", "", "namespaces", "", ""),
    ];
    for (method, url, verb, namespace, resource, sub, name) in cases {
        let info = decide(method, url).unwrap();
        let decided = (
            info.verb.as_str(),
            info.namespace.as_str(),
            info.resource.as_str(),
            info.subresource.as_str(),
            info.name.as_str(),
        );
        assert_eq!(
            decided,
            (verb, namespace, resource, sub, name),
            "{method} {url}"
        );
    }
}

#[test]
fn verbs_follow_method_collection_and_watch() {
    #[rustfmt::skip]
    let cases = [
        ("GET", "/api/v1/namespaces/a/pods", "list"),
        ("HEAD", "/api/v1/namespaces/a/pods?watch=1", "watch"),
        ("GET", "/api/v1/namespaces/a/pods?watch=TRUE", "watch"),
        ("GET", "/api/v1/namespaces/a/pods?watch=False", "list"),
        ("GET", "/api/v1/namespaces/a/pods?wat%63h=true", "watch"),
        ("GET", "/api/v1/namespaces/a/pods?Watch=true", "list"),
        ("GET", "/api/v1/namespaces/a/pods/b?watch=true", "get"),
        ("GET", "/api/v1/watch/namespaces/a/pods?watch=false", "watch"),
        ("GET", "/api/v1/watch/namespaces/a/pods/b", "watch"),
        ("POST", "/api/v1/namespaces/a/pods", "create"),
        ("POST", "/api/v1/namespaces/a/pods/b/eviction", "create"),
        ("POST", "/api/v1/namespaces/a/pods/b/exec", "create"),
        ("GET", "/api/v1/namespaces/a/pods/b/exec", "get"),
        ("PUT", "/api/v1/namespaces/a/pods/b", "update"),
        ("PATCH", "/api/v1/namespaces/a/pods/b", "patch"),
        ("DELETE", "/api/v1/namespaces/a/pods/b", "delete"),
        ("DELETE", "/api/v1/namespaces/a/pods", "deletecollection"),
        ("DELETE", "/apis/apps/v1/deployments?fieldSelector=metadata.name%3Dweb", "deletecollection"),
        ("GET", "/api/v1/namespaces/a/pods?&&watch=1&", "watch"),
    ];
    for (method, url, verb) in cases {
        let info = decide(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        assert_eq!(info.verb, verb, "{method} {url}");
    }
}

#[test]
fn field_selector_metadata_name_names_the_object_as_go_parses_it() {
    // The encoded `fieldSelector`, then the name and the decoded selector.
    #[rustfmt::skip]
    let cases = [
        ("metadata.name%3Dweb", "web", "metadata.name=web"),
        ("metadata.name%3D%3Dweb", "web", "metadata.name==web"),
        ("metadata.name%21%3Dweb", "", "metadata.name!=web"),
        ("metadata.name%3Dweb%2Cstatus.phase%3DRunning", "web", "metadata.name=web,status.phase=Running"),
        ("status.phase%3DRunning%2Cmetadata.name%3Dweb", "web", "status.phase=Running,metadata.name=web"),
        ("metadata.name%3D", "", "metadata.name="),
        ("metadata.name%3D..", "", "metadata.name=.."),
        ("metadata.name%3Da%25b", "", "metadata.name=a%b"),
        ("metadata.name%3Da%2Fb", "", "metadata.name=a/b"),
        ("metadata.name%3Da%3Db", "", "metadata.name=a=b"),
        ("metadata.name%3Da%5C%3Db", "a=b", "metadata.name=a\\=b"),
        ("metadata.name%3Da%5C%2Cb", "a,b", "metadata.name=a\\,b"),
        ("metadata.name%3Da%5Cb", "", "metadata.name=a\\b"),
        ("metadata.name%3Da%5C", "", "metadata.name=a\\"),
        ("metadata.name%3Da+b", "a b", "metadata.name=a b"),
        ("metadata.name", "", "metadata.name"),
        ("metadata.namespace%3Dweb", "", "metadata.namespace=web"),
        ("+metadata.name%3Dweb", "", " metadata.name=web"),
        ("%2Cmetadata.name%3Dweb%2C", "web", ",metadata.name=web,"),
        ("", "", ""),
    ];
    for (raw, name, field) in cases {
        let url = format!("/api/v1/namespaces/a/secrets?fieldSelector={raw}");
        let info = decide("GET", &url).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(info.name, name, "{raw}");
        assert_eq!(info.verb, "list", "{raw}");
        assert_eq!(info.field_selector, field, "{raw}");
    }
}

// === Airlock: refusals ===

#[test]
fn ambiguous_or_malformed_paths_are_refused() {
    use RequestInfoError as E;
    let long = format!("/api/v1/namespaces/{}", "a".repeat(MAX_PATH_LEN));
    #[rustfmt::skip]
    let cases: Vec<(&str, E)> = vec![
        // not a path
        ("", E::NotOriginForm { got: String::new() }),
        ("*", E::NotOriginForm { got: "*".into() }),
        ("api/v1/pods", E::NotOriginForm { got: "api/v1/pods".into() }),
        ("https://k8s/api/v1/pods", E::NotOriginForm { got: "https://k8s/api/v1/pods".into() }),
        (&long, E::PathTooLong { len: long.len(), max: MAX_PATH_LEN }),
        // encoded slash
        ("/api/v1/namespaces/a%2Fb/pods", E::EncodedSlash { at: 20 }),
        ("/api/v1/namespaces/a%2fb/pods", E::EncodedSlash { at: 20 }),
        ("/api%2Fv1/pods/x", E::EncodedSlash { at: 4 }),
        // backslash, raw or encoded
        ("/api/v1/namespaces/a\\b/pods", E::Backslash { at: 20 }),
        ("/api/v1/namespaces/a%5Cb/pods", E::Backslash { at: 20 }),
        ("/api/v1/namespaces/a%5cb/pods", E::Backslash { at: 20 }),
        // NUL and control characters, raw or encoded
        ("/api/v1/namespaces/a%00/pods", E::ControlCharacter { at: 20, code: 0 }),
        ("/api/v1/namespaces/a\0/pods", E::ControlCharacter { at: 20, code: 0 }),
        ("/api/v1/namespaces/a\t/pods", E::ControlCharacter { at: 20, code: 9 }),
        ("/api/v1/namespaces/a%0A/pods", E::ControlCharacter { at: 20, code: 10 }),
        ("/api/v1/namespaces/a%0d/pods", E::ControlCharacter { at: 20, code: 13 }),
        ("/api/v1/namespaces/a%7F/pods", E::ControlCharacter { at: 20, code: 0x7f }),
        ("/api/v1/namespaces/a%C2%85/pods", E::ControlCharacter { at: 19, code: 0x85 }),
        // invalid UTF-8 once decoded
        ("/api/v1/namespaces/a%FF/pods", E::InvalidUtf8 { at: 19 }),
        ("/api/v1/namespaces/%C0%AE%C0%AE/pods", E::InvalidUtf8 { at: 19 }),
        ("/api/v1/namespaces/%C3/pods", E::InvalidUtf8 { at: 19 }),
        // dot segments, raw or encoded
        ("/api/v1/namespaces/./pods", E::DotSegment { at: 19, segment: ".".into() }),
        ("/api/v1/namespaces/a/../b/pods", E::DotSegment { at: 21, segment: "..".into() }),
        ("/api/v1/namespaces/%2e%2e/pods", E::DotSegment { at: 19, segment: "..".into() }),
        ("/api/v1/namespaces/%2E/pods", E::DotSegment { at: 19, segment: ".".into() }),
        ("/api/v1/namespaces/.%2e/pods", E::DotSegment { at: 19, segment: "..".into() }),
        ("/api/v1/pods/.", E::DotSegment { at: 13, segment: ".".into() }),
        ("/api/v1/pods/..", E::DotSegment { at: 13, segment: "..".into() }),
        ("/api/v1/pods/../", E::DotSegment { at: 13, segment: "..".into() }),
        ("/..", E::DotSegment { at: 1, segment: "..".into() }),
        // empty segments
        ("/api//v1/pods", E::EmptySegment { at: 5 }),
        ("//api/v1/pods", E::EmptySegment { at: 1 }),
        ("/api/v1/pods//", E::EmptySegment { at: 13 }),
        ("//", E::EmptySegment { at: 1 }),
        ("/api/v1/namespaces//pods", E::EmptySegment { at: 19 }),
        // `%` without two hex digits
        ("/api/v1/pods%", E::MalformedPercent { at: 12 }),
        ("/api/v1/pods%2", E::MalformedPercent { at: 12 }),
        ("/api/v1/pods%zz", E::MalformedPercent { at: 12 }),
        ("/api/v1/pods%g0/x", E::MalformedPercent { at: 12 }),
        ("/api/v1/pods/%%32%46", E::MalformedPercent { at: 13 }),
        // an encoded `%`, which a second decoding would change
        ("/api/v1/namespaces/%2561/pods", E::EncodedPercent { at: 19 }),
        ("/api/v1/pods/a%252Fb", E::EncodedPercent { at: 14 }),
        // raw characters outside the path grammar
        ("/api/v1/namespaces/a b/pods", E::DisallowedCharacter { at: 20, character: ' ' }),
        ("/api/v1/pods?watch=1", E::DisallowedCharacter { at: 12, character: '?' }),
        ("/api/v1/pods#x", E::DisallowedCharacter { at: 12, character: '#' }),
        ("/api/v1/namespaces/k\u{fc}be/pods", E::DisallowedCharacter { at: 20, character: '\u{fc}' }),
        ("/api/v1/namespaces/\u{ff0e}\u{ff0e}/pods", E::DisallowedCharacter { at: 19, character: '\u{ff0e}' }),
        ("/api/v1/pods/[0]", E::DisallowedCharacter { at: 13, character: '[' }),
        ("/api/v1/pods/a\"b", E::DisallowedCharacter { at: 14, character: '"' }),
        // the deprecated verb-in-path form without a resource
        ("/api/v1/watch", E::MissingResource { path: "/api/v1/watch".into(), verb: "watch".into() }),
        ("/apis/apps/v1/proxy/", E::MissingResource { path: "/apis/apps/v1/proxy/".into(), verb: "proxy".into() }),
    ];
    for (path, expected) in cases {
        assert_eq!(request_info("GET", path, ""), Err(expected), "{path:?}");
    }
}

#[test]
fn methods_without_a_kubernetes_verb_are_refused_on_resources() {
    use RequestInfoError as E;
    let path = "/api/v1/namespaces/a/pods";
    for method in ["OPTIONS", "CONNECT", "TRACE", "PROPFIND", "get", "Delete"] {
        let expected = E::UnsupportedMethod {
            method: method.into(),
            path: path.into(),
        };
        assert_eq!(request_info(method, path, ""), Err(expected), "{method}");
    }
    for method in ["", "GE T", "GET\n", "G\u{e9}T", "GET/1"] {
        let refusal = request_info(method, path, "");
        assert!(
            matches!(refusal, Err(E::InvalidMethod { .. })),
            "{method:?}"
        );
    }
}

#[test]
fn ambiguous_or_malformed_queries_are_refused() {
    use RequestInfoError as E;
    let path = "/api/v1/namespaces/a/pods";
    #[rustfmt::skip]
    let cases: Vec<(&str, E)> = vec![
        ("watch=true&watch=false", E::RepeatedParameter { name: "watch" }),
        ("watch=1&wat%63h=1", E::RepeatedParameter { name: "watch" }),
        ("watch&watch", E::RepeatedParameter { name: "watch" }),
        ("fieldSelector=a%3Db&fieldSelector=c%3Dd", E::RepeatedParameter { name: "fieldSelector" }),
        ("fieldSelector=&fieldSelector=metadata.name%3Dx", E::RepeatedParameter { name: "fieldSelector" }),
        ("labelSelector=a&labelSelector=b", E::RepeatedParameter { name: "labelSelector" }),
        ("watch=yes", E::AmbiguousWatch { value: "yes".into() }),
        ("watch=", E::AmbiguousWatch { value: String::new() }),
        ("watch", E::AmbiguousWatch { value: String::new() }),
        ("watch=f", E::AmbiguousWatch { value: "f".into() }),
        ("watch=t", E::AmbiguousWatch { value: "t".into() }),
        ("watch=2", E::AmbiguousWatch { value: "2".into() }),
        ("watch=+true", E::AmbiguousWatch { value: " true".into() }),
        ("watch=fal%C5%BFe", E::AmbiguousWatch { value: "fal\u{17f}e".into() }),
        ("watch=true;x=1", E::QuerySemicolon { at: 10 }),
        ("limit=5&watch;=1", E::QuerySemicolon { at: 13 }),
        ("watch=%zz", E::QueryMalformedPercent { at: 6 }),
        ("wat%6=1", E::QueryMalformedPercent { at: 3 }),
        ("continue=abc%", E::QueryMalformedPercent { at: 12 }),
        ("watch=1\t", E::QueryControlCharacter { at: 7, code: 9 }),
        ("fieldSelector=%FF", E::QueryInvalidUtf8 { name: "fieldSelector" }),
        ("fieldSelector=metadata.name%3Da%2Cmetadata.name%3Db", E::AmbiguousFieldSelectorName),
        ("fieldSelector=metadata.name%3Da%2Cmetadata.name%3D%3Da", E::AmbiguousFieldSelectorName),
    ];
    for (query, expected) in cases {
        assert_eq!(request_info("GET", path, query), Err(expected), "{query:?}");
    }
    // Parameters the decision does not read may repeat and may be anything Go decodes.
    let query = "limit=1&limit=2&x=%FF&labelSelector=app%3Dweb";
    let info = request_info("GET", path, query).unwrap();
    let decided = (info.verb.as_str(), info.label_selector.as_str());
    assert_eq!(decided, ("list", "app=web"));
}

#[test]
fn refusal_messages_are_lower_case_without_final_period() {
    let refusals = [
        request_info("GET", "/api/v1/namespaces/a%2Fb/pods", ""),
        request_info("OPTIONS", "/api/v1/pods", ""),
        request_info("GET", "/api/v1/pods", "watch=yes"),
        request_info("GET", "x", ""),
    ];
    for refusal in refusals {
        let message = refusal.unwrap_err().to_string();
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

// === properties ===

/// Percent-encodes `path` the way a client may: every byte outside RFC 3986's unreserved
/// set, and each unreserved byte whose `mask` bit is set; `/` stays a separator.
fn encode_path(path: &str, mask: &[bool]) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for (i, byte) in path.bytes().enumerate() {
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        let flip = mask.get(i % mask.len().max(1)).copied().unwrap_or(false);
        if byte == b'/' || (unreserved && !flip) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Words of the path grammar.
#[rustfmt::skip]
const PATH_WORDS: &[&str] = &[
    "api", "apis", "v1", "apps", "namespaces", "ns", "pods", "watch", "proxy", "status",
    "finalize", "a",
];

/// Characters and escapes that are decoded or refused.
const PATH_ODDITIES: &[&str] = &[
    ".", "..", "%2e", "%2E", "%2F", "%2f", "%61", "%5C", "\\", "%", "%2", "%25", "%00", "%C3%BC",
    "%C2%85", "%FF", "\u{fc}", " ", "?", "+", "-", ":", "~", "%20", "%3A", "%6Es",
];

/// Raw paths: mostly an API prefix then `/`-separated segments of one or two pieces (so
/// that many are accepted, many as resource requests), sometimes pieces and slashes in
/// any order.
fn raw_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(PATH_WORDS),
        1 => prop::sample::select(PATH_ODDITIES),
    ];
    let segment = prop::collection::vec(piece.clone(), 1..3).prop_map(|pieces| pieces.concat());
    let prefix = prop::sample::select(vec![
        "",
        "/api",
        "/api/v1",
        "/apis/apps/v1",
        "/%61pis/apps/v1",
    ]);
    let segmented = (prefix, prop::collection::vec(segment, 0..7), any::<bool>()).prop_map(
        |(prefix, segments, trailing)| {
            let mut path = prefix.to_owned();
            for segment in &segments {
                path.push('/');
                path.push_str(segment);
            }
            if path.is_empty() || (trailing && !segments.is_empty()) {
                path.push('/');
            }
            path
        },
    );
    let slash_or_piece = prop_oneof![Just("/"), piece];
    let jumbled = (
        prop::bool::weighted(0.9),
        prop::collection::vec(slash_or_piece, 0..12),
    )
        .prop_map(|(leading, pieces)| {
            let start = if leading { "/" } else { "" };
            format!("{start}{}", pieces.concat())
        });
    prop_oneof![4 => segmented, 1 => jumbled]
}

fn query_token() -> impl Strategy<Value = &'static str> {
    #[rustfmt::skip]
    let tokens = vec![
        "watch=true", "watch=0", "watch=x", "watch", "fieldSelector=metadata.name%3Dn",
        "fieldSelector=metadata.name%3D..", "fieldSelector=a%3Db%2Cmetadata.name%3D%3Dm",
        "labelSelector=app%3Dweb", "limit=5", "&", ";", "%", "=", "+",
    ];
    prop::sample::select(tokens)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decisions_survive_re_encoding(
        raw_path in raw_path(),
        query_tokens in prop::collection::vec(query_token(), 0..4),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "get"]),
        mask in prop::collection::vec(any::<bool>(), 1..16),
    ) {
        let raw_query = query_tokens.join("&");
        // Never panics, whatever the input.
        let decided = request_info(method, &raw_path, &raw_query);
        if let Ok(info) = decided {
            prop_assert!(info.path.starts_with('/'));
            let plain = encode_path(&info.path, &[]);
            prop_assert_eq!(request_info(method, &plain, &raw_query), Ok(info.clone()));
            let scrambled = encode_path(&info.path, &mask);
            prop_assert_eq!(request_info(method, &scrambled, &raw_query), Ok(info));
        }
    }

    #[test]
    fn resource_requests_always_have_a_version_and_resource(
        raw_path in raw_path(),
        method in prop::sample::select(vec!["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
    ) {
        if let Ok(info) = request_info(method, &raw_path, "") {
            if info.is_resource_request {
                prop_assert!(!info.api_version.is_empty());
                prop_assert!(!info.resource.is_empty());
                prop_assert_eq!(info.parts.first(), Some(&info.resource));
                prop_assert!(["get", "list", "watch", "create", "update", "patch", "delete",
                    "deletecollection", "proxy"].contains(&info.verb.as_str()));
            } else {
                prop_assert!(info.parts.is_empty());
                prop_assert_eq!(info.verb, method.to_ascii_lowercase());
            }
        }
    }
}
