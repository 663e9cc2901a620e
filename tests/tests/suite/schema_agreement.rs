//! `openapi.yaml` says exactly what the service's parsers take, checked
//! property by property with no stack: for ids, filenames, content types and
//! whole create bodies, a value is valid against its schema exactly when the
//! parser accepts it (values drawn from the schema's own patterns, near
//! misses and arbitrary strings); what the service writes (ids, timestamps,
//! cursors) is valid against the schemas of its answers.
//!
//! The API's types (crate `api`) and `openapi.yaml` are checked against
//! each other both ways: every view and request body, serialized from
//! samples that set each optional member and from samples that set none,
//! is valid against its schema (and reads back as itself); and each
//! schema's properties, required members and enum values are exactly the
//! type's members, the members it always writes, and its enum's values.
//!
//! The one difference JSON Schema cannot express is a size written as a
//! whole float (`5.0`): the schema's `integer` admits it, the API refuses it
//! (`Invalid size`); `whole_float_sizes_are_the_documented_exception` pins
//! it down.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use local::stack::project_root;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use shared::config::UploadPolicy;
use shared::cursor;
use shared::domain::{
    hex, valid_content_type, valid_filename, valid_token_content_type, NewUpload, OwnerId, Timestamp, UploadId,
};

static OPENAPI: LazyLock<Value> = LazyLock::new(|| {
    serde_yaml::from_str(&std::fs::read_to_string(project_root().join("openapi.yaml")).unwrap()).unwrap()
});

fn openapi() -> &'static Value {
    &OPENAPI
}

/// A validator for the component schema `name`, compiled once.
fn validator(name: &str) -> &'static jsonschema::Validator {
    static CACHE: LazyLock<Mutex<HashMap<String, &'static jsonschema::Validator>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap();
    cache.entry(name.to_owned()).or_insert_with(|| {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": openapi()["components"],
            "$ref": format!("#/components/schemas/{name}"),
        });
        Box::leak(Box::new(jsonschema::draft202012::new(&schema).expect("a valid schema")))
    })
}

/// The `pattern` of component schema `name`, without its anchors, to draw
/// strings from.
fn pattern(name: &str) -> String {
    let p =
        openapi()["components"]["schemas"][name]["pattern"].as_str().unwrap_or_else(|| panic!("{name} has a pattern"));
    p.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("an anchored pattern").to_owned()
}

