//! Downloads: `GET /uploads/{upload_id}` of a completed upload hands out a
//! presigned `GET` of its bytes, with its expiry and the filename given back
//! through `Content-Disposition`; a pending upload has none, another
//! owner's is a 404. Every function runs as its binary behind the local API
//! Gateway; the URLs are fetched as a client would, with nothing but the URL.
//!
//! moto 5.1.22 does not honour `response-content-disposition` (nor
//! `response-content-type`): it answers a presigned `GET` with the headers
//! stored with the object. So the disposition is checked where it is signed,
//! in the URL's query string, exactly; and should moto (or S3) send the
//! header, it must be that same value.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};
use shared::domain::{ApiKey, ObjectKey, Timestamp, UploadId};
use tests::{bytes, put_parts, LocalApi, TestStack, MIB};

/// The URL lifetime these stacks run with: not the default, so the test
/// shows the setting is the one used.
const TTL: i64 = 600;

/// Spaces, quotes, a backslash, a percent sign and non-ASCII.
const FILENAME: &str = "Q3 \"final\" report\\draft 100% – Grüße ☀.txt";
/// What `Content-Disposition` must say for it (RFC 6266, RFC 8187): an
/// ASCII fallback with `"`, `\`, `%` and non-ASCII replaced, then the exact
/// name as UTF-8, percent-encoded.
const DISPOSITION: &str = "attachment; filename=\"Q3 _final_ report_draft 100_ _ Gr__e _.txt\"; \
                           filename*=UTF-8''Q3%20%22final%22%20report%5Cdraft%20100%25%20%E2%80%93%20Gr%C3%BC%C3%9Fe%20%E2%98%80.txt";

struct Api {
    t: TestStack,
    api: LocalApi,
    http: reqwest::Client,
}

impl Api {
    async fn start(overrides: &[(&str, &str)]) -> Self {
        let ttl = TTL.to_string();
        let mut parameters = vec![("PresignedUrlTtlSeconds", ttl.as_str())];
        parameters.extend_from_slice(overrides);
        let t = TestStack::with_parameters(&parameters).await;
        let api = LocalApi::start(&t).await;
        Api { t, api, http: reqwest::Client::new() }
    }

    async fn send(&self, method: Method, path: &str, key: &ApiKey, body: Option<Value>) -> (u16, Value) {
        self.api.send(method, path, key, body).await
    }

    /// Creates an upload of `data` as `filename`, sends its bytes through
    /// the presigned URLs, and confirms it. Returns the upload id.
    async fn complete(&self, key: &ApiKey, filename: &str, content_type: &str, data: &[u8]) -> String {
        let new = json!({"filename": filename, "content_type": content_type, "size": data.len()});
        let (status, created) = self.send(Method::POST, "/uploads", key, Some(new)).await;
        assert_eq!(status, 201, "{created}");
        let id = created["upload_id"].as_str().unwrap().to_owned();

        let (status, pending) = self.send(Method::GET, &format!("/uploads/{id}"), key, None).await;
        assert_eq!((status, pending["status"].as_str()), (200, Some("pending")), "{pending}");
        assert!(pending.get("download").is_none(), "no download while pending: {pending}");

        assert!(put_parts(&created["upload"], data, None).await.iter().all(|s| *s == 200));
        let (status, confirmed) = self.send(Method::POST, &format!("/uploads/{id}/confirm"), key, None).await;
        assert_eq!((status, confirmed["status"].as_str()), (200, Some("completed")), "{confirmed}");
        id
    }
}

/// The query parameters of `url`, decoded.
fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// `X-Amz-Date` (`20261123T021549Z`) as a timestamp.
fn amz_date(d: &str) -> Timestamp {
    let rfc3339 = format!("{}-{}-{}T{}:{}:{}Z", &d[0..4], &d[4..6], &d[6..8], &d[9..11], &d[11..13], &d[13..15]);
    Timestamp::parse(&rfc3339).unwrap()
}

