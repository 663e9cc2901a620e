//! Property tests of the parsers at the edge: upload ids, list cursors,
//! create request bodies, and the id, path and query parameters of a
//! request. Each one round-trips what the service itself writes, and takes
//! any input at all without panicking, answering either a value or one of
//! its stable errors.

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use lambda_http::http::HeaderValue;
use lambda_http::{Body, Request, RequestExt};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use shared::config::UploadPolicy;
use shared::cursor::{self, MAX_CURSOR_LEN};
use shared::domain::{hex, valid_content_type, valid_filename, NewUpload, OwnerId, Plan, Timestamp, UploadId};
use shared::http::{header_upload_id, path_upload_id, query_param};
use shared::Error;

/// Independent of `UploadId::parse`: the two shapes an id may have on input.
fn has_id_shape(s: &str) -> bool {
    let lower_hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    if let Some(digits) = s.strip_prefix("upl_") {
        return digits.chars().count() == 32 && digits.chars().all(lower_hex);
    }
    let chars: Vec<char> = s.chars().collect();
    chars.len() == 36
        && chars
            .iter()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { *c == '-' } else { c.is_ascii_hexdigit() })
}

/// `bytes` as a hyphenated UUID, each letter upper case where `mask` says.
fn uuid_form(bytes: &[u8; 16], mask: u64) -> String {
    let digits: String = hex(bytes)
        .chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect();
    format!("{}-{}-{}-{}-{}", &digits[..8], &digits[8..12], &digits[12..16], &digits[16..20], &digits[20..])
}

/// A canonical id with one character replaced, inserted or removed.
fn near_id() -> impl Strategy<Value = String> {
    (any::<[u8; 16]>(), any::<Index>(), any::<char>(), 0..3u8).prop_map(|(bytes, at, c, how)| {
        let mut chars: Vec<char> = format!("upl_{}", hex(&bytes)).chars().collect();
        let i = at.index(chars.len());
        match how {
            0 => chars[i] = c,
            1 => chars.insert(i, c),
            _ => {
                chars.remove(i);
            }
        }
        chars.into_iter().collect()
    })
}

fn id_candidates() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        near_id(),
        "[uU][pP][lL]_[0-9a-fA-F]{31,33}",
        "[0-9a-fA-FgG]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{11,13}",
        "[ \t]{0,2}upl_[0-9a-f]{32}[ \t]{0,2}",
    ]
}

fn owner() -> impl Strategy<Value = OwnerId> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,63}".prop_map(|s| OwnerId::parse(&s).expect("an owner id"))
}

/// A `by_owner` position, as the list function encodes it: `<created_at>#<id>`
/// for any instant from 1970 to the end of year 9999.
fn position() -> impl Strategy<Value = String> {
    (0i64..=253_402_300_799_999, any::<[u8; 16]>())
        .prop_map(|(ms, bytes)| format!("{}#upl_{}", Timestamp::from_unix_millis(ms), hex(&bytes)))
}