/// Strings drawn from `name`'s pattern, the same with one character
/// changed, inserted or removed, strings from `long` (to reach the length
/// bounds), and arbitrary strings.
fn around(name: &str, long: &'static str) -> impl Strategy<Value = String> {
    let drawn = proptest::string::string_regex(&pattern(name)).expect("a pattern proptest can draw from").boxed();
    let nudged = (drawn.clone(), any::<Index>(), any::<char>(), 0..3u8).prop_map(|(s, at, c, how)| {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len() + 1);
        match how {
            0 if i < chars.len() => chars[i] = c,
            2 if i < chars.len() => {
                chars.remove(i);
            }
            _ => chars.insert(i, c),
        }
        chars.into_iter().collect()
    });
    prop_oneof![3 => drawn, 3 => nudged, 1 => long, 1 => any::<String>(), 1 => "[ -~]{0,40}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Fractional floats only: whole ones are the documented exception.
        (any::<i32>(), 1u32..1000).prop_map(|(i, f)| json!(f64::from(i) + f64::from(f) / 1000.5)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn upload_id_schema_is_the_parser(s in around("UploadIdInput", "upl_[0-9a-f]{31,33}")) {
        prop_assert_eq!(validator("UploadIdInput").is_valid(&json!(s)), UploadId::parse(&s).is_some(), "{:?}", s);
    }

    #[test]
    fn filename_schema_is_the_parser(s in around("Filename", "[a-zé ]{250,260}")) {
        prop_assert_eq!(validator("Filename").is_valid(&json!(s)), valid_filename(&s), "{:?}", s);
    }

    #[test]
    fn content_type_schema_is_the_parser(s in around("ContentType", "a/b; c=[a-z]{240,250}")) {
        prop_assert_eq!(validator("ContentType").is_valid(&json!(s)), valid_content_type(&s), "{:?}", s);
    }

    #[test]
    fn token_content_type_schema_is_the_parser(s in around("TokenContentType", "[a-z*]{250,255}/\\*")) {
        prop_assert_eq!(validator("TokenContentType").is_valid(&json!(s)), valid_token_content_type(&s), "{:?}", s);
    }

    /// A create body is valid against `CreateRequest` exactly when the
    /// create function's parser takes it (with the default, and largest,
    /// `MaxUploadBytes`).
    #[test]
    fn create_request_schema_is_the_parser(
        filename in prop_oneof![around("Filename", "[a-zé ]{250,260}").prop_map(Value::from), json_value()],
        content_type in prop_oneof![around("ContentType", "a/b; c=[a-z]{240,250}").prop_map(Value::from), json_value()],
        size in prop_oneof![any::<i64>().prop_map(Value::from), (0u64..=(5 << 40) + 1).prop_map(Value::from), json_value()],
        absent in 0u8..8,
        extra in prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..2),
        not_an_object in prop::option::weighted(0.1, json_value()),
    ) {
        let body = match not_an_object {
            Some(v) => v,
            None => {
                let mut map: Map<String, Value> = extra.into_iter().collect();
                for (bit, (k, v)) in [("filename", filename), ("content_type", content_type), ("size", size)].into_iter().enumerate() {
                    if absent >> bit & 1 == 0 {
                        map.insert(k.into(), v);
                    } else {
                        map.remove(k);
                    }
                }
                Value::Object(map)
            }
        };
        let parsed = NewUpload::parse(&serde_json::to_vec(&body).unwrap(), &UploadPolicy::default());
        prop_assert_eq!(validator("CreateRequest").is_valid(&body), parsed.is_ok(), "{} -> {:?}", body, parsed);
    }

    /// What the service writes is valid against the schemas of its answers.
    #[test]
    fn what_the_service_writes_matches_its_schemas(
        bytes in any::<[u8; 16]>(),
        ms in 0i64..=253_402_300_799_999,
        secret in any::<[u8; 32]>(),
        owner in "[A-Za-z0-9][A-Za-z0-9._-]{0,63}",
    ) {
        let id = UploadId::parse(&format!("upl_{}", hex(&bytes))).unwrap();
        prop_assert!(validator("UploadId").is_valid(&json!(id.as_str())));
        prop_assert!(validator("UploadIdInput").is_valid(&json!(id.as_str())));
        let at = Timestamp::from_unix_millis(ms);
        prop_assert!(validator("Timestamp").is_valid(&json!(at.to_rfc3339())), "{}", at);
        let owner = OwnerId::parse(&owner).unwrap();
        let minted = cursor::encode(&secret, &owner, &format!("{at}#{id}"));
        prop_assert!(validator("Cursor").is_valid(&json!(minted)), "{}", minted);
    }

    /// A string the `Cursor` schema refuses is refused by the API too.
    #[test]
    fn cursors_the_schema_refuses_are_refused(s in around("Cursor", "[A-Za-z0-9_-]{460,470}\\.[A-Za-z0-9_-]{43}"), secret in any::<[u8; 32]>()) {
        let owner = OwnerId::parse("someone").unwrap();
        if !validator("Cursor").is_valid(&json!(s)) {
            prop_assert_eq!(cursor::decode(&secret, &owner, &s), None);
        }
    }
}

#[test]
fn whole_float_sizes_are_the_documented_exception() {
    let body = json!({"filename": "a", "content_type": "a/b", "size": 5.0});
    assert!(validator("CreateRequest").is_valid(&body), "JSON Schema's integer admits 5.0");
    let refused = NewUpload::parse(body.to_string().as_bytes(), &UploadPolicy::default()).unwrap_err();
    assert_eq!(refused.to_string(), "Invalid size");
    let description = openapi()["components"]["schemas"]["CreateRequest"]["properties"]["size"]["description"].as_str();
    assert!(description.is_some_and(|d| d.contains("without fraction or exponent")), "the schema documents it");
}

// ---------------------------------------------------------------------------
// The API's types and openapi.yaml, both ways.

mod contract_types {
    use std::collections::{BTreeMap, BTreeSet};

    use api::{
        Checksum, ChecksumAlgorithm, ChecksumType, Completion, CreateUpload, Deleted, Download, ErrorBody, GetMethod,
        MintToken, Page, PresignedPut, PutMethod, Session, Status, Token, TokenScope, Transfer, TransferType,
        WithRequestId,
    };
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::{json, Value};

    use super::{openapi, validator};

