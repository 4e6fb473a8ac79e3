//! The Kubernetes API server's request info, decided before a request is forwarded: which
//! verb, API group, version, namespace, resource, subresource and name a method, path and
//! query ask for.
//!
//! A port of the API server's `RequestInfoFactory.NewRequestInfo`
//! (`k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`) with the prefixes every API
//! server uses (`api` without a group, `apis` with one), re-expressed from the Go source
//! and tested against its own tables. It is hand-written because no crate parses
//! requests the way the API server does, and agreeing with that one function is the
//! point: policy decides on this [`RequestInfo`], the API server authorizes and routes on
//! its own, and the two must never differ.
//!
//! Invariant: a request is either refused or decided exactly as the API server decides
//! it. So, beyond the Go rules, [`request_info`] refuses (with a [`RequestInfoError`];
//! such a request is never forwarded) whatever the API server would read in a way that
//! another parser in between might not:
//!
//! - The API server decides on the percent-decoded path (Go's `URL.Path`), so escapes
//!   are decoded before the path is split (`/%61pi/v1/namespaces/kube%2Dsystem/pods` is
//!   `/api/v1/namespaces/kube-system/pods`). Refused: an encoded `/` (`%2F`), a `\` raw
//!   or encoded, an encoded `%` (`%25`: no Kubernetes name holds `%`, and a second
//!   decoding would change the path), control characters raw or encoded, bytes that do
//!   not decode to UTF-8, a `%` without two hex digits, raw characters outside RFC 3986's
//!   path grammar (space, `"`, `<`, `>`, `?`, `#`, `[`, `]`, `{`, `}`, `|`, `^`, `` ` ``,
//!   non-ASCII: clients percent-encode them), `.` and `..` segments raw or encoded, and
//!   empty segments (`//`) anywhere but a single trailing slash.
//! - A single trailing slash is accepted and does not count as a segment: the Go code
//!   trims slashes before splitting, so `/api/v1/pods/` is the pods collection, as
//!   `/api/v1/pods` is. [`RequestInfo::path`] keeps it, as Go's `Path` does.
//! - The query is read as Go's `url.ParseQuery` reads it (`&`-separated, `+` is a space,
//!   keys and values percent-decoded). Refused: a pair Go would silently drop (one
//!   holding `;`, or a malformed escape), raw control characters, more than one
//!   `watch`, `fieldSelector` or `labelSelector` (Go reads the first), a `watch` value
//!   other than `0`, `1`, `true` or `false` (any ASCII case), and a field selector with
//!   more than one `metadata.name=` term.
//! - A resource request must use GET, HEAD, POST, PUT, PATCH or DELETE; Go gives any
//!   other method the verb `""`, which a wildcard rule would match.
//!
//! The decision itself follows the Go code step by step; see [`request_info`].

#![deny(clippy::indexing_slicing)]

/// Longest accepted path in bytes, as received (percent-encoded).
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// The API prefixes of every Kubernetes API server: `/api/{version}/...` (the legacy core
/// group, no group segment) and `/apis/{group}/{version}/...`.
const API_PREFIXES: [&str; 2] = ["api", "apis"];

/// The API prefixes that have no group segment.
const GROUPLESS_API_PREFIXES: [&str; 1] = ["api"];

/// Path segments after the version that name the verb themselves (deprecated forms:
/// `/api/v1/watch/pods`, `/api/v1/proxy/namespaces/ns/pods/name/...`).
const SPECIAL_VERBS: [&str; 2] = ["proxy", "watch"];

/// Special verbs whose paths have no subresource: what follows the name is a sub-path.
const SPECIAL_VERBS_NO_SUBRESOURCES: [&str; 1] = ["proxy"];

/// The subresources of a namespace, which tell `namespaces/foo/status` (the namespace's
/// status) from `namespaces/foo/pods` (pods in the namespace).
const NAMESPACE_SUBRESOURCES: [&str; 2] = ["status", "finalize"];

/// The verbs for which the API server authorizes with the request's selectors.
const VERBS_WITH_SELECTORS: [&str; 3] = ["list", "watch", "deletecollection"];

