//! The client's transfer logic against a scripted stand-in for the API and
//! S3 on loopback, for what the emulator cannot be made to do: a part
//! answered 503, a URL refused as expired, a create answer with fewer URLs
//! than parts, a confirm answered 202, a download that breaks off halfway,
//! a download whose bytes do not match. (The real stack's behaviour is
//! tested in `tests/tests/client.rs`.)

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use uploads::api::Api;
use uploads::checksum::{composite, encode, Algorithm};
use uploads::cli::{ChecksumArg, GetArgs, PutArgs, ResumeArgs};
use uploads::commands::{self, Context};
use uploads::plan::MIB;
use uploads::ui::Ui;
use uploads::Error;

const ID: &str = "upl_0123456789abcdef0123456789abcdef";
const PART: u64 = 5 * MIB;
/// URLs per answer: fewer than the parts, so the client must page.
const URLS_PER_ANSWER: usize = 2;

#[derive(Default)]
struct Fake {
    base: String,
    size: u64,
    part_count: u64,
    /// The declared SHA-256 of each part.
    checksums: Vec<String>,
    stored: BTreeMap<u64, Vec<u8>>,
    /// URLs of older generations are "expired" for part 3.
    generation: u64,
    puts: HashMap<u64, u32>,
    resumes: u32,
    confirms: u32,
    downloads: Vec<Option<String>>,
    /// Serve other bytes than the declared checksum describes.
    corrupt: bool,
    /// Keep the declared checksums in the wrong order (so S3 refuses the
    /// parts' bytes).
    lie: bool,
    /// The URL generation whose URL for part 3 is "expired".
    expired: Option<u64>,
}

type Shared = Arc<Mutex<Fake>>;

impl Fake {
    fn view(&self, status: &str) -> Value {
        let digests: Vec<Vec<u8>> = self.checksums.iter().map(|c| base64_decode(c)).collect();
        json!({
            "upload_id": ID, "status": status, "filename": "data.bin",
            "content_type": "application/octet-stream", "size": self.size,
            "created_at": "2026-01-01T00:00:00.000Z",
            "expires_at": if status == "pending" { json!("2026-01-02T00:00:00.000Z") } else { Value::Null },
            "completed_at": if status == "pending" { Value::Null } else { json!("2026-01-01T00:01:00.000Z") },
            "checksum": {"algorithm": "SHA256", "type": "COMPOSITE", "value": composite(Algorithm::Sha256, &digests), "part_size": PART},
            "request_id": "r",
        })
    }

    /// Upload instructions for the missing parts, at most
    /// [`URLS_PER_ANSWER`] of them.
    fn instructions(&self) -> Value {
        let missing: Vec<u64> = (1..=self.part_count).filter(|n| !self.stored.contains_key(n)).collect();
        let parts: Vec<Value> = missing
            .iter()
            .take(URLS_PER_ANSWER)
            .map(|&n| {
                let size = PART.min(self.size - (n - 1) * PART);
                json!({
                    "part_number": n, "method": "PUT", "size": size,
                    "url": format!("{}/s3/{n}?g={}", self.base, self.generation),
                    "headers": {"content-length": size.to_string(), "x-amz-checksum-sha256": self.checksums[n as usize - 1]},
                })
            })
            .collect();
        json!({
            "type": "multipart", "part_size": PART, "part_count": self.part_count,
            "urls_expire_at": "2999-01-01T00:00:00.000Z", "parts": parts,
            "more_parts": missing.len() > URLS_PER_ANSWER,
            "parts_received": self.stored.keys().collect::<Vec<_>>(),
        })
    }