    const ID: &str = "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36";
    const AT: &str = "2026-01-02T03:04:05.678Z";
    const LATER: &str = "2026-01-02T03:19:05.000Z";
    const URL: &str =
        "https://bucket.s3.amazonaws.com/uploads/team/upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36?X-Amz-Signature=ab";
    const SHA: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    const REQUEST_ID: &str = "9f0c3b1e-2d4a-4c5b-8e6f-7a8b9c0d1e2f";

    fn session(status: Status) -> Session {
        let pending = status == Status::Pending;
        Session {
            upload_id: ID.into(),
            status,
            filename: "Прогноз погоды.txt".into(),
            content_type: "text/plain; charset=utf-8".into(),
            size: 12 << 20,
            created_at: AT.into(),
            expires_at: pending.then(|| LATER.into()),
            completed_at: (!pending).then(|| LATER.into()),
            checksum: None,
            upload: None,
            download: None,
            completion: None,
        }
    }

    fn checksum() -> Checksum {
        Checksum {
            algorithm: ChecksumAlgorithm::Sha256,
            kind: ChecksumType::Composite,
            value: format!("{SHA}-2"),
            part_size: 8 << 20,
        }
    }

    fn put(n: u64) -> PresignedPut {
        let headers = BTreeMap::from([
            ("content-length".to_owned(), "8388608".to_owned()),
            ("x-amz-checksum-sha256".to_owned(), SHA.to_owned()),
        ]);
        PresignedPut { part_number: n, method: PutMethod::Put, url: URL.into(), headers, size: 8 << 20 }
    }

    fn multipart() -> Transfer {
        Transfer::plan(12 << 20, Some((8 << 20, 2)))
    }

    fn instructions() -> Transfer {
        Transfer {
            urls_expire_at: Some(LATER.into()),
            parts: Some(vec![put(1), put(2)]),
            more_parts: Some(false),
            ..multipart()
        }
    }

    fn download() -> Download {
        Download { url: URL.into(), method: GetMethod::Get, expires_at: LATER.into() }
    }

    fn answered<T: Serialize>(view: T) -> Value {
        serde_json::to_value(WithRequestId { view, request_id: REQUEST_ID.into() }).unwrap()
    }

