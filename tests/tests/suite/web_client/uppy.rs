//! The Uppy plugin (`@upload-sessions/client/uppy`) in headless Chromium
//! with the real Uppy packages from npm: the uploads page
//! (`clients/js/page/`, bundled by `npm run build` with esbuild from
//! `node_modules`: `@uppy/core`, `@uppy/dashboard`,
//! `@uppy/golden-retriever`, and the package built from source) served with
//! its token route by `local::apppage` on a port of its own: another origin
//! than the API's, as an app's page is. The page holds only tokens, which
//! its backend mints with the owner's key through `POST /tokens`; the API
//! allows exactly the page's origin (`CorsAllowOrigin`), and the bucket is
//! the verifying S3, which checks every presigned `PUT`'s signature and
//! checksum and logs what it answered (the S3 side of the assertions).
//!
//! Files are chosen as a user picks them (`DOM.setFileInputFiles` on the
//! Dashboard's input) and sent with the Dashboard's own buttons. Requests
//! are held or altered in flight with the DevTools `Fetch` domain.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use local::chromium::{Browser, Image};
use local::s3verify::Logged;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::{ApiKey, BrowserToken, OwnerId, Status, Timestamp, TokenId, TokenScope, UploadId};
use shared::store::Secret;
use tests::{bytes, LocalApi, TestStack, MIB};

const PART: usize = 5 * MIB;

/// The green Uppy's status bar turns when every file is uploaded
/// (`.uppy-StatusBar.is-complete .uppy-StatusBar-progress`, `#1bb240`).
const COMPLETE_GREEN: [u8; 3] = [0x1b, 0xb2, 0x40];

/// One of these tests at a time: each runs a stack, its functions and a
/// browser, and their timings (a part held, a reload) want the machine's
/// cores to themselves.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The app: the stack with the verifying S3, the local API, the page and
/// its backend on another origin, and a browser.
struct App {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    t: TestStack,
    api: LocalApi,
    owner: OwnerId,
    key: ApiKey,
    origin: String,
    server: tokio::task::JoinHandle<()>,
    browser: Browser,
    dir: PathBuf,
}

impl App {
    async fn start() -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let bundle = local::apppage::bundle_dir().join("page.js");
        assert!(
            bundle.is_file(),
            "{} is missing: build the page first (`npm ci && npm run build` in clients/js; \
             `cargo xtask test` does it before the Rust tests)",
            bundle.display()
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding the page server");
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let t = TestStack::with_verifying_s3(&[("CorsAllowOrigin", &origin)]).await;
        let (owner, key) = t.owner("uppy").await;
        let api = LocalApi::start(&t).await;
        assert_ne!(api.base, origin, "the page and the API are on different origins");
        let app = local::apppage::AppPage::new(&api.base, key.expose());
        let server = tokio::spawn(async move {
            let _ = app.serve(listener).await;
        });
        let browser = Browser::launch(1000, 900).await.expect("chromium");
        let dir = std::env::temp_dir().join(format!("uploads-uppy-{}", &t.config.table_name));
        std::fs::create_dir_all(&dir).unwrap();
        App { _turn: turn, t, api, owner, key, origin, server, browser, dir }
    }

    /// Opens the page with `query` and waits for Uppy.
    async fn open(&mut self, query: &str) {
        self.browser.subscribe("Runtime.consoleAPICalled");
        self.browser.subscribe("Runtime.exceptionThrown");
        self.browser.call("Runtime.enable", json!({})).await.unwrap();
        self.browser.open(&format!("{}/upload?{query}", self.origin)).await.unwrap();
        self.browser
            .wait_for("window.uppy !== undefined && !!document.querySelector('.uppy-Dashboard-input')", 30)
            .await
            .unwrap();
    }

    /// Reloads the page (as a user does after closing the tab mid-upload)
    /// and waits for Uppy again.
    async fn reload(&mut self) {
        self.browser.eval("window.__before_reload = true").await.unwrap();
        self.browser.call("Page.reload", json!({})).await.unwrap();
        self.browser
            .wait_for(
                "window.__before_reload === undefined && document.readyState === 'complete' && window.uppy !== undefined",
                30,
            )
            .await
            .unwrap();
    }

    /// Forgets what Golden Retriever kept (IndexedDB, localStorage) for the
    /// page's origin, between two page loads of one test.
    async fn forget(&mut self) {
        self.browser.open("about:blank").await.ok();
        let origin = self.origin.clone();
        self.browser
            .call("Storage.clearDataForOrigin", json!({ "origin": origin, "storageTypes": "all" }))
            .await
            .unwrap();
    }

