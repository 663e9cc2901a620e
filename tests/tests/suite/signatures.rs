//! The service's presigned URLs against an S3 that verifies them.
//!
//! moto accepts any presigned URL and stores whatever checksum a client
//! claims, so these tests run against the verifying S3 of
//! `local/src/s3verify.rs` (s3s + s3s-fs, started in-process on loopback):
//! SigV4 query auth over the signed headers, expiry, checksums, conditional
//! writes and CORS, as S3 checks them. The URLs come from the service's own
//! presigning code (`shared::objects::Objects`); the bytes go out through a
//! plain HTTP client sending exactly the `headers` a presigned `PUT` lists,
//! as a browser or the CLI does.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, CorsConfiguration, CorsRule, ExpirationStatus,
    LifecycleRule, LifecycleRuleFilter,
};
use local::s3verify::{Signers, VerifyingS3};
use shared::domain::{ChecksumAlgorithm, ChecksumType, Checksums, ObjectKey, OwnerId, UploadId};
use shared::objects::{attachment_disposition, Completion, Objects, PresignedPut, PutChecksum, StoredPart, UrlWindow};

const BUCKET: &str = "uploads";
const MIB: usize = 1024 * 1024;

struct Env {
    server: VerifyingS3,
    s3: aws_sdk_s3::Client,
    objects: Objects,
    http: reqwest::Client,
}

async fn env() -> Env {
    let server = VerifyingS3::start().await.expect("verifying S3 starts");
    let s3 = server.client();
    s3.create_bucket().bucket(BUCKET).send().await.expect("create bucket");
    Env { objects: Objects::new(s3.clone()), s3, server, http: reqwest::Client::new() }
}

fn new_key() -> ObjectKey {
    ObjectKey::for_upload(&OwnerId::parse("team-a").unwrap(), &UploadId::generate())
}

/// Deterministic bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// S3's error `<Code>` in an answer body.
fn code(body: &str) -> &str {
    body.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map_or("", |(c, _)| c)
}