/// Longest excerpt of a received value repeated in an error message, in characters.
const EXCERPT_CHARS: usize = 64;

/// What a request asks of a Kubernetes API server, as the API server decides it.
///
/// For a non-resource request (`/version`, `/healthz`, `/apis`, `/openapi/v2`) only
/// [`path`](Self::path) and [`verb`](Self::verb) are meaningful; the other fields are
/// empty, except that [`api_prefix`](Self::api_prefix) is `"apis"` for
/// `/apis/{group}/{version}` (group discovery), as the Go code leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RequestInfo {
    /// Whether the request is for an API resource or subresource (as opposed to a
    /// non-resource path such as `/version`).
    pub is_resource_request: bool,
    /// The percent-decoded path the decision was made on, with its trailing slash if it
    /// had one (Go's `URL.Path`). Percent-encoding it again gives a path that decides
    /// the same.
    pub path: String,
    /// For a resource request the Kubernetes verb: `get`, `list`, `watch`, `create`,
    /// `update`, `patch`, `delete`, `deletecollection`, or `proxy` for the deprecated
    /// `/proxy/` form. For a non-resource request the HTTP method in lower case.
    pub verb: String,
    /// `api` (the legacy core group) or `apis`; see the type's documentation for
    /// non-resource requests.
    pub api_prefix: String,
    /// The API group, `""` for the core group.
    pub api_group: String,
    /// The API version (`v1`, `v1beta1`).
    pub api_version: String,
    /// The namespace, `""` when the request is cluster-scoped. For a namespace itself
    /// (`namespaces/foo`, `namespaces/foo/status`) it is that namespace, `foo`, as the
    /// API server has it.
    pub namespace: String,
    /// The resource (`pods`), not the kind.
    pub resource: String,
    /// The subresource (`status`, `log`, `exec`), `""` when there is none.
    pub subresource: String,
    /// The object's name, `""` for a collection. A list or watch whose field selector
    /// requires `metadata.name=x` is named `x`, as the API server authorizes it.
    pub name: String,
    /// The path segments from the resource on: `{resource}/{name}/{subresource}/...`
    /// (for `namespaces/foo` and its subresources, from `namespaces`). Empty for a
    /// non-resource request.
    pub parts: Vec<String>,
    /// The raw `fieldSelector` for a `list`, `watch` or `deletecollection` not named by
    /// the deprecated `/watch/` path form, else `""` (Go's `FieldSelector`, filled when
    /// the API server authorizes with selectors).
    pub field_selector: String,
    /// The raw `labelSelector`, under the same conditions as
    /// [`field_selector`](Self::field_selector).
    pub label_selector: String,
}

