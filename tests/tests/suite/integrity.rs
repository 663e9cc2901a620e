//! End-to-end integrity: a client that knows its bytes' checksums declares
//! them at create (SHA-256 or CRC32C, the whole object's for a single `PUT`,
//! each part's for multipart); each is signed into its presigned `PUT`, the
//! confirm checks what S3 holds against them, and the upload's view reports
//! the object's checksum as S3 gives it. Every function runs as its binary
//! behind the local API Gateway.
//!
//! Each test runs twice: with the bucket in moto, and in the verifying local
//! S3 (`local::s3verify`, as `TestStack::with_verifying_s3`), which checks
//! every signature, presigned URLs included, and computes the checksums.
//! moto checks no signature and computes no checksum (it stores the one a
//! client claims, and reports none for parts): there the tests show what
//! the service signs, stores, reports and refuses; against the verifying S3
//! they show that S3 itself refuses other bytes under those URLs, and that
//! the flow a client follows works when every signature is checked.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::{ApiKey, ChecksumAlgorithm, Digests, OwnerId, UploadId};
use tests::{bytes, put_parts, LocalApi, TestStack, MIB, S3};

struct Api {
    t: TestStack,
    api: LocalApi,
}

impl Api {
    async fn start(s3: S3) -> Self {
        let t = TestStack::on(s3).await;
        let api = LocalApi::start(&t).await;
        Api { t, api }
    }

    async fn send(&self, method: Method, path: &str, key: &ApiKey, body: Option<Value>) -> (u16, Value) {
        self.api.send(method, path, key, body).await
    }

    async fn usage(&self, owner: &OwnerId) -> (u64, u64) {
        let u = self.t.store.usage(owner).await.unwrap();
        (u.used, u.reserved)
    }
}

fn b64(algorithm: ChecksumAlgorithm, data: &[u8]) -> String {
    STANDARD.encode(algorithm.digest(data))
}

/// The header each `PUT` of `upload` carries for `name`.
fn header<'a>(upload: &'a Value, name: &str) -> Vec<Option<&'a str>> {
    upload["parts"].as_array().unwrap().iter().map(|p| p["headers"][name].as_str()).collect()
}

#[tokio::test]
async fn a_single_put_declared_with_sha256_is_signed_confirmed_and_reported() {
    a_single_put_declared_with_sha256_is_signed_confirmed_and_reported_on(S3::Moto).await;
}

#[tokio::test]
async fn a_single_put_declared_with_sha256_is_signed_confirmed_and_reported_against_a_verifying_s3() {
    a_single_put_declared_with_sha256_is_signed_confirmed_and_reported_on(S3::Verifying).await;
}