    /// A file of `len` deterministic bytes, on disk for the browser to pick.
    fn file(&self, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
        let data = bytes(len, seed);
        let path = self.dir.join(name);
        std::fs::write(&path, &data).unwrap();
        (path, data)
    }

    /// Picks `paths` in the Dashboard's file input, as a user does.
    async fn choose(&mut self, paths: &[&PathBuf]) {
        let b = &mut self.browser;
        let doc = b.call("DOM.getDocument", json!({})).await.unwrap();
        let node = b
            .call(
                "DOM.querySelector",
                json!({ "nodeId": doc["root"]["nodeId"], "selector": ".uppy-Dashboard-input[name='files[]']" }),
            )
            .await
            .unwrap();
        b.call("DOM.setFileInputFiles", json!({ "nodeId": node["nodeId"], "files": paths })).await.unwrap();
        let n = paths.len();
        b.wait_for(&format!("uppy.getFiles().length === {n}"), 10).await.unwrap();
    }

    /// Waits until `condition` holds in the page; else fails with what the
    /// page shows (its files, console and exceptions).
    async fn wait(&mut self, condition: &str, seconds: u64) {
        if let Err(e) = self.browser.wait_for(condition, seconds).await {
            let files = self.files().await;
            let console: Vec<String> = self
                .browser
                .take_events("Runtime.consoleAPICalled")
                .iter()
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["type"],
                        c["args"]
                            .as_array()
                            .map(|a| a
                                .iter()
                                .map(|v| v["value"].to_string() + &v["description"].to_string())
                                .collect::<Vec<_>>()
                                .join(" "))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let thrown = self.browser.take_events("Runtime.exceptionThrown");
            let state = self
                .browser
                .eval("JSON.stringify({ uploads: uppy.getState().currentUploads, error: uppy.getState().error, info: uppy.getState().info, progress: uppy.getFiles().map((f) => f.progress), bar: document.querySelector('.uppy-StatusBar')?.className })")
                .await
                .unwrap_or_default();
            eprintln!("state: {state}");
            panic!("{e:#}\nfiles: {files:#?}\nconsole: {console:#?}\nexceptions: {thrown:#?}");
        }
    }

    /// Presses the status bar's upload button (also "resume" after a restore).
    async fn press_upload(&mut self) {
        self.browser.wait_for("!!document.querySelector('.uppy-StatusBar-actionBtn--upload')", 10).await.unwrap();
        self.browser.eval("document.querySelector('.uppy-StatusBar-actionBtn--upload').click()").await.unwrap();
    }

    /// Uppy's files as the page sees them.
    async fn files(&mut self) -> Vec<Value> {
        let js = "JSON.stringify(uppy.getFiles().map((f) => ({ id: f.id, name: f.name, error: f.error ?? null, \
                  complete: !!f.progress.uploadComplete, bytesUploaded: f.progress.bytesUploaded, \
                  status: f.response?.status ?? null, body: f.response?.body ?? null, \
                  session: f.uploadSessions ?? null })))";
        let v = self.browser.eval(js).await.unwrap();
        serde_json::from_str(v.as_str().unwrap()).unwrap()
    }