/// Why a request was refused before any decision. Offsets (`at`) are zero-based byte
/// offsets into the path or the query as received. Each message tells an agent what was
/// wrong and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestInfoError {
    /// The method is empty or not an HTTP token.
    #[error(
        "the request method `{method}` is not a valid HTTP method; use GET, HEAD, POST, PUT, \
         PATCH or DELETE"
    )]
    InvalidMethod { method: String },

    /// A resource request with a method that has no Kubernetes verb.
    #[error(
        "the method `{method}` has no Kubernetes verb on the resource path `{path}`; use GET \
         or HEAD to read, POST to create, PUT to update, PATCH to patch, DELETE to delete"
    )]
    UnsupportedMethod { method: String, path: String },

    /// The path does not start with `/` (empty, absolute-form `https://host/...`, `*`).
    #[error(
        "the request path `{got}` does not start with `/`; send the path alone, such as \
         `/api/v1/namespaces/default/pods`, without scheme or host"
    )]
    NotOriginForm { got: String },

    /// The path is longer than [`MAX_PATH_LEN`].
    #[error("the path is {len} bytes long, over the limit of {max} bytes; request a shorter path")]
    PathTooLong { len: usize, max: usize },

    /// A `%` in the path not followed by two hex digits.
    #[error(
        "the path has a `%` at offset {at} that is not followed by two hex digits; \
         percent-encode each byte as `%` and two hex digits"
    )]
    MalformedPercent { at: usize },

    /// `%2F`: an encoded slash, which the API server decodes into a separator.
    #[error(
        "the path has an encoded slash `%2F` at offset {at}; the API server would split the \
         path there, so it is refused: no Kubernetes name contains `/`, use a literal `/` \
         between segments"
    )]
    EncodedSlash { at: usize },

    /// A backslash, raw or `%5C`, which some servers treat as a separator.
    #[error(
        "the path has a backslash (`\\` or `%5C`) at offset {at}; some servers treat it as a \
         segment separator, so it is refused: use `/` between segments"
    )]
    Backslash { at: usize },

    /// `%25`: an encoded `%`, which no Kubernetes name contains and which a second
    /// decoding would turn into another path.
    #[error(
        "the path has an encoded `%` (`%25`) at offset {at}; no Kubernetes name contains `%` \
         and decoding twice would change the path, so it is refused: remove it"
    )]
    EncodedPercent { at: usize },

    /// A control character (NUL included), raw or percent-encoded.
    #[error(
        "the path has the control character U+{code:04X} (raw or percent-encoded) at offset \
         {at}; remove it"
    )]
    ControlCharacter { at: usize, code: u32 },

    /// A raw character outside RFC 3986's path grammar.
    #[error(
        "the path has a raw `{character}` at offset {at}; a path holds only letters, digits \
         and `-._~!$&'()*+,;=:@/`, so percent-encode it (a query goes after `?`, a fragment \
         is never sent)"
    )]
    DisallowedCharacter { at: usize, character: char },

    /// Percent-escapes in the segment starting at `at` that do not decode to UTF-8.
    #[error(
        "the percent-encoded bytes of the segment at offset {at} are not valid UTF-8; \
         encode text as UTF-8, one `%XX` per byte"
    )]
    InvalidUtf8 { at: usize },

    /// A `.` or `..` segment, raw or encoded.
    #[error(
        "the path has the dot segment `{segment}` at offset {at}; servers and proxies \
         resolve dot segments differently, so it is refused: request the resolved path"
    )]
    DotSegment { at: usize, segment: String },

    /// An empty segment (`//`), or more than one trailing slash.
    #[error(
        "the path has an empty segment (`//`) at offset {at}; servers disagree on whether it \
         counts, so it is refused: write one `/` between segments"
    )]
    EmptySegment { at: usize },

    /// The deprecated verb-in-path form (`/api/v1/watch`) with nothing after the verb;
    /// the API server fails such a request too.
    #[error(
        "the path `{path}` names the verb `{verb}` but no resource after it; name the \
         resource, such as `/api/v1/pods?watch=true`"
    )]
    MissingResource { path: String, verb: String },

    /// A query pair the API server would drop without a word: it holds `;`.
    #[error(
        "the query has a `;` at offset {at}; the API server drops such a parameter while \
         other parsers split on it, so it is refused: separate parameters with `&` and \
         encode `;` as `%3B`"
    )]
    QuerySemicolon { at: usize },

    /// A query pair the API server would drop without a word: a malformed escape.
    #[error(
        "the query has a `%` at offset {at} that is not followed by two hex digits; the API \
         server would drop that parameter, so it is refused: percent-encode each byte as \
         `%` and two hex digits"
    )]
    QueryMalformedPercent { at: usize },

    /// A raw control character in the query.
    #[error("the query has the control character U+{code:04X} at offset {at}; remove it")]
    QueryControlCharacter { at: usize, code: u32 },

    /// A parameter this module reads whose decoded value is not UTF-8.
    #[error("the `{name}` parameter is not valid UTF-8 once percent-decoded; encode it as UTF-8")]
    QueryInvalidUtf8 { name: &'static str },

    /// `watch`, `fieldSelector` or `labelSelector` given more than once.
    #[error(
        "the query gives `{name}` more than once; the API server reads only the first, so \
         it is refused as ambiguous: give it once"
    )]
    RepeatedParameter { name: &'static str },

    /// A `watch` value other than `0`, `1`, `true` or `false`.
    #[error(
        "the `watch` parameter is `{value}`; parsers disagree on such a value, so it is \
         refused: use `watch=true` or `watch=false`"
    )]
    AmbiguousWatch { value: String },

    /// A field selector with more than one `metadata.name=` (or `==`) term.
    #[error(
        "the field selector requires `metadata.name` more than once; the object named \
         depends on term order, so it is refused: require one name"
    )]
    AmbiguousFieldSelectorName,
}

