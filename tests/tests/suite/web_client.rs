//! The TypeScript client (`clients/js`, built to `clients/js/dist` by `npm
//! run build`, which `cargo xtask test` runs first) in a real browser, on
//! another origin than the API's: headless Chromium opens a page served by
//! a small HTTP server of this test (127.0.0.1, its own port), which imports
//! the built client as an ES module and, holding only a browser token the
//! test minted as an app's backend does (`POST /tokens`, scope `own`, with
//! the owner's key, which never reaches the browser), in page JS uploads a
//! 12 MiB `File`
//! of deterministic bytes in three 5 MiB parts with SHA-256 checksums
//! (WebCrypto; 127.0.0.1 is a secure context), then asks for an upload that
//! does not exist. Everything crosses origins as it would in production:
//!
//! - the API's calls (`authorization`, `content-type: application/json`: each
//!   preflighted) go to the local API Gateway, whose `CorsAllowOrigin` is
//!   exactly the page's origin;
//! - the parts' presigned `PUT`s (XHR, with their signed `x-amz-checksum-*`
//!   headers: preflighted) go to the verifying S3 (`local::s3verify`), which
//!   checks their signatures and checksums and answers preflights from the
//!   bucket's CORS rules in `template.yaml`;
//! - the 404's `ApiError` is read by the page: its status, the API's message
//!   and its request id (and the `x-request-id` header, exposed by CORS).
//!
//! Then the test checks, from Rust, the session, the object's bytes and
//! checksum, the progress the page saw, and that no multipart upload is
//! left open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use local::chromium::Browser;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::{Status, UploadId};
use tests::{LocalApi, TestStack, MIB};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The Uppy plugin and the uploads page, in the same browser setting.
#[path = "web_client/uppy.rs"]
mod uppy;

/// The file the page uploads: three parts of [`PART_SIZE`], the last one
/// shorter (2 MiB and a few bytes).
const SIZE: usize = 12 * MIB + 12_345;
const PART_SIZE: usize = 5 * MIB;
const PARTS: usize = SIZE.div_ceil(PART_SIZE);
/// The seed of the page's bytes ([`page_bytes`]).
const SEED: u32 = 0x2545_f491;