async fn a_single_put_declared_with_sha256_is_signed_confirmed_and_reported_on(s3: S3) {
    let a = Api::start(s3).await;
    let (owner, key) = a.t.owner("integrity-single").await;
    let data = bytes(70_000, 1);
    let sum = b64(ChecksumAlgorithm::Sha256, &data);
    let body = json!({"filename": "a.bin", "content_type": "application/octet-stream", "size": data.len(),
                      "checksum_algorithm": "SHA256", "checksums": [sum]});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let expected = json!({"algorithm": "SHA256", "type": "FULL_OBJECT", "value": sum, "part_size": data.len()});
    assert_eq!(created["checksum"], expected);
    assert_eq!(header(&created["upload"], "x-amz-checksum-sha256"), [Some(sum.as_str())]);
    assert_eq!(header(&created["upload"], "x-amz-sdk-checksum-algorithm"), [Some("SHA256")]);

    // Stored with the session: the digest, raw.
    let id = UploadId::parse(created["upload_id"].as_str().unwrap()).unwrap();
    let session = a.t.store.get_session(&owner, &id).await.unwrap().unwrap();
    let stored = session.checksums.as_ref().expect("checksums stored");
    assert_eq!((stored.algorithm(), stored.stored()), (ChecksumAlgorithm::Sha256, Sha256::digest(&data).as_slice()));

    assert_eq!(put_parts(&created["upload"], &data, None).await, [200]);
    let head =
        a.t.s3
            .head_object()
            .bucket(&a.t.config.bucket_name)
            .key(session.object_key.as_str())
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert_eq!(head.checksum_sha256(), Some(sum.as_str()), "the object carries the checksum it was sent with");

    let (status, confirmed) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("completed")), "{confirmed}");
    assert_eq!(confirmed["checksum"], expected);
    let (status, view) = a.send(Method::GET, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(view["checksum"], expected);
    assert!(view["download"]["url"].is_string());
    assert_eq!(a.usage(&owner).await, (data.len() as u64, 0));

    // A list shows what every session has in common: no checksum.
    let (_, page) = a.send(Method::GET, "/uploads", &key, None).await;
    assert!(page["uploads"][0].get("checksum").is_none(), "{page}");

    // Declaring nothing keeps working as before: no checksum anywhere.
    let plain = json!({"filename": "b.bin", "content_type": "application/octet-stream", "size": 10});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(plain)).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("checksum").is_none(), "{created}");
    let headers = created["upload"]["parts"][0]["headers"].as_object().unwrap();
    assert!(!headers.keys().any(|h| h.contains("checksum")), "{headers:?}");
}

/// S3 refuses other bytes under the signed checksum; should an object ever
/// carry another checksum all the same (moto takes whatever checksum a
/// client claims), confirm refuses it, and the session stays as it was:
/// pending, its size reserved, deletable.
#[tokio::test]
async fn confirm_refuses_an_object_whose_checksum_is_not_the_declared_one() {
    let a = Api::start(S3::Moto).await;
    let (owner, key) = a.t.owner("integrity-mismatch").await;
    let data = bytes(4096, 2);
    let other = bytes(4096, 3);
    let body = json!({"filename": "a.bin", "content_type": "application/octet-stream", "size": data.len(),
                      "checksum_algorithm": "CRC32C", "checksums": [b64(ChecksumAlgorithm::Crc32c, &data)]});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["upload_id"].as_str().unwrap().to_owned();

    // Other bytes, with their own checksum instead of the signed one.
    let mut upload = created["upload"].clone();
    upload["parts"][0]["headers"]["x-amz-checksum-crc32c"] = json!(b64(ChecksumAlgorithm::Crc32c, &other));
    assert_eq!(put_parts(&upload, &other, None).await, [200]);

    for _ in 0..2 {
        let (status, refused) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
        assert_eq!((status, refused["error"].as_str()), (409, Some("Upload checksum mismatch")), "{refused}");
    }
    let session = a.t.store.get_session(&owner, &UploadId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(session.status, shared::domain::Status::Pending);
    assert_eq!(a.usage(&owner).await, (0, data.len() as u64), "still reserved, never used");
    assert_eq!(a.t.object_tags(&session.object_key).await.len(), 1, "still tagged pending: the backstop keeps it");

    let (status, _) = a.send(Method::DELETE, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!(status, 200);
    a.t.drain_cleanup().await;
    assert_eq!(a.usage(&owner).await, (0, 0));
    assert!(a.t.all_keys().await.is_empty());
}

#[tokio::test]
async fn a_multipart_upload_declared_per_part_is_resumed_with_its_checksums_and_reports_the_composite() {
    a_multipart_upload_declared_per_part_is_resumed_with_its_checksums_and_reports_the_composite_on(S3::Moto).await;
}

#[tokio::test]
async fn a_multipart_upload_declared_per_part_is_resumed_with_its_checksums_and_reports_the_composite_against_a_verifying_s3(
) {
    a_multipart_upload_declared_per_part_is_resumed_with_its_checksums_and_reports_the_composite_on(S3::Verifying)
        .await;
}

async fn a_multipart_upload_declared_per_part_is_resumed_with_its_checksums_and_reports_the_composite_on(s3: S3) {
    let a = Api::start(s3).await;
    let (owner, key) = a.t.owner("integrity-multipart").await;
    let part_size = 5 * MIB;
    let data = bytes(2 * part_size + 1234, 4);
    let parts: Vec<&[u8]> = data.chunks(part_size).collect();
    let sums: Vec<String> = parts.iter().map(|p| b64(ChecksumAlgorithm::Sha256, p)).collect();
    let body = json!({"filename": "big.bin", "content_type": "application/octet-stream", "size": data.len(),
                      "part_size": part_size, "checksum_algorithm": "SHA256", "checksums": sums});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["upload"]["type"].as_str(), created["upload"]["part_count"].as_u64()),
        (Some("multipart"), Some(3)),
        "the client's part size decides the plan"
    );
    let want: Vec<Option<&str>> = sums.iter().map(|s| Some(s.as_str())).collect();
    assert_eq!(header(&created["upload"], "x-amz-checksum-sha256"), want);

    // S3's composite checksum, computed here from the parts themselves.
    let mut digests = Vec::new();
    for p in &parts {
        digests.extend(Sha256::digest(p));
    }
    let composite = format!("{}-3", STANDARD.encode(Sha256::digest(&digests)));
    let expected = json!({"algorithm": "SHA256", "type": "COMPOSITE", "value": composite, "part_size": part_size});
    assert_eq!(created["checksum"], expected);

    // Two parts, then a pause: the resume answer signs only part 3, with
    // its own checksum.
    assert_eq!(put_parts(&created["upload"], &data, Some(&[1, 2])).await, [200, 200]);
    let id = created["upload_id"].as_str().unwrap().to_owned();
    let (status, resumed) = a.send(Method::POST, &format!("/uploads/{id}/resume"), &key, None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["upload"]["parts_received"], json!([1, 2]));
    assert_eq!(header(&resumed["upload"], "x-amz-checksum-sha256"), [Some(sums[2].as_str())]);
    assert_eq!(resumed["checksum"], expected);
    assert_eq!(put_parts(&resumed["upload"], &data, None).await, [200]);

    let (status, confirmed) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("completed")), "{confirmed}");
    assert_eq!(confirmed["checksum"], expected);
    assert!(a.api.download(&key, &id).await == data, "the bytes read back are the bytes sent");
    assert_eq!(a.usage(&owner).await, (data.len() as u64, 0));
}