/// Decides what a request asks of a Kubernetes API server: `method` as sent
/// (case-sensitive, as HTTP methods are), `raw_path` the path of the request target as
/// received (percent-encoded, starting with `/`) and `raw_query` what follows the first
/// `?` (`""` when there is none).
///
/// `Ok` is the decision the API server makes for the same request; `Err` means the
/// request is refused and must not be forwarded (see the module documentation). The
/// steps, as in the Go code:
///
/// 1. Fewer than three segments, a first segment other than `api`/`apis`, or under
///    `apis` fewer than four: a non-resource request, verb the lower-case method.
/// 2. Otherwise a resource request: the group (under `apis`), then the version.
/// 3. `watch` or `proxy` next names the verb (deprecated forms); otherwise POST is
///    `create`, GET and HEAD `get`, PUT `update`, PATCH `patch`, DELETE `delete`.
/// 4. `namespaces/{ns}` sets the namespace; what follows is the resource, unless it is
///    `status` or `finalize`, which are the namespace's own subresources.
/// 5. The remaining parts are resource, name, subresource (no subresource for `proxy`).
/// 6. `get` without a name is `watch` if `watch` is true, else `list`; then a field
///    selector requiring `metadata.name=x` names the object `x` (if `x` is a valid path
///    segment name). `delete` without a name is `deletecollection`.
/// 7. For `list`, `watch` and `deletecollection` not named by the path, the raw field
///    and label selectors are kept.
pub fn request_info(
    method: &str,
    raw_path: &str,
    raw_query: &str,
) -> Result<RequestInfo, RequestInfoError> {
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(RequestInfoError::InvalidMethod {
            method: excerpt(method),
        });
    }
    let path = decode_path(raw_path)?;
    let query = ListQuery::parse(raw_query)?;
    let watch = query.watch.as_deref().map(parse_watch).transpose()?;

    // Start as a non-resource request until the path proves otherwise.
    let mut info = RequestInfo {
        path: path.decoded,
        verb: method.to_ascii_lowercase(),
        ..RequestInfo::default()
    };

    let segments = path.segments.as_slice();
    let Some((prefix, rest)) = segments.split_first() else {
        return Ok(info);
    };
    if segments.len() < 3 || !API_PREFIXES.contains(&prefix.as_str()) {
        return Ok(info);
    }
    info.api_prefix = prefix.clone();

    let mut rest = rest;
    if !GROUPLESS_API_PREFIXES.contains(&prefix.as_str()) {
        // The prefix is consumed: a grouped request needs group, version and resource.
        if rest.len() < 3 {
            return Ok(info);
        }
        let Some((group, after_group)) = rest.split_first() else {
            return Ok(info);
        };
        info.api_group = group.clone();
        rest = after_group;
    }
    let Some((version, after_version)) = rest.split_first() else {
        return Ok(info);
    };
    info.is_resource_request = true;
    info.api_version = version.clone();
    rest = after_version;

    let method_verb = resource_verb(method).ok_or_else(|| RequestInfoError::UnsupportedMethod {
        method: excerpt(method),
        path: excerpt(&info.path),
    })?;

    let verb_via_path = match rest.split_first() {
        Some((first, after)) if SPECIAL_VERBS.contains(&first.as_str()) => {
            if after.is_empty() {
                return Err(RequestInfoError::MissingResource {
                    path: excerpt(&info.path),
                    verb: first.clone(),
                });
            }
            info.verb = first.clone();
            rest = after;
            true
        }
        _ => {
            info.verb = method_verb.to_owned();
            false
        }
    };

    // `namespaces/{ns}/{resource}/...`: the parts become relative to the resource. A
    // namespace itself (`namespaces/{ns}`, `namespaces/{ns}/status`) keeps its parts
    // from `namespaces` and has its own name as namespace.
    if let Some((first, after)) = rest.split_first()
        && first == "namespaces"
        && let Some((namespace, after_namespace)) = after.split_first()
    {
        info.namespace = namespace.clone();
        if let Some((next, _)) = after_namespace.split_first()
            && !NAMESPACE_SUBRESOURCES.contains(&next.as_str())
        {
            rest = after_namespace;
        }
    }

    info.parts = rest.to_vec();
    let mut parts = rest.iter();
    if let Some(resource) = parts.next() {
        info.resource = resource.clone();
    }
    if let Some(name) = parts.next() {
        info.name = name.clone();
    }
    if let Some(subresource) = parts.next()
        && !SPECIAL_VERBS_NO_SUBRESOURCES.contains(&info.verb.as_str())
    {
        info.subresource = subresource.clone();
    }

    if info.name.is_empty() && info.verb == "get" {
        info.verb = if watch == Some(true) { "watch" } else { "list" }.to_owned();
        // The API server authorizes a list or watch that can only return one object
        // as a request for that object. It names nothing when any list option fails to
        // decode (an unparsable selector, `limit=x`); only the selector is checked here,
        // since the API server answers 400 to such a list whatever was decided.
        if let Some(selector) = &query.field_selector
            && let Some(name) = field_selector_name(selector)?
        {
            info.name = name;
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".to_owned();
    }

    // The deprecated verb-in-path forms do not apply selectors consistently, so the API
    // server does not authorize them with selectors.
    if !verb_via_path && VERBS_WITH_SELECTORS.contains(&info.verb.as_str()) {
        info.field_selector = query.field_selector.unwrap_or_default();
        info.label_selector = query.label_selector.unwrap_or_default();
    }
    Ok(info)
}