/// The bytes the page generates: xorshift32, one byte (the top 8 bits) per
/// step, as the page's `bytes()` does.
fn page_bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The page: imports the client from `/client/index.js` (this server's
/// copy of `clients/js/dist`), uploads, probes a 404, and leaves what it
/// saw in `window.__result` (or `{fatal}` if anything threw).
fn page_html(api_base: &str, token: &str) -> String {
    let config = json!({ "baseUrl": api_base, "token": token, "size": SIZE, "partSize": PART_SIZE, "seed": SEED });
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>web client</title></head>
<body>
<p id="status">starting</p>
<script type="module">
const CONFIG = {config};

// Every XHR the client sends (its part PUTs): method, URL, the headers it
// set, and what S3 answered. A status of 0 would be a request the browser
// blocked (CORS) or a network failure; an ETag it can read means the
// bucket's CORS rule exposed it.
const xhrs = [];
const open = XMLHttpRequest.prototype.open;
const setRequestHeader = XMLHttpRequest.prototype.setRequestHeader;
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (method, url, ...rest) {{
  this.__log = {{ method, url: String(url), headers: [] }};
  return open.call(this, method, url, ...rest);
}};
XMLHttpRequest.prototype.setRequestHeader = function (name, value) {{
  this.__log?.headers.push(name.toLowerCase());
  return setRequestHeader.call(this, name, value);
}};
XMLHttpRequest.prototype.send = function (body) {{
  const log = this.__log;
  if (log) {{
    log.size = body && typeof body.size === "number" ? body.size : null;
    this.addEventListener("loadend", () => {{
      log.status = this.status;
      log.etag = this.getResponseHeader("ETag");
      xhrs.push(log);
    }});
  }}
  return send.call(this, body);
}};

// xorshift32, the top byte of each step (page_bytes in web_client.rs).
function bytes(len, seed) {{
  const out = new Uint8Array(len);
  let x = seed;
  for (let i = 0; i < len; i++) {{
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 24;
  }}
  return out;
}}

function describe(e) {{
  return {{ name: e?.name, message: String(e?.message ?? e), status: e?.status, code: e?.code, error: e?.error, stack: String(e?.stack ?? "") }};
}}

try {{
  const {{ createClient, ApiError }} = await import("./client/index.js");
  // A short-lived token from the page's backend: no key in the browser.
  const client = createClient({{ baseUrl: CONFIG.baseUrl, token: CONFIG.token }});
  const file = new File([bytes(CONFIG.size, CONFIG.seed)], "web-client.bin", {{ type: "application/octet-stream" }});
  const progress = [];
  document.getElementById("status").textContent = "uploading";
  const session = await client.upload(file, {{
    checksum: "SHA256",
    partSize: CONFIG.partSize,
    onProgress: (p) => progress.push([p.loaded, p.total, p.partsDone, p.partCount]),
  }});

  // An upload that does not exist: the page reads the API's error.
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  const missingId = "upl_" + hex;
  let notFound;
  try {{
    const got = await client.get(missingId);
    notFound = {{ unexpected: got }};
  }} catch (e) {{
    notFound = {{ apiError: e instanceof ApiError, status: e.status, error: e.error, requestId: e.requestId ?? null, message: String(e.message) }};
  }}
  // The same, without the client: the header CORS exposes is readable too.
  const raw = await fetch(CONFIG.baseUrl + "/uploads/" + missingId, {{ headers: {{ authorization: "Bearer " + CONFIG.token }} }});
  const rawBody = await raw.json();
  const rawHeader = {{ status: raw.status, xRequestId: raw.headers.get("x-request-id"), bodyRequestId: rawBody.request_id ?? null }};

  window.__result = {{
    origin: location.origin,
    secureContext: isSecureContext,
    session,
    progress,
    xhrs,
    missingId,
    notFound,
    rawHeader,
    remembered: localStorage.length,
  }};
  document.getElementById("status").textContent = "done";
}} catch (e) {{
  window.__result = {{ fatal: describe(e), xhrs }};
  document.getElementById("status").textContent = "failed";
}}
</script>
</body></html>
"#
    )
}

/// What the page server answered, path by path.
type Served = Arc<Mutex<Vec<(String, u16)>>>;

/// A minimal HTTP/1.1 server for the page's origin: `GET /` is the page,
/// `GET /client/<file>.js` a file of `dist`; anything else 404. One request
/// per connection (`Connection: close`).
async fn serve_page(listener: TcpListener, dist: PathBuf, html: String, served: Served) {
    let html = Arc::new(html);
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (dist, html, served) = (dist.clone(), html.clone(), served.clone());
        tokio::spawn(async move {
            let _ = answer(stream, &dist, &html, &served).await;
        });
    }
}

async fn answer(mut stream: TcpStream, dist: &Path, html: &str, served: &Served) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let found: Option<(&str, Vec<u8>)> = match (method, path) {
        ("GET", "/") => Some(("text/html; charset=utf-8", html.as_bytes().to_vec())),
        ("GET", p) => p
            .strip_prefix("/client/")
            .filter(|rel| {
                rel.ends_with(".js")
                    && !rel.split('/').any(|s| s.is_empty() || s == "." || s == "..")
                    && rel.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
            })
            .and_then(|rel| std::fs::read(dist.join(rel)).ok())
            .map(|body| ("text/javascript; charset=utf-8", body)),
        _ => None,
    };
    let (status, reason, content_type, body) = match found {
        Some((ct, body)) => (200, "OK", ct, body),
        None => (404, "Not Found", "text/plain", b"not found".to_vec()),
    };
    served.lock().unwrap().push((path.to_owned(), status));
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// S3's COMPOSITE SHA-256 of `data` cut in `part_size` parts:
/// `base64(SHA-256(digest 1 || … || digest N))-N`.
fn composite_sha256(data: &[u8], part_size: usize) -> String {
    let mut outer = Sha256::new();
    let mut n = 0;
    for part in data.chunks(part_size) {
        outer.update(Sha256::digest(part));
        n += 1;
    }
    format!("{}-{n}", base64::engine::general_purpose::STANDARD.encode(outer.finalize()))
}