/// Sends `body` to the presigned `put` with `headers` (by default exactly
/// the listed ones); returns the status and the answer's body.
async fn send_with(env: &Env, url: &str, headers: &BTreeMap<String, String>, body: Vec<u8>) -> (u16, String) {
    let mut req = env.http.put(url).body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.expect("PUT reaches the server");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

async fn send(env: &Env, put: &PresignedPut, body: Vec<u8>) -> (u16, String) {
    send_with(env, &put.url, &put.headers, body).await
}

async fn object_bytes(env: &Env, key: &ObjectKey) -> Vec<u8> {
    let out = env.s3.get_object().bucket(BUCKET).key(key.as_str()).send().await.expect("object exists");
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

async fn exists(env: &Env, key: &ObjectKey) -> bool {
    env.objects.object_size(BUCKET, key).await.unwrap().is_some()
}

async fn tags(env: &Env, key: &ObjectKey) -> Vec<(String, String)> {
    let out = env.s3.get_object_tagging().bucket(BUCKET).key(key.as_str()).send().await.unwrap();
    out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect()
}

/// The checksum of `data` as its `x-amz-checksum-*` header carries it.
fn put_checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> PutChecksum {
    PutChecksum::of(Some(&Checksums::of_parts(algorithm, [data])), 1).expect("one part")
}

// (a) -----------------------------------------------------------------------

#[tokio::test]
async fn a_put_with_exactly_the_listed_headers_stores_the_bytes_once() {
    let env = env().await;
    let key = new_key();
    let data = bytes(1000, 1);
    let put = env
        .objects
        .presign_put(BUCKET, &key, "text/plain; charset=utf-8", 1000, None, &UrlWindow::starting_now(900))
        .await
        .unwrap();
    let names: Vec<&str> = put.headers.keys().map(String::as_str).collect();
    assert_eq!(names, ["content-length", "content-type", "if-none-match", "x-amz-tagging"], "what a client must send");
    assert_eq!(put.headers["if-none-match"], "*");

    let (status, body) = send(&env, &put, data.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(object_bytes(&env, &key).await, data);
    let head = env.s3.head_object().bucket(BUCKET).key(key.as_str()).send().await.unwrap();
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(tags(&env, &key).await, [("upload-state".to_owned(), "pending".to_owned())]);

    // The same URL again: the signed If-None-Match: * holds, nothing is overwritten.
    let (status, body) = send(&env, &put, bytes(1000, 2)).await;
    assert_eq!((status, code(&body)), (412, "PreconditionFailed"), "{body}");
    assert_eq!(object_bytes(&env, &key).await, data);
}

// (b) -----------------------------------------------------------------------

#[tokio::test]
async fn a_signed_header_left_out_or_altered_is_refused() {
    let env = env().await;
    let key = new_key();
    let data = bytes(64, 3);
    let put = env
        .objects
        .presign_put(BUCKET, &key, "application/pdf", 64, None, &UrlWindow::starting_now(900))
        .await
        .unwrap();

    for name in ["content-type", "if-none-match", "x-amz-tagging"] {
        let mut headers = put.headers.clone();
        headers.remove(name);
        let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "without {name}: {body}");
    }
    for (name, other) in
        [("content-type", "text/html"), ("if-none-match", "\"0123\""), ("x-amz-tagging", "upload-state=done")]
    {
        let mut headers = put.headers.clone();
        headers.insert(name.to_owned(), other.to_owned());
        let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "{name}: {other}: {body}");
    }
    // An x-amz-* header the URL does not sign (S3: HeadersNotSigned).
    let mut headers = put.headers.clone();
    headers.insert("x-amz-meta-origin".into(), "cli".into());
    let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
    assert_eq!((status, code(&body)), (403, "AccessDenied"), "{body}");
    assert!(body.contains("<HeadersNotSigned>x-amz-meta-origin</HeadersNotSigned>"), "{body}");
    // The URL itself altered: another key, another expiry, another signature.
    let other_key = new_key();
    for url in [
        put.url.replace(key.as_str(), other_key.as_str()),
        put.url.replace("X-Amz-Expires=900", "X-Amz-Expires=901"),
        {
            let (rest, sig) = put.url.rsplit_once("X-Amz-Signature=").unwrap();
            let flipped = format!("{}{}", if sig.starts_with('0') { '1' } else { '0' }, &sig[1..]);
            format!("{rest}X-Amz-Signature={flipped}")
        },
    ] {
        assert_ne!(url, put.url);
        let (status, body) = send_with(&env, &url, &put.headers, data.clone()).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "{url}: {body}");
    }
    // No signature at all: S3 has no anonymous writes here either.
    let unsigned = put.url.split_once('?').unwrap().0;
    let (status, body) = send_with(&env, unsigned, &put.headers, data.clone()).await;
    assert_eq!((status, code(&body)), (403, "AccessDenied"), "{body}");
    assert!(!exists(&env, &key).await && !exists(&env, &other_key).await, "no refused PUT stored anything");

    // A header that is neither signed nor x-amz-* is no part of the signature.
    let mut headers = put.headers.clone();
    headers.insert("x-client".into(), "upload-cli/1".into());
    let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(object_bytes(&env, &key).await, data);
}

// (c) -----------------------------------------------------------------------