    fn object(&self) -> Vec<u8> {
        let mut all: Vec<u8> = self.stored.values().flatten().copied().collect();
        if self.corrupt {
            all[7] ^= 1;
        }
        all
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

async fn create(State(f): State<Shared>, Json(body): Json<Value>) -> Response {
    let mut f = f.lock().unwrap();
    f.size = body["size"].as_u64().unwrap();
    assert_eq!(body["part_size"], PART);
    assert_eq!(body["checksum_algorithm"], "SHA256");
    f.checksums = body["checksums"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    if f.lie {
        f.checksums.reverse();
    }
    f.part_count = f.size.div_ceil(PART);
    assert_eq!(f.checksums.len() as u64, f.part_count);
    let mut view = f.view("pending");
    view["upload"] = f.instructions();
    (StatusCode::CREATED, Json(view)).into_response()
}

async fn resume(State(f): State<Shared>) -> Json<Value> {
    let mut f = f.lock().unwrap();
    f.resumes += 1;
    f.generation += 1;
    let mut view = f.view("pending");
    view["upload"] = f.instructions();
    Json(view)
}

async fn put_part(
    State(f): State<Shared>,
    Path(n): Path<u64>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut f = f.lock().unwrap();
    let attempt = {
        let a = f.puts.entry(n).or_default();
        *a += 1;
        *a
    };
    if n == 2 && attempt == 1 {
        return (StatusCode::SERVICE_UNAVAILABLE, "<Error><Code>SlowDown</Code><Message>busy</Message></Error>")
            .into_response();
    }
    let generation: u64 = q["g"].parse().unwrap();
    if n == 3 && *f.expired.get_or_insert(generation) == generation {
        let expired = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
        return (StatusCode::FORBIDDEN, expired).into_response();
    }
    assert_eq!(headers["content-length"].to_str().unwrap(), body.len().to_string(), "part {n}");
    let declared = headers["x-amz-checksum-sha256"].to_str().unwrap();
    if declared != encode(&Algorithm::Sha256.digest(&body)) {
        let bad = "<Error><Code>BadDigest</Code><Message>The SHA256 you specified did not match</Message></Error>";
        return (StatusCode::BAD_REQUEST, bad).into_response();
    }
    f.stored.insert(n, body.to_vec());
    StatusCode::OK.into_response()
}

async fn confirm(State(f): State<Shared>) -> Response {
    let mut f = f.lock().unwrap();
    f.confirms += 1;
    if f.confirms == 1 {
        let mut view = f.view("pending");
        view["completion"] = json!("in_progress");
        return (StatusCode::ACCEPTED, [("retry-after", "1")], Json(view)).into_response();
    }
    assert_eq!(f.stored.len() as u64, f.part_count, "confirmed before every part was stored");
    Json(f.view("completed")).into_response()
}

async fn get_upload(State(f): State<Shared>) -> Json<Value> {
    let f = f.lock().unwrap();
    let mut view = f.view("completed");
    view["download"] =
        json!({"url": format!("{}/s3/object", f.base), "method": "GET", "expires_at": "2999-01-01T00:00:00.000Z"});
    Json(view)
}

/// The object: the first read breaks off halfway; a read with `Range`
/// gets the rest.
async fn get_object(State(f): State<Shared>, headers: HeaderMap) -> Response {
    let mut f = f.lock().unwrap();
    let range = headers.get("range").map(|r| r.to_str().unwrap().to_owned());
    f.downloads.push(range.clone());
    let object = f.object();
    let total = object.len();
    match range {
        None => {
            let half = object[..total / 2].to_vec();
            let stream = futures::stream::iter(vec![
                Ok(Bytes::from(half)),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped")),
            ]);
            Response::builder().header("content-length", total.to_string()).body(Body::from_stream(stream)).unwrap()
        }
        Some(r) => {
            let from: usize = r.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
            Response::builder()
                .status(StatusCode::PARTIAL_CONTENT)
                .header("content-range", format!("bytes {from}-{}/{total}", total - 1))
                .body(Body::from(object[from..].to_vec()))
                .unwrap()
        }
    }
}

async fn serve(lie: bool) -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let fake: Shared = Arc::new(Mutex::new(Fake { base: base.clone(), lie, ..Fake::default() }));
    let app = Router::new()
        .route("/uploads", post(create))
        .route("/uploads/{id}", get(get_upload))
        .route("/uploads/{id}/resume", post(resume))
        .route("/uploads/{id}/confirm", post(confirm))
        .route("/s3/object", get(get_object))
        .route("/s3/{n}", put(put_part))
        .layer(DefaultBodyLimit::disable())
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (fake, base)
}

fn context(base: &str) -> Context {
    let ui = Ui::silent();
    Context { api: Api::new(base, "usk_test", 3, ui.clone()).unwrap(), ui, json: false, retries: 3 }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("uploads-retries-{name}-{}", uploads::retry::random_hex()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn parts_are_retried_urls_renewed_and_pages_fetched() {
    let (fake, base) = serve(false).await;
    let ctx = context(&base);
    let dir = temp_dir("put");
    let file = dir.join("data.bin");
    let bytes = data(4 * PART as usize + 1000);
    std::fs::write(&file, &bytes).unwrap();

    let args = PutArgs {
        file: file.clone(),
        checksum: ChecksumArg::Sha256,
        part_size: Some(PART),
        jobs: 2,
        name: None,
        content_type: None,
    };
    let done = commands::put(&ctx, args).await.unwrap();
    assert_eq!(done.view.status, uploads::api::Status::Completed);
    {
        let f = fake.lock().unwrap();
        assert_eq!(f.object(), bytes, "every part stored, in order");
        assert_eq!(f.puts[&2], 2, "part 2 retried once after its 503");
        assert_eq!(f.puts[&3], 2, "part 3 sent again with a fresh URL after its 403");
        assert_eq!(f.puts[&5], 1);
        assert!(f.resumes >= 2, "URLs fetched from the resume route: {}", f.resumes);
        assert_eq!(f.confirms, 2, "confirmed again after the 202");
    }

    // Read back: the first GET breaks off halfway, the client resumes it
    // with a Range, checks the composite checksum and renames.
    let out = dir.join("back.bin");
    let args = GetArgs { id: ID.into(), out: Some(out.to_string_lossy().into_owned()), force: false };
    commands::get(&ctx, args).await.unwrap();
    assert!(std::fs::read(&out).unwrap() == bytes);
    let downloads = fake.lock().unwrap().downloads.clone();
    assert_eq!(downloads.len(), 2, "{downloads:?}");
    assert_eq!(downloads[0], None);
    // Resumed from wherever the connection broke, within the half sent.
    let from: usize =
        downloads[1].as_deref().unwrap().trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(from > 0 && from <= bytes.len() / 2, "{downloads:?}");

    // A second resume has nothing left to send.
    let puts = fake.lock().unwrap().puts.clone();
    let again = commands::resume(&ctx, ResumeArgs { id: ID.into(), file: file.clone(), jobs: 1 }).await;
    assert_eq!(again.unwrap().view.status, uploads::api::Status::Completed);
    assert_eq!(fake.lock().unwrap().puts, puts, "nothing sent again");

    // Bytes that do not match the declared checksum: exit 4, no file left.
    fake.lock().unwrap().corrupt = true;
    let bad = dir.join("bad.bin");
    let args = GetArgs { id: ID.into(), out: Some(bad.to_string_lossy().into_owned()), force: false };
    let err = commands::get(&ctx, args).await.unwrap_err();
    assert!(matches!(err, Error::Integrity(_)), "{err:?}");
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().starts_with(&format!("checksum mismatch: upload {ID} declares SHA256 ")), "{err}");
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["back.bin", "data.bin"], "no output and no temporary file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_part_s3_refuses_as_bad_digest_is_an_integrity_failure() {
    // The checksums declared are not those of the bytes sent (as when the
    // file changes between reading and sending).
    let (_fake, base) = serve(true).await;
    let ctx = context(&base);
    let dir = temp_dir("digest");
    let file = dir.join("data.bin");
    let bytes = data(2 * PART as usize);
    std::fs::write(&file, &bytes).unwrap();
    let args = PutArgs {
        file: file.clone(),
        checksum: ChecksumArg::Sha256,
        part_size: Some(PART),
        jobs: 1,
        name: None,
        content_type: None,
    };
    let result = commands::put(&ctx, args).await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(err.to_string().contains("S3 refused the bytes") && err.to_string().contains("BadDigest"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