#[tokio::test]
async fn a_completed_upload_reads_back_through_its_download_url() {
    let a = Api::start(&[]).await;
    let (owner, key) = a.t.owner("downloader").await;
    let data = bytes(200_000, 12);
    let id = a.complete(&key, FILENAME, "text/plain; charset=utf-8", &data).await;

    let before = Timestamp::now();
    let (status, body) = a.send(Method::GET, &format!("/uploads/{id}"), &key, None).await;
    let after = Timestamp::now();
    assert_eq!((status, body["status"].as_str()), (200, Some("completed")), "{body}");
    assert!(body.get("upload").is_none(), "{body}");
    let download = &body["download"];
    assert_eq!(download["method"], "GET", "{body}");
    let url = download["url"].as_str().expect("a URL");

    // The expiry stated is the URL's own, the configured lifetime after it
    // was signed, during the request.
    let expires_at = Timestamp::parse(download["expires_at"].as_str().unwrap()).expect("a timestamp");
    let q = query(url);
    assert_eq!(q["X-Amz-Expires"], TTL.to_string());
    let signed_at = amz_date(&q["X-Amz-Date"]);
    assert_eq!(expires_at, signed_at.plus_seconds(TTL), "expires_at is exactly when the URL stops working");
    assert!(before.unix_seconds() <= signed_at.unix_seconds() && signed_at <= after, "signed during the request");

    // Signed into the URL: the filename as an attachment, the content type;
    // only `host` is a signed header, so the URL is all a client needs.
    assert_eq!(q["response-content-disposition"], DISPOSITION);
    assert_eq!(q["response-content-type"], "text/plain; charset=utf-8");
    assert_eq!(q["X-Amz-SignedHeaders"], "host");
    assert!(!url.contains(key.expose()));

    // Fetched with nothing but the URL: the bytes, exactly.
    let r = a.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let headers = r.headers().clone();
    let got = r.bytes().await.unwrap();
    assert!(got.len() == data.len() && got[..] == data[..], "the bytes read back are the bytes sent");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    // moto does not apply response-content-disposition (see the module's
    // doc); S3 does, and then the header is the signed value, byte for byte.
    if let Some(d) = headers.get("content-disposition") {
        assert_eq!(d, DISPOSITION);
    }

    // Each read signs afresh, and a second URL reads the same bytes.
    let (_, again) = a.send(Method::GET, &format!("/uploads/{id}"), &key, None).await;
    let again = again["download"]["url"].as_str().unwrap().to_owned();
    let got = a.http.get(&again).send().await.unwrap().bytes().await.unwrap();
    assert!(got[..] == data[..]);

    // Another owner learns nothing: a 404 without a download.
    let (_, mallory) = a.t.owner("mallory").await;
    let (status, body) = a.send(Method::GET, &format!("/uploads/{id}"), &mallory, None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("Upload not found")));
    assert!(body.get("download").is_none());

    // Deleted: once cleanup has run, a URL handed out before reads nothing.
    let (status, _) = a.send(Method::DELETE, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!(status, 200);
    a.t.drain_cleanup().await;
    let object = ObjectKey::for_upload(&owner, &UploadId::parse(&id).unwrap());
    assert!(!a.t.object_exists(&object).await, "cleanup removed the object");
    // S3 answers 404 (GetUpload may list the bucket); moto answers 403: for
    // a missing key it takes `response-content-type` in the query for a
    // signed `Content-Type` header the request lacks. Either way, no bytes.
    let r = a.http.get(url).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 403 | 404), "no bytes left behind the old URL: {}", r.status());
    assert!(r.bytes().await.unwrap().len() < data.len());
    let (status, body) = a.send(Method::GET, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!((status, body.get("download")), (404, None));
}

#[tokio::test]
async fn a_multipart_upload_reads_back_whole() {
    let part = (5 * MIB).to_string();
    let a = Api::start(&[("MultipartThresholdBytes", &part), ("PartSizeBytes", &part)]).await;
    let (_, key) = a.t.owner("parts").await;
    // Three parts, the last one short.
    let data = bytes(11 * MIB + 12_345, 34);
    let id = a.complete(&key, "scan 01.tiff", "image/tiff", &data).await;

    let (status, body) = a.send(Method::GET, &format!("/uploads/{id}"), &key, None).await;
    assert_eq!(status, 200, "{body}");
    let url = body["download"]["url"].as_str().expect("a URL");
    let q = query(url);
    assert_eq!(
        q["response-content-disposition"],
        "attachment; filename=\"scan 01.tiff\"; filename*=UTF-8''scan%2001.tiff"
    );
    assert_eq!(q["response-content-type"], "image/tiff");
    let r = a.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got = r.bytes().await.unwrap();
    assert!(got.len() == data.len() && got[..] == data[..], "the parts read back in order, whole");
}