#[tokio::test]
async fn an_expired_url_is_refused() {
    let env = env().await;
    let key = new_key();
    let data = bytes(10, 4);
    let put = env.objects.presign_put(BUCKET, &key, "text/plain", 10, None, &UrlWindow::starting_now(1)).await.unwrap();
    assert!(put.url.contains("X-Amz-Expires=1&"), "{}", put.url);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = send(&env, &put, data.clone()).await;
    assert_eq!((status, code(&body)), (403, "AccessDenied"), "{body}");
    assert!(body.contains("Request has expired"), "{body}");
    assert!(!exists(&env, &key).await);

    // Only the expiry was wrong: a URL of the same PUT that is still valid works.
    let fresh =
        env.objects.presign_put(BUCKET, &key, "text/plain", 10, None, &UrlWindow::starting_now(900)).await.unwrap();
    assert_eq!(send(&env, &fresh, data.clone()).await.0, 200);

    let get = env.objects.presign_get(BUCKET, &key, "a.txt", "text/plain", &UrlWindow::starting_now(1)).await.unwrap();
    assert_eq!(env.http.get(&get.url).send().await.unwrap().status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = env.http.get(&get.url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(code(&resp.text().await.unwrap()), "AccessDenied");
}

// (d) -----------------------------------------------------------------------

#[tokio::test]
async fn another_length_is_refused_and_only_a_checksum_catches_other_bytes_of_the_same_length() {
    let env = env().await;
    let key = new_key();
    let data = bytes(4096, 5);
    let put = env
        .objects
        .presign_put(BUCKET, &key, "application/octet-stream", 4096, None, &UrlWindow::starting_now(900))
        .await
        .unwrap();
    for len in [4095, 4097, 0] {
        // The client sends the length of what it sends: not the signed one.
        let mut headers = put.headers.clone();
        headers.insert("content-length".into(), len.to_string());
        let (status, body) = send_with(&env, &put.url, &headers, bytes(len, 5)).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "{len} bytes: {body}");
    }
    assert!(!exists(&env, &key).await);

    // Content-MD5 is no part of our URLs, but a client may add it (it is
    // not an x-amz-* header), and the server checks it.
    let mut headers = put.headers.clone();
    headers.insert("content-md5".into(), "1B2M2Y8AsgTpgAmY7PhCfg==".into()); // MD5 of nothing
    let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
    assert_eq!((status, code(&body)), (400, "BadDigest"), "{body}");
    assert!(!exists(&env, &key).await, "a refused body is not stored");

    // Other bytes of the signed length pass the signature (a presigned URL
    // signs no payload): S3 stores them too. Hence the checksums, tested below.
    let other = bytes(4096, 6);
    assert_eq!(send(&env, &put, other.clone()).await.0, 200);
    assert_eq!(object_bytes(&env, &key).await, other);
}

// (e) -----------------------------------------------------------------------

#[tokio::test]
async fn presigned_parts_complete_and_a_presigned_get_reads_the_bytes_back() {
    let env = env().await;
    let key = new_key();
    let sizes = [5 * MIB, 5 * MIB, 1000];
    let data = bytes(sizes.iter().sum(), 7);
    let id = env.objects.create_multipart(BUCKET, &key, "text/plain", None).await.unwrap();

    let mut offset = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let n = i as u32 + 1;
        let put = env
            .objects
            .presign_part(BUCKET, &key, &id, n, size as u64, None, &UrlWindow::starting_now(900))
            .await
            .unwrap();
        let names: Vec<&str> = put.headers.keys().map(String::as_str).collect();
        assert_eq!(names, ["content-length"], "part {n}");
        let chunk = data[offset..offset + size].to_vec();
        // Another length than the signed one is refused, part by part.
        let mut headers = put.headers.clone();
        headers.insert("content-length".into(), (size - 1).to_string());
        let (status, body) = send_with(&env, &put.url, &headers, chunk[1..].to_vec()).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "part {n}: {body}");
        let (status, body) = send(&env, &put, chunk).await;
        assert_eq!(status, 200, "part {n}: {body}");
        offset += size;
    }

    let parts = env.objects.list_parts(BUCKET, &key, &id).await.unwrap().expect("upload is listed");
    assert_eq!(
        parts.iter().map(|p| (p.part_number, p.size as usize)).collect::<Vec<_>>(),
        [(1, sizes[0]), (2, sizes[1]), (3, sizes[2])]
    );
    assert!(parts.iter().all(|p| !p.e_tag.is_empty()));

    // A part list naming an ETag S3 does not hold is refused.
    let mut forged = parts.clone();
    forged[1].e_tag = "\"00000000000000000000000000000000\"".into();
    assert!(env.objects.complete_multipart(BUCKET, &key, &id, &forged, |_| None).await.is_err());

    assert_eq!(
        env.objects.complete_multipart(BUCKET, &key, &id, &parts, |_| None).await.unwrap(),
        Completion::Completed
    );
    assert_eq!(
        env.objects.complete_multipart(BUCKET, &key, &id, &parts, |_| None).await.unwrap(),
        Completion::Gone,
        "done already"
    );
    assert_eq!(env.objects.list_parts(BUCKET, &key, &id).await.unwrap(), None, "NoSuchUpload once completed");
    assert_eq!(object_bytes(&env, &key).await, data);
    assert_eq!(tags(&env, &key).await, [("upload-state".to_owned(), "pending".to_owned())]);
    // A part URL of the completed upload writes nothing any more.
    let late = env.objects.presign_part(BUCKET, &key, &id, 1, 10, None, &UrlWindow::starting_now(900)).await.unwrap();
    let (status, body) = send(&env, &late, bytes(10, 0)).await;
    assert_eq!((status, code(&body)), (404, "NoSuchUpload"), "{body}");

    let filename = "Grüße \"Q3\" 100%.txt";
    let get = env
        .objects
        .presign_get(BUCKET, &key, filename, "text/plain; charset=utf-8", &UrlWindow::starting_now(900))
        .await
        .unwrap();
    let resp = env.http.get(&get.url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-disposition"].to_str().unwrap(), attachment_disposition(filename));
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
    // Its disposition is signed: another one is refused.
    let altered = get.url.replace("response-content-disposition=attachment", "response-content-disposition=inline");
    assert_ne!(altered, get.url);
    let resp = env.http.get(&altered).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(code(&resp.text().await.unwrap()), "SignatureDoesNotMatch");
}