    /// Polls `condition` in the page, answering paused requests with `on_paused` meanwhile.
    async fn pump_until(&mut self, condition: &str, seconds: u64, mut on_paused: impl FnMut(&Value) -> Answer) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let done = self.browser.eval(condition).await.unwrap() == Value::Bool(true);
            for paused in self.browser.take_events("Fetch.requestPaused") {
                let id = paused["requestId"].clone();
                // Preflights are let through (when Chromium shows them at all).
                let answer =
                    if paused["request"]["method"] == "OPTIONS" { Answer::Continue } else { on_paused(&paused) };
                let sent = match answer {
                    Answer::Continue => self.browser.call("Fetch.continueRequest", json!({ "requestId": id })).await,
                    Answer::Body(body) => {
                        let post = base64::engine::general_purpose::STANDARD.encode(body);
                        self.browser.call("Fetch.continueRequest", json!({ "requestId": id, "postData": post })).await
                    }
                    Answer::Hold => continue,
                };
                match sent {
                    Ok(_) => {}
                    // Paused just before a reload, the request went away with
                    // its page: Chromium no longer knows it.
                    Err(e) if e.to_string().contains("Invalid InterceptionId") => {}
                    Err(e) => panic!("answering a paused request: {e:#}"),
                }
            }
            if done {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {seconds} s for {condition}: {:#?}",
                self.files().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Holds (or alters) the part `PUT`s to the bucket from now on.
    async fn intercept_parts(&mut self) {
        self.browser.subscribe("Fetch.requestPaused");
        let bucket = format!("{}/{}/*", self.t.verifying_s3.as_ref().unwrap().endpoint, self.t.config.bucket_name);
        self.browser
            .call("Fetch.enable", json!({ "patterns": [{ "urlPattern": bucket, "requestStage": "Request" }] }))
            .await
            .unwrap();
    }

    /// The part `PUT`s S3 answered: (upload's S3 id, part, status), in order.
    fn part_puts(&self) -> Vec<(String, u64, u16)> {
        self.s3_log()
            .iter()
            .filter(|r| r.method == "PUT")
            .filter_map(|r| Some((r.param("uploadId")?, r.param("partNumber")?.parse().ok()?, r.status)))
            .collect()
    }

    fn s3_log(&self) -> Vec<Logged> {
        self.t.verifying_s3.as_ref().unwrap().requests()
    }

    /// The part numbers S3 holds for `id`'s multipart upload.
    async fn parts_held(&self, id: &UploadId) -> Vec<i32> {
        let session = self.t.store.get_session(&self.owner, id).await.unwrap().expect("the session");
        let mp = session.multipart.expect("multipart");
        let listed = self
            .t
            .s3
            .list_parts()
            .bucket(&self.t.config.bucket_name)
            .key(session.object_key.as_str())
            .upload_id(&mp.s3_upload_id)
            .send()
            .await
            .unwrap();
        listed.parts().iter().filter_map(|p| p.part_number()).collect()
    }

    /// The completed upload `id` holds exactly `data`, with S3's checksum of it.
    async fn assert_stored(&self, id: &UploadId, data: &[u8]) {
        let session = self.t.store.get_session(&self.owner, id).await.unwrap().expect("the session");
        assert_eq!(session.status, Status::Completed, "{id}");
        assert!(self.t.object_bytes(&session.object_key).await == data, "{id}: the object's bytes are the file's");
        let head = self
            .t
            .s3
            .head_object()
            .bucket(&self.t.config.bucket_name)
            .key(session.object_key.as_str())
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(head.checksum_sha256(), Some(sha256_of(data, session.multipart.is_some()).as_str()), "{id}");
    }

    async fn assert_no_multipart_left(&self) {
        let open = self.t.s3.list_multipart_uploads().bucket(&self.t.config.bucket_name).send().await.unwrap();
        assert!(open.uploads().is_empty(), "no multipart upload left open: {:?}", open.uploads());
    }

    async fn close(self) {
        self.browser.close().await;
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

enum Answer {
    Continue,
    /// Continue with this body instead.
    Body(Vec<u8>),
    /// Leave it paused (a request that never completes).
    Hold,
}

/// S3's SHA-256 of an object: the digest for a single `PUT`, else
/// `base64(SHA-256(digest 1 || … || digest N))-N` over [`PART`]s.
fn sha256_of(data: &[u8], multipart: bool) -> String {
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    if !multipart {
        return b64(&Sha256::digest(data));
    }
    let mut outer = Sha256::new();
    let chunks = data.chunks(PART);
    let n = chunks.len();
    for part in chunks {
        outer.update(Sha256::digest(part));
    }
    format!("{}-{n}", b64(&outer.finalize()))
}

fn upload_id(v: &Value) -> UploadId {
    UploadId::parse(v.as_str().unwrap_or_else(|| panic!("an upload id: {v}"))).unwrap()
}

fn part_of(paused: &Value) -> Option<u64> {
    let url = reqwest::Url::parse(paused["request"]["url"].as_str()?).ok()?;
    let n = url.query_pairs().find(|(k, _)| k == "partNumber")?.1.parse().ok()?;
    Some(n)
}

async fn in_time(seconds: u64, test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(seconds), test)
        .await
        .unwrap_or_else(|_| panic!("the test did not finish within {seconds} s"));
}

#[tokio::test]
async fn several_files_go_through_the_dashboard_from_another_origin_and_its_screenshot_shows_them_complete() {
    in_time(120, async {
        let mut app = App::start().await;
        app.open(&format!("part_size={PART}")).await;
        let (small, small_data) = app.file("small.txt", 1_000, 1);
        let (two, two_data) = app.file("two-parts.bin", PART + 123_456, 2);
        let (three, three_data) = app.file("three-parts.bin", 2 * PART + 7, 3);
        app.choose(&[&small, &two, &three]).await;
        app.press_upload().await;
        app.wait("uppy.getFiles().every((f) => f.progress.uploadComplete)", 60).await;

        // Each file: completed through its own session, the bytes and
        // checksum in the bucket, the session gone from the file's state.
        let files = app.files().await;
        let mut ids = Vec::new();
        for (name, data) in [("small.txt", &small_data), ("two-parts.bin", &two_data), ("three-parts.bin", &three_data)] {
            let f = files.iter().find(|f| f["name"] == name).unwrap_or_else(|| panic!("{name} in {files:#?}"));
            assert_eq!(f["status"], 200, "{f:#}");
            assert_eq!(f["session"], Value::Null, "a completed upload keeps no session on the file: {f:#}");
            assert_eq!(f["body"]["session"]["status"], "completed", "{f:#}");
            assert_eq!(f["body"]["session"]["checksum"]["algorithm"], "SHA256", "{f:#}");
            let id = upload_id(&f["body"]["upload_id"]);
            app.assert_stored(&id, data).await;
            ids.push(id);
        }
        assert_eq!(app.t.all_objects().await.len(), 3);
        app.assert_no_multipart_left().await;

        // On the S3 side: each part PUT once, and S3 stored it (1 + 2 + 3).
        let puts = app.part_puts();
        assert_eq!(puts.len(), 5, "{puts:?}");
        assert!(puts.iter().all(|(_, _, status)| *status == 200), "{puts:?}");
        let presigned_puts = |r: &&Logged| r.method == "PUT" && r.param("X-Amz-Signature").is_some();
        let singles = app.s3_log().iter().filter(presigned_puts).filter(|r| r.param("partNumber").is_none()).count();
        assert_eq!(singles, 1, "the small file in one PUT");

        // The list under the Dashboard shows the three, read with an "owner" token.
        app.browser.wait_for("document.querySelectorAll('#uploads tbody tr').length === 3", 10).await.unwrap();
        let listed = app
            .browser
            .eval("JSON.stringify([...document.querySelectorAll('#uploads tbody tr')].map((tr) => tr.dataset.uploadId))")
            .await
            .unwrap();
        let mut listed: Vec<String> = serde_json::from_str(listed.as_str().unwrap()).unwrap();
        listed.sort();
        let mut expected: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        expected.sort();
        assert_eq!(listed, expected);

        // The screenshot: three items marked complete, and the status bar's
        // progress line green from one end to the other.
        assert_eq!(app.browser.eval("document.querySelectorAll('.uppy-Dashboard-Item.is-complete').length").await.unwrap(), 3);
        let rect = app
            .browser
            .eval(
                "JSON.stringify(document.querySelector('.uppy-StatusBar.is-complete .uppy-StatusBar-progress').getBoundingClientRect())",
            )
            .await
            .unwrap();
        let rect: Value = serde_json::from_str(rect.as_str().unwrap()).unwrap();
        // Let the bar's colour transition finish.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let shot = Image::decode_png(&app.browser.screenshot().await.unwrap()).unwrap();
        let (left, width, y) = (rect["left"].as_f64().unwrap(), rect["width"].as_f64().unwrap(), rect["top"].as_f64().unwrap());
        assert!(width > 500.0, "the bar spans the Dashboard: {rect}");
        for i in 1..10 {
            let x = (left + width * f64::from(i) / 10.0) as u32;
            let px = shot.rgb(x, y as u32);
            let close = px.iter().zip(COMPLETE_GREEN).all(|(a, b)| a.abs_diff(b) <= 12);
            assert!(close, "pixel ({x}, {y}) is {px:?}, not Uppy's complete green {COMPLETE_GREEN:?}");
        }
        app.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_three_part_upload_interrupted_resumes_after_a_reload_sending_only_the_missing_parts() {
    in_time(120, async {
        let mut app = App::start().await;
        app.open(&format!("part_size={PART}&concurrency=1")).await;
        let (path, data) = app.file("resume.bin", 2 * PART + 4_321, 11);
        app.choose(&[&path]).await;
        app.intercept_parts().await;
        app.press_upload().await;

        // Parts 1 and 2 reach S3; part 3 is held in the browser, never sent,
        // as a tab closed in the middle of it leaves it.
        let hold_three = |p: &Value| if part_of(p) == Some(3) { Answer::Hold } else { Answer::Continue };
        app.pump_until(&format!("uppy.getFiles()[0].progress.bytesUploaded >= {}", 2 * PART), 60, hold_three).await;
        let files = app.files().await;
        let id = upload_id(&files[0]["session"]["upload_id"]);
        let mut held = Vec::new();
        for _ in 0..100 {
            held = app.parts_held(&id).await;
            if held.len() == 2 {
                break;
            }
            app.pump_until("true", 1, hold_three).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(held, [1, 2], "S3 holds parts 1 and 2");
        assert!(files[0]["session"]["token"].as_str().is_some_and(|t| t.starts_with("ubt_")), "{:#}", files[0]);
        // Golden Retriever saves Uppy's state at most every 500 ms.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let before_reload = app.part_puts().len();

        app.reload().await;
        app.wait("uppy.getFiles().length === 1 && !!uppy.getState().recoveredState && !!uppy.getFiles()[0].data", 20)
            .await;
        let restored = app.files().await;
        assert_eq!(
            restored[0]["session"]["upload_id"],
            id.as_str(),
            "the session came back with the file: {restored:#?}"
        );
        app.press_upload().await;
        app.pump_until("uppy.getFiles().every((f) => f.progress.uploadComplete)", 60, |_| Answer::Continue).await;

        // After the reload, one PUT: part 3. No part was sent twice.
        let puts = app.part_puts();
        let after: Vec<(u64, u16)> = puts[before_reload..].iter().map(|(_, n, s)| (*n, *s)).collect();
        assert_eq!(after, [(3, 200)], "only the missing part after the reload: {puts:?}");
        let all: Vec<(u64, u16)> = puts.iter().map(|(_, n, s)| (*n, *s)).collect();
        assert_eq!(all, [(1, 200), (2, 200), (3, 200)], "{puts:?}");
        // The same session throughout, completed with the file's bytes.
        let sessions = app.t.all_sessions(&app.owner).await;
        assert_eq!(sessions.len(), 1, "no second session: {sessions:?}");
        app.assert_stored(&id, &data).await;
        app.assert_no_multipart_left().await;
        let done = app.files().await;
        assert_eq!(done[0]["body"]["upload_id"], id.as_str());
        app.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_part_altered_in_flight_is_refused_by_s3_and_sent_again() {
    in_time(120, async {
        let mut app = App::start().await;
        app.open(&format!("part_size={PART}&concurrency=1")).await;
        let (path, data) = app.file("altered.bin", 2 * PART + 999, 12);
        app.choose(&[&path]).await;
        app.intercept_parts().await;
        app.press_upload().await;

        // Part 2's first PUT leaves the browser with one byte changed (the
        // same length, so the signature holds): S3 checks the bytes against
        // the SHA-256 signed into the URL.
        let mut altered = data[PART..2 * PART].to_vec();
        altered[4_096] ^= 0x5a;
        let mut times = 0;
        app.pump_until("uppy.getFiles().every((f) => f.progress.uploadComplete || f.error)", 60, |p| {
            if part_of(p) == Some(2) {
                times += 1;
                if times == 1 {
                    return Answer::Body(altered.clone());
                }
            }
            Answer::Continue
        })
        .await;
        let files = app.files().await;
        assert_eq!(files[0]["error"], Value::Null, "{files:#?}");
        assert_eq!(times, 2, "part 2 left the browser twice");

        // S3 refused the altered bytes (400 BadDigest), took them again.
        let puts: Vec<(u64, u16)> = app.part_puts().iter().map(|(_, n, s)| (*n, *s)).collect();
        assert_eq!(puts, [(1, 200), (2, 400), (2, 200), (3, 200)]);
        let id = upload_id(&files[0]["body"]["upload_id"]);
        app.assert_stored(&id, &data).await;
        app.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_and_tokens_used_out_of_their_scope_get_the_apis_401_and_403_in_the_page() {
    in_time(120, async {
        let mut app = App::start().await;
        let (small, _) = app.file("small.txt", 5_000, 21);

        // Signed with the stack's token secret, but past its expiry.
        let secret = app.t.store.secret(Secret::Token).await.unwrap().to_vec();
        let expired = BrowserToken {
            id: TokenId::generate(),
            key: app.key.digest(),
            expires_at: Timestamp::now().plus_seconds(-1),
            scope: TokenScope::Own,
            max_size: None,
            content_type: None,
            upload_id: None,
        }
        .encode(&secret);
        app.open(&format!("token={expired}")).await;
        app.choose(&[&small]).await;
        app.press_upload().await;
        app.wait("uppy.getFiles()[0].error != null", 30).await;
        let f = &app.files().await[0];
        assert_eq!(f["status"], 401, "{f:#}");
        assert_eq!(f["body"]["error"], "Token expired", "{f:#}");
        assert!(f["body"]["request_id"].as_str().is_some_and(|r| !r.is_empty()), "{f:#}");
        assert!(f["error"].as_str().unwrap().contains("Token expired (HTTP 401"), "{f:#}");
        app.wait("!!document.querySelector('.uppy-StatusBar.is-error')", 5).await;

        // A token of the page's backend limited to 1,000 bytes: the create is refused.
        app.forget().await;
        app.open("max_size=1000").await;
        app.choose(&[&small]).await;
        app.press_upload().await;
        app.wait("uppy.getFiles()[0].error != null", 30).await;
        let f = &app.files().await[0];
        assert_eq!(f["status"], 403, "{f:#}");
        assert_eq!(f["body"]["error"], "Upload larger than the token allows", "{f:#}");
        assert!(app.t.all_sessions(&app.owner).await.is_empty(), "neither token created anything");

        // An "own" token on an upload another credential made: 403, read
        // by the page (body and request id through the API's CORS).
        let (status, other) = app
            .api
            .send(
                reqwest::Method::POST,
                "/uploads",
                &app.key,
                Some(json!({ "filename": "other.bin", "content_type": "application/octet-stream", "size": 10 })),
            )
            .await;
        assert_eq!(status, 201, "{other}");
        let other_id = other["upload_id"].as_str().unwrap();
        let js = format!(
            "(async () => {{ const t = await (await fetch('token?scope=own')).json(); \
             const r = await fetch(JSON.parse(document.getElementById('uploads-config').textContent).endpoint + '/uploads/{other_id}', \
             {{ headers: {{ authorization: 'Bearer ' + t.token }} }}); \
             return JSON.stringify({{ status: r.status, body: await r.json(), header: r.headers.get('x-request-id') }}); }})()"
        );
        let seen: Value = serde_json::from_str(app.browser.eval(&js).await.unwrap().as_str().unwrap()).unwrap();
        assert_eq!(seen["status"], 403, "{seen}");
        assert_eq!(seen["body"]["error"], "Upload is outside the token's scope", "{seen}");
        assert_eq!(seen["header"], seen["body"]["request_id"], "{seen}");
        app.close().await;
    })
    .await;
}

#[tokio::test]
async fn removing_a_file_mid_upload_deletes_its_session_and_cleanup_leaves_nothing_in_the_bucket() {
    in_time(120, async {
        let mut app = App::start().await;
        app.open(&format!("part_size={PART}&concurrency=1")).await;
        let (path, _) = app.file("removed.bin", 2 * PART + 5, 31);
        app.choose(&[&path]).await;
        app.intercept_parts().await;
        app.press_upload().await;
        let hold_three = |p: &Value| if part_of(p) == Some(3) { Answer::Hold } else { Answer::Continue };
        app.pump_until(&format!("uppy.getFiles()[0].progress.bytesUploaded >= {}", 2 * PART), 60, hold_three).await;
        let id = upload_id(&app.files().await[0]["session"]["upload_id"]);
        let mut held = Vec::new();
        for _ in 0..100 {
            held = app.parts_held(&id).await;
            if held.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(held, [1, 2]);
        let object_key = app.t.store.get_session(&app.owner, &id).await.unwrap().unwrap().object_key;

        // The Dashboard's remove button on the file, mid-upload.
        app.browser.eval("document.querySelector('.uppy-Dashboard-Item-action--remove').click()").await.unwrap();
        app.wait("uppy.getFiles().length === 0", 10).await;
        let mut gone = false;
        for _ in 0..100 {
            if app.t.store.get_session(&app.owner, &id).await.unwrap().is_none() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "the session was deleted");
        assert_eq!(app.t.cleanup_task_ids().await, std::slice::from_ref(&id), "with a cleanup task for its bytes");

        // The cleanup's pass: no object, no part, no multipart upload.
        assert!(app.t.drain_cleanup().await >= 1);
        assert!(app.t.all_keys().await.is_empty(), "nothing in the bucket");
        assert_eq!(app.t.multipart_uploads_for(&object_key).await, 0);
        app.assert_no_multipart_left().await;
        let puts: Vec<u64> = app.part_puts().iter().map(|(_, n, _)| *n).collect();
        assert_eq!(puts, [1, 2], "part 3 never reached S3");
        app.close().await;
    })
    .await;
}