#[tokio::test]
async fn the_typescript_client_uploads_from_another_origin_in_a_headless_chromium() {
    tokio::time::timeout(Duration::from_secs(180), upload_from_another_origin())
        .await
        .expect("the test did not finish within 180 s");
}

async fn upload_from_another_origin() {
    let started = Instant::now();
    let dist = local::stack::project_root().join("clients").join("js").join("dist");
    assert!(
        dist.join("index.js").is_file(),
        "{} is missing: build the TypeScript client first (`npm ci && npm run build` in clients/js; \
         `cargo xtask test` does it before the Rust tests)",
        dist.join("index.js").display()
    );

    // The page's origin first, so the API can allow exactly it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the page server");
    let page_origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let t = TestStack::with_verifying_s3(&[("CorsAllowOrigin", &page_origin)]).await;
    let (owner, key) = t.owner("web-client").await;
    let api = LocalApi::start(&t).await;
    assert_ne!(api.base, page_origin, "the page and the API are on different origins");
    let s3_endpoint = t.verifying_s3.as_ref().expect("verifying S3").endpoint.clone();

    // The app's backend: a token for this page, scope "own".
    let (status, minted) =
        api.send(reqwest::Method::POST, "/tokens", &key, Some(json!({ "scope": "own", "ttl_seconds": 600 }))).await;
    assert_eq!(status, 201, "{minted}");
    let token = minted["token"].as_str().unwrap();
    assert!(token.starts_with("ubt_"), "{minted}");

    let served: Served = Arc::default();
    let server = tokio::spawn(serve_page(listener, dist, page_html(&api.base, token), served.clone()));

    let mut browser = Browser::launch(800, 600).await.expect("chromium");
    browser.open(&format!("{page_origin}/")).await.unwrap();
    browser.wait_for("window.__result !== undefined", 120).await.unwrap();
    let result = browser.eval("JSON.stringify(window.__result)").await.unwrap();
    let r: Value = serde_json::from_str(result.as_str().expect("a JSON string")).unwrap();
    let browser_done = started.elapsed();
    browser.close().await;
    server.abort();

    assert!(r.get("fatal").is_none(), "the page failed: {:#}", r);
    assert_eq!(r["origin"], page_origin.as_str());
    assert_eq!(r["secureContext"], true, "127.0.0.1 is a secure context: WebCrypto is there");
    let served = served.lock().unwrap().clone();
    assert!(served.contains(&("/client/index.js".into(), 200)), "the client came from the page's origin: {served:?}");

    // The session the client answered: completed, multipart, with the
    // COMPOSITE checksum of the bytes.
    let data = page_bytes(SIZE, SEED);
    let expected_checksum = composite_sha256(&data, PART_SIZE);
    let session = &r["session"];
    assert_eq!(session["status"], "completed", "{session:#}");
    assert_eq!(session["size"], SIZE as u64);
    assert_eq!(session["checksum"]["algorithm"], "SHA256", "{session:#}");
    assert_eq!(session["checksum"]["type"], "COMPOSITE", "{session:#}");
    assert_eq!(session["checksum"]["value"], expected_checksum.as_str(), "{session:#}");
    let id = UploadId::parse(session["upload_id"].as_str().unwrap()).unwrap();
    let stored = t.store.get_session(&owner, &id).await.unwrap().expect("the session");
    assert_eq!(stored.status, Status::Completed);
    assert!(stored.checksums.is_some(), "the page declared the parts' checksums");
    assert_eq!(
        stored.token_id.as_ref().map(|t| t.as_str()),
        minted["token_id"].as_str(),
        "the session records the token that created it"
    );

    // The bucket holds exactly those bytes, under that checksum.
    let objects = t.all_objects().await;
    assert_eq!(objects.len(), 1, "one object: {objects:?}");
    assert_eq!(objects[0].key(), Some(stored.object_key.as_str()));
    assert_eq!(objects[0].size(), Some(SIZE as i64));
    assert!(t.object_bytes(&stored.object_key).await == data, "the object's bytes are the page's");
    let head =
        t.s3.head_object()
            .bucket(&t.config.bucket_name)
            .key(stored.object_key.as_str())
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
    assert_eq!(head.checksum_sha256(), Some(expected_checksum.as_str()), "the checksum S3 holds");
    let open = t.s3.list_multipart_uploads().bucket(&t.config.bucket_name).send().await.unwrap();
    assert!(open.uploads().is_empty(), "no multipart upload left open: {:?}", open.uploads());
    assert_eq!(r["remembered"], 0, "the client forgot the finished upload in localStorage");

    // Progress: from the start to the whole file, all parts done.
    let progress: Vec<[u64; 4]> = serde_json::from_value(r["progress"].clone()).unwrap();
    assert!(progress.len() >= 2, "progress events: {progress:?}");
    assert!(progress.iter().all(|p| p[1] == SIZE as u64 && p[3] == PARTS as u64 && p[0] <= p[1]), "{progress:?}");
    assert_eq!(progress[0][0], 0, "starts at 0");
    assert_eq!(progress.last().unwrap(), &[SIZE as u64, SIZE as u64, PARTS as u64, PARTS as u64], "ends complete");

    // The presigned PUTs, from the page's origin to the verifying S3: each
    // part once, all 200 (a CORS refusal would be status 0), each with an
    // ETag the page could read (the rule's ExposedHeaders).
    let xhrs = r["xhrs"].as_array().unwrap();
    let mut parts: Vec<u64> = Vec::new();
    for x in xhrs {
        let url = x["url"].as_str().unwrap();
        assert!(url.starts_with(&s3_endpoint), "an XHR to S3, not elsewhere: {x}");
        assert_eq!(x["method"], "PUT", "{x}");
        assert_eq!(x["status"], 200, "S3 stored the part, and the browser let the page read the answer: {x}");
        assert!(x["etag"].as_str().is_some_and(|e| !e.is_empty()), "the ETag was readable (exposed by CORS): {x}");
        let headers: Vec<&str> = x["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert!(headers.contains(&"x-amz-checksum-sha256"), "the part's signed checksum header was sent: {x}");
        let n = reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "partNumber")
            .unwrap()
            .1
            .parse()
            .unwrap();
        parts.push(n);
    }
    parts.sort_unstable();
    assert_eq!(parts, (1..=PARTS as u64).collect::<Vec<_>>(), "each part once: {xhrs:?}");
    // The bucket's rule, asked as the browser asked it (preflight).
    let first = &xhrs[0];
    let requested: Vec<&str> = first["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    let http = reqwest::Client::new();
    let preflight = http
        .request(reqwest::Method::OPTIONS, first["url"].as_str().unwrap())
        .header("origin", &page_origin)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", requested.join(","))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200, "the bucket's CORS allows the page's PUT: {:?}", preflight.text().await);
    let h = |name: &str| preflight.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        h("access-control-allow-origin").as_deref(),
        Some(page_origin.as_str()),
        "the bucket allows the API's CorsAllowOrigin, the page's"
    );
    assert!(h("access-control-allow-methods").is_some_and(|m| m.contains("PUT")));
    assert!(h("access-control-expose-headers").is_some_and(|e| e.contains("ETag")));

    // The API's 404, read by the page through CORS.
    let nf = &r["notFound"];
    assert_eq!(nf["apiError"], true, "an ApiError: {nf}");
    assert_eq!(nf["status"], 404, "{nf}");
    assert_eq!(nf["error"], "Upload not found", "{nf}");
    assert!(nf["requestId"].as_str().is_some_and(|id| !id.is_empty()), "a request id: {nf}");
    let raw = &r["rawHeader"];
    assert_eq!(raw["status"], 404, "{raw}");
    assert!(raw["xRequestId"].as_str().is_some_and(|id| !id.is_empty()), "x-request-id is exposed: {raw}");
    assert_eq!(raw["xRequestId"], raw["bodyRequestId"], "{raw}");
    // And the API allows exactly the page's origin.
    let direct = http
        .get(format!("{}/uploads/{}", api.base, r["missingId"].as_str().unwrap()))
        .header("x-api-key", key.expose())
        .header("origin", &page_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 404);
    assert_eq!(
        direct.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()),
        Some(page_origin.as_str())
    );

    eprintln!("web_client: the page finished after {browser_done:?}, all checks after {:?}", started.elapsed());
}