// (f) -----------------------------------------------------------------------

#[tokio::test]
async fn a_signed_checksum_refuses_other_bytes_of_a_single_put() {
    let env = env().await;
    for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Crc32c] {
        let header = format!("x-amz-checksum-{}", algorithm.as_str().to_ascii_lowercase());
        let key = new_key();
        let data = bytes(3000, 8);
        let checksum = put_checksum(algorithm, &data);
        let put = env
            .objects
            .presign_put(BUCKET, &key, "application/octet-stream", 3000, Some(&checksum), &UrlWindow::starting_now(900))
            .await
            .unwrap();
        assert_eq!(put.headers.get(&header), Some(&checksum.value), "{algorithm:?}: {:?}", put.headers);

        let mut altered = data.clone();
        altered[1234] ^= 1;
        let (status, body) = send(&env, &put, altered).await;
        assert_eq!((status, code(&body)), (400, "BadDigest"), "{algorithm:?}: {body}");
        assert!(!exists(&env, &key).await, "{algorithm:?}: a refused body is not stored");

        // The checksum is signed: leaving it out, or sending the altered
        // bytes' own checksum, breaks the signature.
        let mut headers = put.headers.clone();
        headers.remove(&header);
        let (status, body) = send_with(&env, &put.url, &headers, data.clone()).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "{algorithm:?}: {body}");
        let mut other = data.clone();
        other[0] ^= 1;
        headers.insert(header.clone(), put_checksum(algorithm, &other).value);
        let (status, body) = send_with(&env, &put.url, &headers, other).await;
        assert_eq!((status, code(&body)), (403, "SignatureDoesNotMatch"), "{algorithm:?}: {body}");

        let (status, body) = send(&env, &put, data.clone()).await;
        assert_eq!(status, 200, "{algorithm:?}: {body}");
        assert_eq!(object_bytes(&env, &key).await, data);
        let stored = env.objects.object(BUCKET, &key, Some(algorithm)).await.unwrap().unwrap();
        assert_eq!(stored.checksum.as_deref(), Some(checksum.value.as_str()), "{algorithm:?}: S3 keeps the checksum");
    }
}