/// The verb the API server gives `method` on a resource path, `None` for a method it
/// gives no verb.
fn resource_verb(method: &str) -> Option<&'static str> {
    match method {
        "POST" => Some("create"),
        "GET" | "HEAD" => Some("get"),
        "PUT" => Some("update"),
        "PATCH" => Some("patch"),
        "DELETE" => Some("delete"),
        _ => None,
    }
}

/// Whether `byte` may appear in an HTTP token (RFC 9110 `tchar`).
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Whether `byte` may appear raw in a path segment (RFC 3986 `pchar` less `%`).
fn is_raw_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte)
}

// === impl path decoding ===

/// A path as the API server sees it once percent-decoded.
struct DecodedPath {
    /// `/`, the segments joined by `/`, and the trailing slash if there was one.
    decoded: String,
    /// The decoded segments, none empty; a single trailing slash adds none.
    segments: Vec<String>,
}

/// Percent-decodes `raw` into segments, or says why it is refused.
fn decode_path(raw: &str) -> Result<DecodedPath, RequestInfoError> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(RequestInfoError::NotOriginForm { got: excerpt(raw) });
    };
    if raw.len() > MAX_PATH_LEN {
        return Err(RequestInfoError::PathTooLong {
            len: raw.len(),
            max: MAX_PATH_LEN,
        });
    }
    if rest.is_empty() {
        return Ok(DecodedPath {
            decoded: "/".to_owned(),
            segments: Vec::new(),
        });
    }
    // The Go code trims slashes before splitting, so one trailing slash names the same
    // thing as none; more than one would be an empty segment, refused below.
    let (body, trailing_slash) = match rest.strip_suffix('/') {
        Some(body) => (body, true),
        None => (rest, false),
    };

    let mut segments = Vec::new();
    let mut offset = 1;
    for piece in body.split('/') {
        if piece.is_empty() {
            return Err(RequestInfoError::EmptySegment { at: offset });
        }
        let segment = decode_segment(piece, offset)?;
        if segment == "." || segment == ".." {
            return Err(RequestInfoError::DotSegment {
                at: offset,
                segment,
            });
        }
        segments.push(segment);
        offset += piece.len() + 1;
    }

    let mut decoded = String::with_capacity(raw.len());
    for segment in &segments {
        decoded.push('/');
        decoded.push_str(segment);
    }
    if trailing_slash {
        decoded.push('/');
    }
    Ok(DecodedPath { decoded, segments })
}

