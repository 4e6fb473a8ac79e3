#![allow(clippy::unwrap_used, clippy::panic)]

use super::*;
use proptest::prelude::*;
use serde_json::json;

fn ok(body: &str) -> Body {
    match parse(body.as_bytes()) {
        Ok(b) => b,
        Err(e) => panic!("{body}: refused: {e}"),
    }
}

fn single(body: &str) -> Message {
    match ok(body) {
        Body::Single(m) => m,
        Body::Batch(_) => panic!("{body}: a batch"),
    }
}

#[test]
fn accepts_valid_messages() {
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
        Message::Request {
            id: Id::Number(1),
            method: "tools/list".into(),
            params: None
        }
    );
    assert_eq!(
        single(r#" {"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"x"}} "#),
        Message::Request {
            id: Id::String("a".into()),
            method: "tools/call".into(),
            params: Some(json!({"name": "x"}))
        }
    );
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"m","params":[1,2]}"#),
        Message::Request {
            id: Id::Number(i64::MIN),
            method: "m".into(),
            params: Some(json!([1, 2]))
        }
    );
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
        Message::Notification {
            method: "notifications/initialized".into(),
            params: None
        }
    );
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#),
        Message::Response {
            id: Id::Number(7),
            result: Some(json!({"roots": []})),
            error: None
        }
    );
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no"}}"#),
        Message::Response {
            id: Id::String("x".into()),
            result: None,
            error: Some(json!({"code": -32601, "message": "no"}))
        }
    );
    // Escapes are decoded; a key escaped differently is still the same key.
    assert_eq!(
        single(r#"{"jsonrpc":"2.0","id":"\u00e9\ud83d\ude00\n","method":"m"}"#),
        Message::Request {
            id: Id::String("é😀\n".into()),
            method: "m".into(),
            params: None
        }
    );
    // Case variants outside params (in a result) are not our concern.
    single(r#"{"jsonrpc":"2.0","id":1,"result":{"a":1,"A":2}}"#);
}

#[test]
fn accepts_homogeneous_batches() {
    let Body::Batch(ms) = ok(
        r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}},
             {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}]"#,
    ) else {
        panic!("not a batch")
    };
    assert_eq!(ms.len(), 2);
    let Body::Batch(ms) =
        ok(r#"[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"error":{}}]"#)
    else {
        panic!("not a batch")
    };
    assert_eq!(ms.len(), 2);
    let hundred = format!(
        "[{}]",
        vec![r#"{"jsonrpc":"2.0","method":"m"}"#; MAX_BATCH].join(",")
    );
    assert!(matches!(ok(&hundred), Body::Batch(ms) if ms.len() == MAX_BATCH));
}

#[test]
fn ids() {
    let id =
        |raw: &str| parse(format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"m"}}"#).as_bytes());
    let cases: &[(&str, Result<Id, &str>)] = &[
        ("1", Ok(Id::Number(1))),
        ("-1", Ok(Id::Number(-1))),
        ("9223372036854775807", Ok(Id::Number(i64::MAX))),
        (r#""a""#, Ok(Id::String("a".into()))),
        ("1.0", Err("a number with a fraction or exponent")),
        ("1e3", Err("a number with a fraction or exponent")),
        ("-0.0", Err("a number with a fraction or exponent")),
        ("9223372036854775808", Err("an integer above 2^63-1")),
        (
            "-9223372036854775809",
            Err("a number with a fraction or exponent"),
        ),
        ("null", Err("null")),
        ("true", Err("a boolean")),
        ("[1]", Err("an array")),
        ("{}", Err("an object")),
    ];
    for (raw, want) in cases {
        match (id(raw), want) {
            (Ok(Body::Single(Message::Request { id, .. })), Ok(w)) => assert_eq!(&id, w, "{raw}"),
            (Err(JsonRpcError::BadId { kind, .. }), Err(w)) => assert_eq!(kind, *w, "{raw}"),
            (got, want) => panic!("{raw}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn refusals() {
    use JsonRpcError as E;
    let deep = |n: usize| {
        format!(
            r#"{{"jsonrpc":"2.0","method":"m","params":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    let batch = |n: usize| {
        format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"m"}"#; n].join(",")
        )
    };
    // (body, predicate on the error)
    type Check = fn(&E) -> bool;
    let cases: Vec<(String, Check)> = vec![
        // JSON itself
        ("".into(), |e| matches!(e, E::InvalidJson { .. })),
        ("{".into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"jsonrpc":"2.0",}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{'jsonrpc':'2.0'}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"a":01}"#.into(), |e| matches!(e, E::TrailingData { .. } | E::InvalidJson { .. })),
        (r#"{"a":1.}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"a":1e999}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"a":"\ud800"}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"a":"\x"}"#.into(), |e| matches!(e, E::InvalidJson { .. })),
        ("{\"a\":\"\t\"}".into(), |e| matches!(e, E::InvalidJson { .. })),
        ("\u{feff}{}".into(), |e| matches!(e, E::InvalidJson { .. })),
        (r#"{"jsonrpc":"2.0","method":"m"} {}"#.into(), |e| matches!(e, E::TrailingData { .. })),
        (r#"{"jsonrpc":"2.0","method":"m"}x"#.into(), |e| matches!(e, E::TrailingData { .. })),
        (deep(MAX_DEPTH), |e| matches!(e, E::TooDeep { .. })),
        // not a message
        ("1".into(), |e| matches!(e, E::NotAnObject { at: At(None) })),
        (r#""x""#.into(), |e| matches!(e, E::NotAnObject { .. })),
        ("[1]".into(), |e| matches!(e, E::NotAnObject { at: At(Some(0)) })),
        // version
        (r#"{"id":1,"method":"m"}"#.into(), |e| matches!(e, E::MissingVersion { .. })),
        (r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#.into(), |e| matches!(e, E::BadVersion { .. })),
        (r#"{"jsonrpc":2.0,"id":1,"method":"m"}"#.into(), |e| matches!(e, E::BadVersion { .. })),
        (r#"{"jsonrpc":"2.0 ","id":1,"method":"m"}"#.into(), |e| matches!(e, E::BadVersion { .. })),
        // duplicates, at any depth and however escaped
        (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#.into(), |e| matches!(e, E::DuplicateKey { key, .. } if key == "id")),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"b":[{"c":{"d":1,"d":2}}]}}}"#.into(), |e| matches!(e, E::DuplicateKey { key, .. } if key == "d")),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"name":"a","n\u0061me":"b"}}"#.into(), |e| matches!(e, E::DuplicateKey { key, .. } if key == "name")),
        (r#"{"jsonrpc":"2.0","id":1,"result":{"x":[{"k":1,"k":1}]}}"#.into(), |e| matches!(e, E::DuplicateKey { .. })),
        // case variants
        (r#"{"jsonrpc":"2.0","id":1,"Method":"m"}"#.into(), |e| matches!(e, E::CaseVariantMember { member: "method", .. })),
        (r#"{"jsonrpc":"2.0","ID":1,"method":"m"}"#.into(), |e| matches!(e, E::CaseVariantMember { member: "id", .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","Params":{}}"#.into(), |e| matches!(e, E::CaseVariantMember { member: "params", .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","param\u017f":{}}"#.into(), |e| matches!(e, E::CaseVariantMember { member: "params", .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"Name":"a","name":"b"}}"#.into(), |e| matches!(e, E::CaseVariantKeys { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":[{"x":{"path":"/a","PATH":"/b"}}]}"#.into(), |e| matches!(e, E::CaseVariantKeys { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"kind":1,"\u212aind":2}}"#.into(), |e| matches!(e, E::CaseVariantKeys { .. })),
        // members
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","extra":1}"#.into(), |e| matches!(e, E::UnknownMember { key, .. } if key == "extra")),
        // method
        (r#"{"jsonrpc":"2.0","id":1,"method":1}"#.into(), |e| matches!(e, E::MethodNotString { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":null}"#.into(), |e| matches!(e, E::MethodNotString { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":""}"#.into(), |e| matches!(e, E::EmptyMethod { .. })),
        (r#"{"jsonrpc":"2.0"}"#.into(), |e| matches!(e, E::MissingMethod { .. })),
        (r#"{"jsonrpc":"2.0","params":{}}"#.into(), |e| matches!(e, E::ParamsWithoutMethod { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","result":{}}"#.into(), |e| matches!(e, E::MethodWithResult { .. })),
        // params
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}"#.into(), |e| matches!(e, E::BadParams { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#.into(), |e| matches!(e, E::BadParams { .. })),
        (r#"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#.into(), |e| matches!(e, E::BadParams { .. })),
        // responses
        (r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#.into(), |e| matches!(e, E::ResultAndError { .. })),
        (r#"{"jsonrpc":"2.0","id":1}"#.into(), |e| matches!(e, E::NoResultOrError { .. })),
        (r#"{"jsonrpc":"2.0","id":null,"error":{}}"#.into(), |e| matches!(e, E::BadId { kind: "null", .. })),
        // batches
        ("[]".into(), |e| matches!(e, E::EmptyBatch)),
        (" [ ] ".into(), |e| matches!(e, E::EmptyBatch)),
        (batch(MAX_BATCH + 1), |e| matches!(e, E::BatchTooLarge { len: 101 })),
        (r#"[{"jsonrpc":"2.0","method":"m"},[{"jsonrpc":"2.0","method":"m"}]]"#.into(), |e| matches!(e, E::NestedBatch { index: 1 })),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call"}]"#.into(), |e| matches!(e, E::MixedBatch { index: 1, .. })),
        (r#"[{"jsonrpc":"2.0","id":1,"method":"m"},{"jsonrpc":"2.0","id":2,"result":{}}]"#.into(), |e| matches!(e, E::MixedBatch { .. })),
        (r#"[{"jsonrpc":"2.0","method":"m"},{"jsonrpc":"2.0","method":"m","bad":1}]"#.into(), |e| matches!(e, E::UnknownMember { at: At(Some(1)), .. })),
    ];
    for (body, check) in &cases {
        match parse(body.as_bytes()) {
            Err(e) => {
                assert!(check(&e), "{body}: wrong refusal: {e:?}");
                assert!(!e.to_string().is_empty());
            }
            Ok(b) => panic!("{body}: accepted as {b:?}"),
        }
    }
    // Depth exactly at the limit is fine: the message object plus 127 arrays.
    assert!(parse(deep(MAX_DEPTH - 1).as_bytes()).is_ok());
}

#[test]
fn body_limits() {
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse(&big),
        Err(JsonRpcError::BodyTooLarge {
            len: MAX_BODY_BYTES + 1
        })
    );
    assert!(matches!(
        parse(b"{\"a\":\"\xff\"}"),
        Err(JsonRpcError::NotUtf8 { offset: 6 })
    ));
    // Very deep input is refused without exhausting the stack.
    let deep = "[".repeat(100_000);
    assert!(matches!(
        parse(deep.as_bytes()),
        Err(JsonRpcError::TooDeep { .. })
    ));
}

#[test]
fn tool_calls() {
    let call = tool_call(&json!({"name": "read_file ", "arguments": {"path": "/x"}})).unwrap();
    assert_eq!(call.name, "read_file ");
    assert_eq!(call.arguments.get("path"), Some(&json!("/x")));
    let call = tool_call(&json!({"name": "Read_File", "_meta": {"progressToken": 1}})).unwrap();
    assert_eq!(call.name, "Read_File");
    assert!(call.arguments.is_empty());
    // Unicode is kept as sent, not normalised (e + combining acute).
    assert_eq!(
        tool_call(&json!({"name": "e\u{301}"})).unwrap().name,
        "e\u{301}"
    );

    use JsonRpcError as E;
    let cases: &[(Value, E)] = &[
        (json!([]), E::ToolParamsNotObject),
        (
            json!({"name": "a", "extra": 1}),
            E::ToolUnknownKey {
                key: "extra".into(),
            },
        ),
        (
            json!({"name": "a", "Name": "b"}),
            E::ToolUnknownKey { key: "Name".into() },
        ),
        (json!({"arguments": {}}), E::ToolNameMissing),
        (json!({"name": 1}), E::ToolNameNotString),
        (json!({"name": ""}), E::ToolNameNotString),
        (
            json!({"name": "a", "arguments": [1]}),
            E::ToolArgumentsNotObject,
        ),
        (
            json!({"name": "a", "arguments": null}),
            E::ToolArgumentsNotObject,
        ),
        (json!({"name": "a", "_meta": 1}), E::ToolMetaNotObject),
    ];
    for (params, want) in cases {
        assert_eq!(tool_call(params).as_ref(), Err(want), "{params}");
    }
}

#[test]
fn tool_call_through_parse() {
    let m = single(
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":" x ","arguments":{"a":[1,{"b":null}]}}}"#,
    );
    let Message::Request {
        params: Some(p), ..
    } = m
    else {
        panic!("not a request with params")
    };
    let call = tool_call(&p).unwrap();
    assert_eq!(call.name, " x ");
    assert_eq!(call.arguments.get("a"), Some(&json!([1, {"b": null}])));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_jsonish(s in r#"[\[\]{}",:0-9a-zA-Z.eE+\-\\u ]{0,256}"#) {
        let _ = parse(s.as_bytes());
        let _ = parse(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"m","params":{s}}}"#).as_bytes());
    }

    #[test]
    fn agrees_with_serde_json_on_duplicate_free_json(v in arb_json()) {
        let text = serde_json::to_string(&v).unwrap();
        let ours = Parser { text: &text, pos: 0 }.document();
        prop_assert_eq!(ours.ok(), Some(v));
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