#[tokio::test]
async fn a_signed_checksum_refuses_other_bytes_of_a_part_and_the_object_gets_the_composite() {
    let env = env().await;
    for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Crc32c] {
        let header = format!("x-amz-checksum-{}", algorithm.as_str().to_ascii_lowercase());
        let key = new_key();
        let data = bytes(5 * MIB + 777, 9);
        let chunks: Vec<&[u8]> = data.chunks(5 * MIB).collect();
        let declared = Checksums::of_parts(algorithm, chunks.iter().copied());
        let id = env.objects.create_multipart(BUCKET, &key, "application/octet-stream", Some(algorithm)).await.unwrap();

        for (i, chunk) in chunks.iter().enumerate() {
            let n = i as u32 + 1;
            let checksum = PutChecksum::of(Some(&declared), n).unwrap();
            let put = env
                .objects
                .presign_part(BUCKET, &key, &id, n, chunk.len() as u64, Some(&checksum), &UrlWindow::starting_now(900))
                .await
                .unwrap();
            assert_eq!(put.headers.get(&header), Some(&checksum.value), "{algorithm:?} part {n}");
            let mut altered = chunk.to_vec();
            altered[chunk.len() / 2] ^= 0x80;
            let (status, body) = send(&env, &put, altered).await;
            assert_eq!((status, code(&body)), (400, "BadDigest"), "{algorithm:?} part {n}: {body}");
            let held = env.objects.list_parts(BUCKET, &key, &id).await.unwrap().unwrap();
            assert!(held.iter().all(|p| p.part_number != n), "{algorithm:?}: a refused part is not stored");
            let (status, body) = send(&env, &put, chunk.to_vec()).await;
            assert_eq!(status, 200, "{algorithm:?} part {n}: {body}");
        }

        let parts: Vec<StoredPart> = env.objects.list_parts(BUCKET, &key, &id).await.unwrap().unwrap();
        let listed: Vec<Option<String>> = parts.iter().map(|p| p.checksum.clone()).collect();
        assert_eq!(listed, [declared.part(1), declared.part(2)], "{algorithm:?}: ListParts gives each part's checksum");
        // S3 wants each part's checksum in the completion of such an upload.
        assert!(env.objects.complete_multipart(BUCKET, &key, &id, &parts, |_| None).await.is_err());
        assert_eq!(
            env.objects
                .complete_multipart(BUCKET, &key, &id, &parts, |n| PutChecksum::of(Some(&declared), n))
                .await
                .unwrap(),
            Completion::Completed
        );
        assert_eq!(object_bytes(&env, &key).await, data);
        let stored = env.objects.object(BUCKET, &key, Some(algorithm)).await.unwrap().unwrap();
        assert_eq!(
            stored.checksum,
            Some(declared.object_value(ChecksumType::Composite)),
            "{algorithm:?}: the object carries S3's composite checksum"
        );
    }
}

// Browsers ---------------------------------------------------------------

/// The CORS rules `template.yaml` gives the uploads bucket.
fn template_cors_rules() -> Vec<CorsRule> {
    // Resolved as the stack resolves them, with the parameters' defaults
    // (AllowedOrigins is the API's CorsAllowOrigin, `*` by default).
    let stack = local::stack::Stack::unprovisioned("t").unwrap();
    let (_, bucket) = stack.template.of_kind("AWS::S3::Bucket").next().expect("a bucket");
    let rules = bucket.properties.get("CorsConfiguration").and_then(|c| c.get("CorsRules")).expect("CORS rules");
    let list = |rule: &serde_yaml::Value, name: &str| -> Vec<String> {
        rule.get(name)
            .and_then(|v| v.as_sequence())
            .map(|s| s.iter().filter_map(|v| stack.resolve(v).ok()).collect())
            .unwrap_or_default()
    };
    rules
        .as_sequence()
        .unwrap()
        .iter()
        .map(|r| {
            CorsRule::builder()
                .set_allowed_methods(Some(list(r, "AllowedMethods")))
                .set_allowed_origins(Some(list(r, "AllowedOrigins")))
                .set_allowed_headers(Some(list(r, "AllowedHeaders")))
                .set_expose_headers(Some(list(r, "ExposedHeaders")))
                .set_max_age_seconds(r.get("MaxAge").and_then(|v| v.as_i64()).map(|v| v as i32))
                .build()
                .unwrap()
        })
        .collect()
}