fn is_base64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Any JSON value, nested a little.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A create request body: mostly an object with some of the three members
/// (each valid, of any value, or absent) and maybe others, sometimes any
/// JSON, sometimes any bytes.
fn create_body() -> impl Strategy<Value = Vec<u8>> {
    let member = |valid: BoxedStrategy<Value>| prop_oneof![3 => valid, 1 => json_value(), 1 => Just(Value::Null)];
    let object = (
        member(filename().prop_map(Value::from).boxed()),
        member(content_type().prop_map(Value::from).boxed()),
        member(prop_oneof![(1u64..=1 << 45).prop_map(Value::from), Just(json!(5.0)), Just(json!(-1))].boxed()),
        prop::collection::btree_map("[a-z_]{1,12}", json_value(), 0..3),
        // The optional members: absent (null) most of the time.
        (
            prop_oneof![3 => Just(Value::Null), 1 => (1u64..=6 << 30).prop_map(Value::from), 1 => json_value()],
            prop_oneof![3 => Just(Value::Null), 1 => Just(json!("SHA256")), 1 => Just(json!("CRC32C")), 1 => json_value()],
            prop_oneof![
                3 => Just(Value::Null),
                1 => prop::collection::vec(prop_oneof![
                    any::<[u8; 32]>().prop_map(|d| BASE64.encode(d)),
                    any::<[u8; 4]>().prop_map(|d| BASE64.encode(d)),
                    ".{0,50}",
                ], 0..5).prop_map(Value::from),
                1 => json_value(),
            ],
        ),
    )
        .prop_map(|(f, c, s, extra, (part_size, algorithm, checksums))| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in [
                ("filename", f),
                ("content_type", c),
                ("size", s),
                ("part_size", part_size),
                ("checksum_algorithm", algorithm),
                ("checksums", checksums),
            ] {
                if !v.is_null() {
                    map.insert(k.into(), v);
                }
            }
            serde_json::to_vec(&Value::Object(map)).unwrap()
        });
    prop_oneof![
        6 => object,
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => any::<Vec<u8>>(),
    ]
}