/// A create the plan or the checksums make invalid is a 400 that writes
/// nothing: no session, no reservation, no multipart upload.
#[tokio::test]
async fn invalid_plans_and_checksums_are_refused_before_anything_is_written() {
    invalid_plans_and_checksums_are_refused_before_anything_is_written_on(S3::Moto).await;
}

#[tokio::test]
async fn invalid_plans_and_checksums_are_refused_before_anything_is_written_against_a_verifying_s3() {
    invalid_plans_and_checksums_are_refused_before_anything_is_written_on(S3::Verifying).await;
}

async fn invalid_plans_and_checksums_are_refused_before_anything_is_written_on(s3: S3) {
    let a = Api::start(s3).await;
    let (owner, key) = a.t.owner("integrity-invalid").await;
    let sha = b64(ChecksumAlgorithm::Sha256, b"x");
    let size = 20 * MIB;
    let cases = [
        (json!({"part_size": 1024}), "Invalid part_size"),
        (json!({"part_size": 5 * MIB, "checksum_algorithm": "SHA256", "checksums": [sha, sha]}), "Invalid checksums"),
        (json!({"part_size": 5 * MIB, "checksum_algorithm": "MD5", "checksums": [sha]}), "Invalid checksum_algorithm"),
        (json!({"checksums": [sha]}), "Invalid checksum_algorithm"),
        (json!({"part_size": 32 * MIB, "checksum_algorithm": "CRC32C", "checksums": [sha]}), "Invalid checksums"),
    ];
    for (extra, error) in cases {
        let mut body = json!({"filename": "a.bin", "content_type": "application/octet-stream", "size": size});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let (status, refused) = a.send(Method::POST, "/uploads", &key, Some(body.clone())).await;
        assert_eq!((status, refused["error"].as_str()), (400, Some(error)), "{body}");
    }
    assert!(a.t.all_sessions(&owner).await.is_empty());
    assert_eq!(a.usage(&owner).await, (0, 0));
    let uploads = a.t.s3.list_multipart_uploads().bucket(&a.t.config.bucket_name).send().await.unwrap();
    assert!(uploads.uploads().is_empty());
}