#[tokio::test]
async fn a_browser_may_send_the_listed_headers_under_the_templates_cors_rules() {
    let env = env().await;
    let key = new_key();
    let data = bytes(100, 10);
    let checksum = put_checksum(ChecksumAlgorithm::Sha256, &data);
    let put = env
        .objects
        .presign_put(BUCKET, &key, "image/png", 100, Some(&checksum), &UrlWindow::starting_now(900))
        .await
        .unwrap();
    // A browser sets Content-Length itself (a forbidden header) and asks
    // leave for the others.
    let asked: Vec<&str> = put.headers.keys().map(String::as_str).filter(|h| *h != "content-length").collect();
    let origin = "http://127.0.0.1:3000";
    let preflight = |origin: &str, method: &str| {
        env.http
            .request(reqwest::Method::OPTIONS, &put.url)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", asked.join(","))
            .send()
    };

    let resp = preflight(origin, "PUT").await.unwrap();
    assert_eq!(resp.status().as_u16(), 403, "no CORS configuration yet");

    let rules = template_cors_rules();
    env.s3
        .put_bucket_cors()
        .bucket(BUCKET)
        .cors_configuration(CorsConfiguration::builder().set_cors_rules(Some(rules)).build().unwrap())
        .send()
        .await
        .unwrap();
    let resp = preflight(origin, "PUT").await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert_eq!(h["access-control-allow-methods"], "PUT");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_owned();
    for name in &asked {
        assert!(allowed.split(", ").any(|a| a == *name), "{name} allowed: {allowed}");
    }
    assert_eq!(h["access-control-max-age"], "3600");
    assert_eq!(preflight(origin, "DELETE").await.unwrap().status().as_u16(), 403, "only PUT is allowed");

    let mut headers = put.headers.clone();
    headers.insert("origin".into(), origin.into());
    let mut req = env.http.put(&put.url).body(data.clone());
    for (k, v) in &headers {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.headers()["access-control-expose-headers"], "ETag", "the page can read the part's ETag");
    assert!(resp.headers().contains_key("etag"));
    assert_eq!(object_bytes(&env, &key).await, data);
    drop(env.server);
}

// The local stack ------------------------------------------------------------

/// What the local stack needs to put its S3 calls here instead of moto:
/// every function signs with its logical id as access key id and one
/// secret (`Stack::function_env`), and provisioning sets the bucket's
/// lifecycle rules.
#[tokio::test]
async fn any_key_id_signs_with_the_shared_secret_and_nothing_else() {
    let server = VerifyingS3::start_with(Signers::AnyKeyId("testing".into())).await.unwrap();
    let create = server.client_as("CreateUpload", "testing");
    create.create_bucket().bucket(BUCKET).send().await.unwrap();
    let rule = LifecycleRule::builder()
        .id("abort-incomplete")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("uploads/").build())
        .abort_incomplete_multipart_upload(AbortIncompleteMultipartUpload::builder().days_after_initiation(1).build())
        .build()
        .unwrap();
    create
        .put_bucket_lifecycle_configuration()
        .bucket(BUCKET)
        .lifecycle_configuration(BucketLifecycleConfiguration::builder().rules(rule).build().unwrap())
        .send()
        .await
        .unwrap();
    let cleanup = server.client_as("Cleanup", "testing");
    let rules = cleanup.get_bucket_lifecycle_configuration().bucket(BUCKET).send().await.unwrap();
    assert_eq!(rules.rules().len(), 1);
    let key = new_key();
    let put = Objects::new(create)
        .presign_put(BUCKET, &key, "text/plain", 3, None, &UrlWindow::starting_now(900))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let mut req = http.put(&put.url).body(b"abc".to_vec());
    for (k, v) in &put.headers {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 200);
    let err = server.client_as("Cleanup", "not-the-secret").head_bucket().bucket(BUCKET).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
}
