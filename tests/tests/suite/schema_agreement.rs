//! `openapi.yaml` says exactly what the service's parsers take, checked
//! property by property with no stack: for ids, filenames, content types and
//! whole create bodies, a value is valid against its schema exactly when the
//! parser accepts it (values drawn from the schema's own patterns, near
//! misses and arbitrary strings); what the service writes (ids, timestamps,
//! cursors) is valid against the schemas of its answers.
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