/// Filenames the API takes: 1 to 255 characters, none a control character,
/// not all white space.
fn filename() -> impl Strategy<Value = String> {
    ("[^\\x00-\\x1F\\x7F-\\x9F]{0,120}", "[^\\s\\x00-\\x1F\\x7F-\\x9F]", "[^\\x00-\\x1F\\x7F-\\x9F]{0,120}")
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

const TOKEN: &str = "[-!#$%&'*+.^_`|~0-9A-Za-z]{1,20}";

/// Content types the API takes: `type/subtype` and parameters.
fn content_type() -> impl Strategy<Value = String> {
    let param = (" {0,2}", TOKEN, prop_oneof![TOKEN.boxed(), "\"[\\x20-\\x3A\\x3C-\\x7E]{0,20}\"".boxed()], " {0,2}")
        .prop_map(|(a, n, v, b)| format!(";{a}{n}={v}{b}"));
    (TOKEN, TOKEN, prop::collection::vec(param, 0..3)).prop_map(|(t, s, p)| format!("{t}/{s}{}", p.concat()))
}

/// The messages a create request may be refused with, all 400s.
const CREATE_ERRORS: &[&str] = &[
    "Invalid JSON body",
    "Invalid filename",
    "Invalid content_type",
    "Invalid size",
    "Size exceeds the maximum upload size",
    "Invalid part_size",
    "Invalid checksum_algorithm",
    "Invalid checksums",
];

fn request() -> Request {
    Request::new(Body::Empty)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The id the service writes, and the same bits as a UUID in any case,
    /// are the same id.
    #[test]
    fn ids_round_trip(bytes in any::<[u8; 16]>(), mask in any::<u64>()) {
        let canonical = format!("upl_{}", hex(&bytes));
        let id = UploadId::parse(&canonical).expect("a canonical id parses");
        prop_assert_eq!(id.as_str(), canonical.as_str());
        prop_assert_eq!(UploadId::parse(&uuid_form(&bytes, mask)), Some(id.clone()));
        prop_assert_eq!(UploadId::parse(&id.to_string()), Some(id));
    }

    /// Any string is either an id of one of the two shapes, normalised to
    /// the canonical one, or refused.
    #[test]
    fn any_string_is_an_id_or_refused(s in id_candidates()) {
        match UploadId::parse(&s) {
            Some(id) => {
                prop_assert!(has_id_shape(&s), "{:?} was accepted", s);
                let canonical = id.as_str();
                prop_assert!(canonical.starts_with("upl_") && has_id_shape(canonical) && canonical.len() == 36);
                prop_assert_eq!(canonical[4..].to_owned(), s.replace('-', "").trim_start_matches("upl_").to_ascii_lowercase());
                prop_assert_eq!(UploadId::parse(canonical), Some(id.clone()));
            }
            None => prop_assert!(!has_id_shape(&s), "{:?} was refused", s),
        }
    }

    /// A cursor gives back its position to its owner only; it has the
    /// published shape; changing any one character of it makes it refused.
    #[test]
    fn cursors_round_trip_and_bind_to_their_owner(
        secret in any::<[u8; 32]>(),
        (alice, bob) in (owner(), owner()),
        position in position(),
        at in any::<Index>(),
        c in any::<char>(),
    ) {
        let minted = cursor::encode(&secret, &alice, &position);
        prop_assert!(minted.len() <= MAX_CURSOR_LEN);
        let (p, tag) = minted.split_once('.').expect("position.tag");
        prop_assert!(is_base64url(p) && is_base64url(tag) && tag.len() == 43, "{}", minted);
        prop_assert_eq!(cursor::decode(&secret, &alice, &minted), Some(position.clone()));
        if alice != bob {
            prop_assert_eq!(cursor::decode(&secret, &bob, &minted), None);
        }
        let mut chars: Vec<char> = minted.chars().collect();
        let i = at.index(chars.len());
        if chars[i] != c {
            chars[i] = c;
            let altered: String = chars.into_iter().collect();
            prop_assert_eq!(cursor::decode(&secret, &alice, &altered), None, "{} was accepted", altered);
        }
    }

    /// No string the service did not mint is a cursor.
    #[test]
    fn any_other_string_is_refused_as_a_cursor(
        secret in any::<[u8; 32]>(),
        owner in owner(),
        s in prop_oneof![any::<String>(), "[A-Za-z0-9_-]{2,120}\\.[A-Za-z0-9_-]{43}", "[A-Za-z0-9_.-]{400,600}"],
    ) {
        prop_assert_eq!(cursor::decode(&secret, &owner, &s), None);
    }

    /// A body of the three members, each valid, plus any others, parses to
    /// exactly them.
    #[test]
    fn create_bodies_round_trip(
        filename in filename(),
        content_type in content_type(),
        size in 1u64..=5 << 40,
        extra in prop::collection::btree_map("[a-z]{1,12}", json_value(), 0..3),
    ) {
        prop_assume!(filename.chars().count() <= 255 && content_type.len() <= 255);
        prop_assume!(!extra.keys().any(|k| ["part_size", "checksum_algorithm", "checksums"].contains(&k.as_str())));
        let mut body: Map<String, Value> = extra.into_iter().collect();
        body.insert("filename".into(), json!(filename));
        body.insert("content_type".into(), json!(content_type));
        body.insert("size".into(), json!(size));
        let parsed = NewUpload::parse(&serde_json::to_vec(&body).unwrap(), &UploadPolicy::default());
        let plan = Plan::for_size(size, &UploadPolicy::default());
        prop_assert_eq!(parsed.ok(), Some(NewUpload { filename, content_type, size, plan, checksums: None }));
    }

    /// Any body parses to a valid request, or is refused with one of the
    /// stable 400 messages.
    #[test]
    fn any_body_parses_or_gets_a_stable_400(body in create_body(), max in 1u64..=5 << 40) {
        let policy = UploadPolicy { max_upload_bytes: max, ..UploadPolicy::default() };
        match NewUpload::parse(&body, &policy) {
            Ok(new) => {
                prop_assert!(valid_filename(&new.filename) && valid_content_type(&new.content_type));
                prop_assert!((1..=max).contains(&new.size));
                // The plan covers the size within S3's limits, and the
                // checksums, if any, are one per PUT.
                let (part_size, count) = match new.plan {
                    Plan::Single => (new.size, 1),
                    Plan::Multipart { part_size, part_count } => (part_size, part_count),
                };
                prop_assert!(u64::from(count) * part_size >= new.size && u64::from(count) <= 10_000);
                if let Some(c) = &new.checksums {
                    prop_assert_eq!(c.count(), count);
                }
            }
            Err(e) => {
                prop_assert_eq!(e.status().as_u16(), 400);
                prop_assert!(CREATE_ERRORS.contains(&e.to_string().as_str()), "{}", e);
            }
        }
    }

    /// The validators agree with the strategies above and the bounds: any
    /// generated filename or content type within its length is valid, and
    /// one control character anywhere makes either invalid.
    #[test]
    fn filenames_and_content_types(name in filename(), ct in content_type(), at in any::<Index>(), ctl in "[\\x00-\\x1F\\x7F-\\x9F]") {
        prop_assert_eq!(valid_filename(&name), name.chars().count() <= 255);
        prop_assert_eq!(valid_content_type(&ct), ct.len() <= 255);
        let mut chars: Vec<char> = name.chars().collect();
        chars.insert(at.index(chars.len() + 1), ctl.chars().next().unwrap());
        prop_assert!(!valid_filename(&chars.into_iter().collect::<String>()));
        let mut ct_chars: Vec<char> = ct.chars().collect();
        ct_chars.insert(at.index(ct_chars.len() + 1), ctl.chars().next().unwrap());
        prop_assert!(!valid_content_type(&ct_chars.into_iter().collect::<String>()));
    }

    /// `x-upload-id`: absent or blank is "missing", an id (white space
    /// around it ignored) is that id, anything else is "invalid".
    #[test]
    fn header_ids(raw in prop_oneof![
        id_candidates().prop_map(String::into_bytes),
        any::<Vec<u8>>(),
        "[ \t]{0,3}".prop_map(String::into_bytes),
    ]) {
        let Ok(value) = HeaderValue::from_bytes(&raw) else { return Ok(()) };
        let mut req = request();
        req.headers_mut().insert("x-upload-id", value);
        let text = std::str::from_utf8(&raw).ok();
        match (header_upload_id(&req), text) {
            (Ok(id), Some(t)) => prop_assert_eq!(UploadId::parse(t.trim()), Some(id)),
            (Err(Error::MissingUploadId), _) => prop_assert!(raw.iter().all(u8::is_ascii_whitespace)),
            (Err(Error::InvalidUploadId), t) => {
                prop_assert!(!raw.iter().all(u8::is_ascii_whitespace));
                prop_assert!(t.is_none_or(|t| UploadId::parse(t.trim()).is_none()));
            }
            (other, _) => prop_assert!(false, "{:?} for {:?}", other, raw),
        }
        prop_assert!(matches!(header_upload_id(&request()), Err(Error::MissingUploadId)));
    }

    /// The path's id is that id, or "invalid"; never missing.
    #[test]
    fn path_ids(s in id_candidates()) {
        let req = request().with_path_parameters(HashMap::from([("upload_id".to_owned(), s.clone())]));
        match path_upload_id(&req) {
            Some(Ok(id)) => prop_assert_eq!(UploadId::parse(&s), Some(id)),
            Some(Err(Error::InvalidUploadId)) => prop_assert!(UploadId::parse(&s).is_none()),
            other => prop_assert!(false, "{:?} for {:?}", other, s),
        }
    }

    /// A query parameter given once is its value; twice, refused.
    #[test]
    fn query_params(values in prop::collection::vec(any::<String>(), 0..4), other in any::<String>()) {
        let params = HashMap::from([("cursor".to_owned(), values.clone()), ("limit".to_owned(), vec![other])]);
        let req = request().with_query_string_parameters(params);
        match (query_param(&req, "cursor", "Invalid cursor"), values.as_slice()) {
            (Ok(None), []) => {}
            (Ok(Some(v)), [one]) => prop_assert_eq!(&v, one),
            (Err(e), [_, _, ..]) => prop_assert_eq!(e.to_string(), "Invalid cursor"),
            (got, _) => prop_assert!(false, "{:?} for {:?}", got, values),
        }
    }
}