/// Against an S3 that computes checksums: a part whose bytes were altered
/// on the way is refused by S3 itself (400 `BadDigest`) and stored nowhere,
/// so does a part sent with another checksum than the signed one (403);
/// the resume route offers the part again, and the right bytes complete
/// the upload. A single `PUT` of altered bytes leaves no object: confirm
/// says the bytes are missing.
#[tokio::test]
async fn altered_bytes_are_refused_by_s3_and_the_part_is_sent_again() {
    let a = Api::start(S3::Verifying).await;
    let (owner, key) = a.t.owner("integrity-altered").await;
    let part_size = 5 * MIB;
    let data = bytes(part_size + 4321, 5);
    let sums: Vec<String> = data.chunks(part_size).map(|p| b64(ChecksumAlgorithm::Sha256, p)).collect();
    let body = json!({"filename": "a.bin", "content_type": "application/octet-stream", "size": data.len(),
                      "part_size": part_size, "checksum_algorithm": "SHA256", "checksums": sums});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["upload_id"].as_str().unwrap().to_owned();

    let mut altered = data.clone();
    altered[1000] ^= 0x01;
    assert_eq!(put_parts(&created["upload"], &altered, Some(&[1])).await, [400], "S3 refuses the altered part");
    let mut swapped = created["upload"].clone();
    swapped["parts"][0]["headers"]["x-amz-checksum-sha256"] =
        json!(b64(ChecksumAlgorithm::Sha256, &altered[..part_size]));
    assert_eq!(put_parts(&swapped, &altered, Some(&[1])).await, [403], "the checksum is signed");
    assert_eq!(put_parts(&created["upload"], &data, Some(&[2])).await, [200]);

    let (status, resumed) = a.send(Method::POST, &format!("/uploads/{id}/resume"), &key, None).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["upload"]["parts_received"], json!([2]), "nothing of the altered part was kept");
    let (status, refused) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("Upload bytes missing")), "{refused}");
    assert_eq!(put_parts(&resumed["upload"], &data, None).await, [200]);
    let (status, confirmed) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!((status, confirmed["status"].as_str()), (200, Some("completed")), "{confirmed}");
    assert!(a.api.download(&key, &id).await == data);
    assert_eq!(a.usage(&owner).await, (data.len() as u64, 0));

    // A single PUT of altered bytes: refused, no object, bytes missing.
    let small = bytes(1000, 6);
    let body = json!({"filename": "b.bin", "content_type": "application/octet-stream", "size": small.len(),
                      "checksum_algorithm": "CRC32C", "checksums": [b64(ChecksumAlgorithm::Crc32c, &small)]});
    let (status, created) = a.send(Method::POST, "/uploads", &key, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let mut altered = small.clone();
    altered[0] ^= 0x80;
    assert_eq!(put_parts(&created["upload"], &altered, None).await, [400]);
    let id = created["upload_id"].as_str().unwrap();
    let (status, refused) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!((status, refused["error"].as_str()), (409, Some("Upload bytes missing")), "{refused}");
    assert_eq!(put_parts(&created["upload"], &small, None).await, [200]);
    let (status, confirmed) = a.send(Method::POST, &format!("/uploads/{id}/confirm"), &key, None).await;
    assert_eq!(
        (status, confirmed["checksum"]["value"].as_str()),
        (200, Some(b64(ChecksumAlgorithm::Crc32c, &small).as_str()))
    );
}