/// Percent-decodes one raw segment (no `/` in it) that starts at byte `offset` of the
/// path.
fn decode_segment(piece: &str, offset: usize) -> Result<String, RequestInfoError> {
    let bytes = piece.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let at = offset + i;
        let value = if byte == b'%' {
            let value = bytes
                .get(i + 1..i + 3)
                .and_then(hex_pair)
                .ok_or(RequestInfoError::MalformedPercent { at })?;
            match value {
                b'/' => return Err(RequestInfoError::EncodedSlash { at }),
                b'%' => return Err(RequestInfoError::EncodedPercent { at }),
                _ => {}
            }
            i += 3;
            value
        } else {
            // A raw `\` or control character is reported as such, below.
            if !is_raw_path_byte(byte) && byte != b'\\' && !byte.is_ascii_control() {
                let character = piece
                    .get(i..)
                    .and_then(|tail| tail.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                return Err(RequestInfoError::DisallowedCharacter { at, character });
            }
            i += 1;
            byte
        };
        if value == b'\\' {
            return Err(RequestInfoError::Backslash { at });
        }
        if value.is_ascii_control() {
            return Err(RequestInfoError::ControlCharacter {
                at,
                code: u32::from(value),
            });
        }
        decoded.push(value);
    }
    let decoded =
        String::from_utf8(decoded).map_err(|_| RequestInfoError::InvalidUtf8 { at: offset })?;
    // C1 controls (U+0080 to U+009F) can only arrive encoded as UTF-8.
    if let Some(control) = decoded.chars().find(|c| c.is_control()) {
        return Err(RequestInfoError::ControlCharacter {
            at: offset,
            code: u32::from(control),
        });
    }
    Ok(decoded)
}

/// The byte two hex digits (either case) stand for, `None` if they are not hex digits.
fn hex_pair(pair: &[u8]) -> Option<u8> {
    let [high, low] = pair else {
        return None;
    };
    let digit = |d: u8| char::from(d).to_digit(16);
    let value = digit(*high)? * 16 + digit(*low)?;
    u8::try_from(value).ok()
}

// === impl query parsing ===

/// The query parameters the decision reads, percent-decoded, each given at most once.
#[derive(Default)]
struct ListQuery {
    watch: Option<String>,
    field_selector: Option<String>,
    label_selector: Option<String>,
}

impl ListQuery {
    /// Reads `raw` as Go's `url.ParseQuery` does, refusing what it would drop.
    fn parse(raw: &str) -> Result<Self, RequestInfoError> {
        if let Some((at, byte)) = raw.bytes().enumerate().find(|(_, b)| b.is_ascii_control()) {
            return Err(RequestInfoError::QueryControlCharacter {
                at,
                code: u32::from(byte),
            });
        }
        let mut query = Self::default();
        let mut offset = 0;
        for pair in raw.split('&') {
            let pair_offset = offset;
            offset += pair.len() + 1;
            if let Some(semicolon) = pair.find(';') {
                return Err(RequestInfoError::QuerySemicolon {
                    at: pair_offset + semicolon,
                });
            }
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value, value_offset) = match pair.split_once('=') {
                Some((key, value)) => (key, value, pair_offset + key.len() + 1),
                None => (pair, "", pair_offset + pair.len()),
            };
            let key = query_unescape(raw_key, pair_offset)?;
            let value = query_unescape(raw_value, value_offset)?;
            let (name, slot) = match key.as_slice() {
                b"watch" => ("watch", &mut query.watch),
                b"fieldSelector" => ("fieldSelector", &mut query.field_selector),
                b"labelSelector" => ("labelSelector", &mut query.label_selector),
                _ => continue,
            };
            if slot.is_some() {
                return Err(RequestInfoError::RepeatedParameter { name });
            }
            let value = String::from_utf8(value)
                .map_err(|_| RequestInfoError::QueryInvalidUtf8 { name })?;
            *slot = Some(value);
        }
        Ok(query)
    }
}