    /// Every answer and request the API's types make, each with the
    /// schema it must be valid against.
    fn samples() -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        // Create (201): a single PUT without checksums, multipart with.
        let single = Session {
            upload: Some(Transfer {
                urls_expire_at: Some(LATER.into()),
                parts: Some(vec![put(1)]),
                more_parts: Some(false),
                ..Transfer::plan(5, None)
            }),
            size: 5,
            ..session(Status::Pending)
        };
        out.push(("CreatedSession", answered(&single)));
        let created = Session { checksum: Some(checksum()), upload: Some(instructions()), ..session(Status::Pending) };
        out.push(("CreatedSession", answered(&created)));
        // Get: pending with its progress, completed with its download.
        let progress = Transfer { parts_received: Some(vec![1]), parts_missing: Some(vec![2]), ..multipart() };
        out.push(("SessionWithProgress", answered(Session { upload: Some(progress), ..session(Status::Pending) })));
        let done = Session { checksum: Some(checksum()), download: Some(download()), ..session(Status::Completed) };
        out.push(("SessionWithProgress", answered(&done)));
        // Confirm: 200, and 202 while S3 completes.
        out.push(("Session", answered(session(Status::Completed))));
        out.push(("Session", answered(Session { checksum: Some(checksum()), ..session(Status::Completed) })));
        let completing = Session { completion: Some(Completion::InProgress), ..session(Status::Pending) };
        out.push(("CompletingSession", answered(completing)));
        // Resume.
        let resumed = Transfer { parts_received: Some(vec![]), ..instructions() };
        out.push(("ResumedSession", answered(Session { upload: Some(resumed), ..session(Status::Pending) })));
        // List: a page and the last page.
        let page = Page {
            uploads: vec![session(Status::Pending), session(Status::Completed)],
            next_cursor: Some(format!("eyJhIjoxfQ.{}", "A".repeat(43))),
        };
        out.push(("Page", answered(page)));
        out.push(("Page", answered(Page { uploads: vec![], next_cursor: None })));
        // Delete, mint, errors.
        out.push(("Deleted", answered(Deleted { message: format!("Upload {ID} deleted successfully") })));
        let token = Token {
            token: format!("ubt_eyJ2IjoxfQ.{}", "B".repeat(43)),
            token_id: "tok_0123456789abcdef0123456789abcdef".into(),
            expires_at: "2026-01-02T03:19:05.000Z".into(),
            scope: TokenScope::Own,
            max_size: None,
            content_type: None,
            upload_id: None,
        };
        out.push(("Token", answered(&token)));
        let narrow = Token {
            scope: TokenScope::Owner,
            max_size: Some(1 << 20),
            content_type: Some("image/*".into()),
            upload_id: Some(ID.into()),
            ..token
        };
        out.push(("Token", answered(narrow)));
        let error = ErrorBody { error: "Upload not found".into(), request_id: REQUEST_ID.into() };
        out.push(("Error", serde_json::to_value(error).unwrap()));
        // Requests.
        let create = CreateUpload {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            size: 5,
            part_size: None,
            checksum_algorithm: None,
            checksums: None,
        };
        out.push(("CreateRequest", serde_json::to_value(&create).unwrap()));
        let declared = CreateUpload {
            size: 12 << 20,
            part_size: Some(8 << 20),
            checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
            checksums: Some(vec!["4waSgw==".into(), "AAAAAA==".into()]),
            ..create
        };
        out.push(("CreateRequest", serde_json::to_value(declared).unwrap()));
        out.push(("TokenRequest", serde_json::to_value(MintToken::default()).unwrap()));
        let mint = MintToken {
            ttl_seconds: Some(60),
            scope: Some(TokenScope::Owner),
            max_size: Some(7),
            content_type: Some("image/*".into()),
            upload_id: Some("3f2a9c4e-8b1d-4f6a-9e0c-7b5d2a1f8e36".into()),
        };
        out.push(("TokenRequest", serde_json::to_value(mint).unwrap()));
        out
    }

    #[test]
    fn what_the_types_write_is_valid_against_openapi() {
        for (schema, value) in samples() {
            let errors: Vec<String> = validator(schema).iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{schema}: {value:#}\n{errors:#?}");
        }
    }

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
        let json = serde_json::to_value(value).unwrap();
        assert_eq!(&serde_json::from_value::<T>(json.clone()).unwrap(), value, "{json}");
    }

    #[test]
    fn what_the_types_write_they_read_back() {
        let full = full_session();
        round_trip(&full);
        round_trip(&session(Status::Pending));
        round_trip(&full_token());
        round_trip(&full_create());
        round_trip(&full_mint());
        round_trip(&MintToken::default());
        round_trip(&Page { uploads: vec![session(Status::Completed)], next_cursor: None });
        round_trip(&Deleted { message: "x".into() });
        round_trip(&ErrorBody { error: "x".into(), request_id: "r".into() });
        // What the client reads: an answer with its request_id.
        let answered: WithRequestId<Session> = serde_json::from_value(answered(&full)).unwrap();
        assert_eq!((answered.view, answered.request_id.as_str()), (full, REQUEST_ID));
    }

    // The other way: openapi's properties, required members and enums are
    // the types'.

    /// A component schema, or the schema a `$ref` names.
    fn resolve(schema: &Value) -> &Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.strip_prefix("#/components/schemas/").expect("a component reference");
                resolve(&openapi()["components"]["schemas"][name])
            }
            None => schema,
        }
    }

    fn component(name: &str) -> &'static Value {
        let s = &openapi()["components"]["schemas"][name];
        assert!(s.is_object(), "openapi has no schema {name}");
        s
    }

    /// The properties a schema names (its own, its `$ref`'s and its
    /// `allOf`'s), each with its subschema, and its required members.
    fn members(schema: &Value) -> (BTreeMap<String, Vec<&Value>>, BTreeSet<String>) {
        let mut props: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
        let mut required = BTreeSet::new();
        let mut visit = vec![schema];
        while let Some(s) = visit.pop() {
            let s = resolve(s);
            if let Some(p) = s.get("properties").and_then(Value::as_object) {
                for (k, v) in p {
                    props.entry(k.clone()).or_default().push(v);
                }
            }
            if let Some(r) = s.get("required").and_then(Value::as_array) {
                required.extend(r.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            if let Some(all) = s.get("allOf").and_then(Value::as_array) {
                visit.extend(all.iter());
            }
        }
        (props, required)
    }

    /// Every `enum` (or `const`) value a property's subschemas allow, all
    /// of them agreeing.
    fn enum_values(schema: &Value, property: &str) -> BTreeSet<String> {
        let (props, _) = members(schema);
        let mut found: Option<BTreeSet<String>> = None;
        for sub in props.get(property).unwrap_or_else(|| panic!("no property {property}")) {
            let mut visit = vec![*sub];
            while let Some(s) = visit.pop() {
                let s = resolve(s);
                let values: Option<BTreeSet<String>> = match (s.get("enum"), s.get("const")) {
                    (Some(e), _) => {
                        Some(e.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect())
                    }
                    (None, Some(c)) => Some(BTreeSet::from([c.as_str().unwrap().to_owned()])),
                    _ => None,
                };
                if let Some(v) = values {
                    if let Some(f) = &found {
                        // A narrower `const` (CompletingSession's status) is a subset.
                        assert!(v.is_subset(f) || f.is_subset(&v), "{property}: {v:?} and {f:?}");
                    }
                    found = Some(match found.take() {
                        Some(f) if f.len() >= v.len() => f,
                        _ => v,
                    });
                }
                if let Some(all) = s.get("allOf").and_then(Value::as_array) {
                    visit.extend(all.iter());
                }
            }
        }
        found.unwrap_or_else(|| panic!("{property} has no enum"))
    }

    fn keys(value: impl Serialize) -> BTreeSet<String> {
        match serde_json::to_value(value).unwrap() {
            Value::Object(m) => m.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    fn names<T: Serialize>(all: &[T]) -> BTreeSet<String> {
        all.iter().map(|v| serde_json::to_value(v).unwrap().as_str().unwrap().to_owned()).collect()
    }

    /// Each optional member set: the type's every key.
    /// Every member set. The pattern names every field, so a member added
    /// to the type fails to compile here until the sample sets it too.
    fn full_session() -> Session {
        let full = Session {
            checksum: Some(checksum()),
            upload: Some(full_transfer()),
            download: Some(download()),
            completion: Some(Completion::InProgress),
            ..session(Status::Pending)
        };
        let Session {
            upload_id: _,
            status: _,
            filename: _,
            content_type: _,
            size: _,
            created_at: _,
            // Always written, null when unset.
            expires_at: _,
            completed_at: _,
            checksum,
            upload,
            download,
            completion,
        } = &full;
        assert!(checksum.is_some() && upload.is_some() && download.is_some() && completion.is_some());
        full
    }

    /// As [`full_session`], for the transfer.
    fn full_transfer() -> Transfer {
        let full = Transfer { parts_received: Some(vec![1]), parts_missing: Some(vec![2]), ..instructions() };
        let Transfer { kind: _, part_size: _, part_count: _, urls_expire_at, parts, more_parts, parts_received, parts_missing } =
            &full;
        assert!(
            urls_expire_at.is_some()
                && parts.is_some()
                && more_parts.is_some()
                && parts_received.is_some()
                && parts_missing.is_some()
        );
        full
    }

    fn full_token() -> Token {
        Token {
            token: "ubt_x.y".into(),
            token_id: "tok_0123456789abcdef0123456789abcdef".into(),
            expires_at: AT.into(),
            scope: TokenScope::Own,
            max_size: Some(1),
            content_type: Some("a/b".into()),
            upload_id: Some(ID.into()),
        }
    }

    fn full_create() -> CreateUpload {
        CreateUpload {
            filename: "a".into(),
            content_type: "a/b".into(),
            size: 1,
            part_size: Some(5 << 20),
            checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
            checksums: Some(vec![SHA.into()]),
        }
    }

    fn full_mint() -> MintToken {
        MintToken {
            ttl_seconds: Some(60),
            scope: Some(TokenScope::Own),
            max_size: Some(1),
            content_type: Some("a/b".into()),
            upload_id: Some(ID.into()),
        }
    }

    /// `schema`'s properties are exactly `full`'s keys and its required
    /// members exactly `minimal`'s, besides the `request_id` every answer
    /// carries.
    fn agree(schema: &str, full: impl Serialize, minimal: impl Serialize) {
        let (props, required) = members(component(schema));
        let strip = |s: BTreeSet<String>| s.into_iter().filter(|k| k != "request_id").collect::<BTreeSet<_>>();
        assert_eq!(strip(props.keys().cloned().collect()), keys(full), "{schema}: properties");
        assert_eq!(strip(required), keys(minimal), "{schema}: required");
    }

    #[test]
    fn openapi_names_exactly_the_types_members() {
        let listed = session(Status::Pending);
        agree("SessionFields", Session { checksum: Some(checksum()), ..listed.clone() }, &listed);
        agree("Checksum", checksum(), checksum());
        agree("PresignedPut", put(1), put(1));
        agree("Download", download(), download());
        agree("Transfer", multipart(), multipart());
        agree("Instructions", instructions(), instructions());
        agree("Page", Page { uploads: vec![], next_cursor: None }, Page { uploads: vec![], next_cursor: None });
        agree("Deleted", Deleted { message: String::new() }, Deleted { message: String::new() });
        let minimal_token = Token { max_size: None, content_type: None, upload_id: None, ..full_token() };
        agree("Token", full_token(), minimal_token);
        let error = ErrorBody { error: String::new(), request_id: String::new() };
        let (props, required) = members(component("Error"));
        assert_eq!(props.keys().cloned().collect::<BTreeSet<_>>(), keys(&error));
        assert_eq!(required, keys(&error));
        let minimal_create =
            CreateUpload { part_size: None, checksum_algorithm: None, checksums: None, ..full_create() };
        agree("CreateRequest", full_create(), minimal_create);
        agree("TokenRequest", full_mint(), MintToken::default());

        // A session's view: what each route's schema adds to the fields
        // every session has is what the type has beside them.
        let mut session_props = BTreeSet::new();
        for schema in ["Session", "CompletingSession", "CreatedSession", "ResumedSession", "SessionWithProgress"] {
            session_props.extend(members(component(schema)).0.into_keys().filter(|k| k != "request_id"));
        }
        assert_eq!(session_props, keys(full_session()), "the session schemas' properties");
        // And a transfer's: what create, resume and get add.
        let mut transfer_props = BTreeSet::new();
        for schema in ["CreatedSession", "ResumedSession", "SessionWithProgress"] {
            for upload in members(component(schema)).0.remove("upload").unwrap() {
                transfer_props.extend(members(upload).0.into_keys());
            }
        }
        assert_eq!(transfer_props, keys(full_transfer()), "the upload members' properties");
    }

    #[test]
    fn openapi_enums_are_the_types_enums() {
        let fields = component("SessionFields");
        assert_eq!(enum_values(fields, "status"), names(Status::ALL));
        // A 202's session is pending.
        assert_eq!(component("CompletingSession")["properties"]["status"]["const"], json!(Status::Pending.as_str()));
        assert_eq!(enum_values(component("CompletingSession"), "completion"), names(Completion::ALL));
        assert_eq!(enum_values(component("Checksum"), "algorithm"), names(ChecksumAlgorithm::ALL));
        assert_eq!(enum_values(component("CreateRequest"), "checksum_algorithm"), names(ChecksumAlgorithm::ALL));
        assert_eq!(enum_values(component("Checksum"), "type"), names(ChecksumType::ALL));
        assert_eq!(enum_values(component("Transfer"), "type"), names(TransferType::ALL));
        assert_eq!(enum_values(component("Token"), "scope"), names(TokenScope::ALL));
        assert_eq!(enum_values(component("TokenRequest"), "scope"), names(TokenScope::ALL));
        assert_eq!(enum_values(component("PresignedPut"), "method"), names(PutMethod::ALL));
        assert_eq!(enum_values(component("Download"), "method"), names(GetMethod::ALL));
        // And each name the schema allows reads as the type's value.
        for name in enum_values(fields, "status") {
            assert_eq!(serde_json::from_value::<Status>(json!(name)).unwrap().as_str(), name);
        }
        for name in enum_values(component("Checksum"), "type") {
            assert_eq!(serde_json::from_value::<ChecksumType>(json!(name)).unwrap().as_str(), name);
        }
    }

    /// The ids' string forms are the schemas' patterns.
    #[test]
    fn openapi_id_examples_are_the_types_ids() {
        for example in component("UploadId")["examples"].as_array().unwrap() {
            assert!(api::is_upload_id(example.as_str().unwrap()), "{example}");
        }
        for example in component("UploadIdInput")["examples"].as_array().unwrap() {
            let canonical = api::canonical_upload_id(example.as_str().unwrap()).unwrap();
            assert!(validator("UploadId").is_valid(&json!(canonical)), "{example}");
        }
        let token_id = members(component("Token")).0.remove("token_id").unwrap()[0]["pattern"].clone();
        assert_eq!(token_id, json!(format!("^{}[0-9a-f]{{32}}$", api::TOKEN_ID_PREFIX)));
        assert!(component("UploadId")["pattern"].as_str().unwrap().starts_with(&format!("^{}", api::UPLOAD_ID_PREFIX)));
    }
}