/// Decodes a query key or value that starts at byte `offset` of the query: `+` is a
/// space, `%XX` a byte.
fn query_unescape(raw: &str, offset: usize) -> Result<Vec<u8>, RequestInfoError> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'%' => {
                let value = bytes
                    .get(i + 1..i + 3)
                    .and_then(hex_pair)
                    .ok_or(RequestInfoError::QueryMalformedPercent { at: offset + i })?;
                decoded.push(value);
                i += 3;
            }
            b'+' => {
                decoded.push(b' ');
                i += 1;
            }
            _ => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Ok(decoded)
}

/// Whether `value` asks for a watch. The API server reads `0` and `false` (any case) as
/// no and anything else as yes, where Go's `strconv.ParseBool` reads `f` as no and
/// rejects an empty value: only values both read alike are accepted.
fn parse_watch(value: &str) -> Result<bool, RequestInfoError> {
    if value == "0" || value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else if value == "1" || value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else {
        Err(RequestInfoError::AmbiguousWatch {
            value: excerpt(value),
        })
    }
}

// === impl field selectors ===

/// The object a field selector names through `metadata.name=x` (or `==`), read as the
/// API server's field-selector parser reads it: `None` if it names none, if it cannot be
/// parsed (the API server then names nothing either), or if the name is not a valid
/// path segment name (`.`, `..`, or holding `/` or `%`). More than one such term is
/// refused: the API server takes the one whose raw term sorts first.
fn field_selector_name(selector: &str) -> Result<Option<String>, RequestInfoError> {
    let mut names = Vec::new();
    for term in split_terms(selector) {
        if term.is_empty() {
            continue;
        }
        let Some((field, operator, raw_value)) = split_term(&term) else {
            return Ok(None);
        };
        let Some(value) = unescape_selector_value(raw_value) else {
            return Ok(None);
        };
        if operator != "!=" && field == "metadata.name" {
            names.push(value);
        }
    }
    if names.len() > 1 {
        return Err(RequestInfoError::AmbiguousFieldSelectorName);
    }
    Ok(names.pop().filter(|name| is_valid_path_segment_name(name)))
}

/// Splits a field selector into terms at each `,` not escaped by `\` (escapes are kept).
fn split_terms(selector: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut term = String::new();
    let mut escaped = false;
    for c in selector.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(std::mem::take(&mut term));
            continue;
        }
        term.push(c);
    }
    terms.push(term);
    terms
}

/// Splits a term at the first operator (`!=`, `==` or `=`, tried in that order at each
/// position): field, operator and the still-escaped value.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (at, _) in term.char_indices() {
        let (field, remaining) = term.split_at_checked(at)?;
        for operator in ["!=", "==", "="] {
            if let Some(value) = remaining.strip_prefix(operator) {
                return Some((field, operator, value));
            }
        }
    }
    None
}

/// Unescapes a field selector value: `\\`, `\,` and `\=` stand for the character;
/// `None` for any other escape, a raw `,` or `=`, or a trailing `\`.
fn unescape_selector_value(raw: &str) -> Option<String> {
    let mut value = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return None;
            }
            value.push(c);
            escaped = false;
        } else {
            match c {
                '\\' => escaped = true,
                ',' | '=' => return None,
                _ => value.push(c),
            }
        }
    }
    (!escaped).then_some(value)
}

/// Whether `name` may be a path segment (the API server's `IsValidPathSegmentName`).
fn is_valid_path_segment_name(name: &str) -> bool {
    name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

/// A received value fit to repeat in an error message: escaped, and cut to
/// [`EXCERPT_CHARS`] characters.
fn excerpt(value: &str) -> String {
    let mut chars = value.chars();
    let mut out: String = chars
        .by_ref()
        .take(EXCERPT_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
