//! From a real browser: headless Chromium (Debian's `chromium`, installed by
//! `cargo xtask test` when missing) opens the upload page the local API
//! serves (`web/upload.html` at `/_local/basic`, as under `cargo xtask
//! dev`), is given a file as a user picking it would be, and uploads it: the
//! page computes SHA-256 checksums with WebCrypto, creates the session, and
//! `PUT`s the parts cross-origin straight to S3 with exactly the signed
//! headers, through the bucket's CORS rules from `template.yaml`. Then the
//! test checks the session, the bytes and the usage, and the screenshot.
//!
//! Each test runs with the bucket in moto and in the verifying S3
//! (`local::s3verify`), which checks each PUT's signature, so a header the
//! browser does not send as signed, or a CORS rule that does not let it
//! through, fails here as it would on AWS.

use std::path::{Path, PathBuf};

use local::chromium::{Browser, Image};
use serde_json::Value;
use shared::domain::{ApiKey, OwnerId, Status, UploadId};
use tests::{bytes, LocalApi, TestStack, MIB, S3};

/// The colour the page's progress bar turns once the upload is confirmed
/// (`#2e7d32`).
const DONE_GREEN: [u8; 3] = [0x2e, 0x7d, 0x32];

struct Page {
    t: TestStack,
    api: LocalApi,
    browser: Browser,
    owner: OwnerId,
    key: ApiKey,
    dir: PathBuf,
}

impl Page {
    async fn start(verifying_s3: bool) -> Self {
        let t = TestStack::on(if verifying_s3 { S3::Verifying } else { S3::Moto }).await;
        let api = LocalApi::start(&t).await;
        let (owner, key) = t.owner("browser").await;
        let browser = Browser::launch(900, 700).await.expect("chromium");
        let dir = std::env::temp_dir().join(format!("uploads-browser-{}", &t.config.table_name));
        std::fs::create_dir_all(&dir).unwrap();
        Page { t, api, browser, owner, key, dir }
    }

    fn url(&self, extra: &str) -> String {
        format!("{}{}?key={}{extra}", self.api.base, local::gateway::BASIC_PAGE_PATH, self.key.expose())
    }

    fn file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    /// Picks `file` and presses Upload; waits for the page to settle in
    /// `state` and returns the upload id it shows.
    async fn upload(&mut self, file: &Path, state: &str) -> UploadId {
        self.browser.choose_file("#file", file).await.unwrap();
        self.browser.eval("document.getElementById('upload').click()").await.unwrap();
        let settled = format!("['{state}', 'error'].includes(document.body.dataset.state)");
        self.browser.wait_for(&settled, 120).await.unwrap();
        let shown = self.browser.eval("document.body.dataset.state + ': ' + document.getElementById('status').textContent + '\\n' + document.getElementById('log').textContent").await.unwrap();
        assert!(shown.as_str().unwrap().starts_with(state), "{shown}");
        let id = self.browser.eval("document.getElementById('upload-id').textContent").await.unwrap();
        UploadId::parse(id.as_str().unwrap()).unwrap()
    }

    /// The parts the page has sent, in order, with S3's answers.
    async fn puts(&mut self) -> Vec<(u64, u64)> {
        let log = self.browser.eval("JSON.stringify(window.putLog)").await.unwrap();
        let log: Value = serde_json::from_str(log.as_str().unwrap()).unwrap();
        log.as_array().unwrap().iter().map(|p| (p["part"].as_u64().unwrap(), p["status"].as_u64().unwrap())).collect()
    }

    /// The completed upload `id` holds exactly `data`, read back through
    /// its download URL, and is counted in usage.
    async fn assert_completed(&self, id: &UploadId, data: &[u8]) {
        let session = self.t.store.get_session(&self.owner, id).await.unwrap().expect("session");
        assert_eq!(session.status, Status::Completed);
        assert!(session.checksums.is_some(), "the page declared checksums");
        assert!(self.api.download(&self.key, id.as_str()).await == data, "the bytes S3 holds are the file's");
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn single_and_multipart_uploads_from_the_page(verifying_s3: bool) {
    let mut p = Page::start(verifying_s3).await;
    p.browser.open(&p.url("&part_size=5242880")).await.unwrap();

    let small = bytes(100_000, 11);
    let path = p.file("small.txt", &small);
    let id = p.upload(&path, "done").await;
    p.assert_completed(&id, &small).await;
    assert_eq!(p.puts().await, [(1, 200)], "one PUT");

    // Three parts of 5 MiB (the last shorter), sent in parallel.
    let big = bytes(2 * 5 * MIB + 1234, 12);
    let path = p.file("big.bin", &big);
    let second = p.upload(&path, "done").await;
    p.assert_completed(&second, &big).await;
    let mut parts: Vec<u64> = p
        .puts()
        .await
        .into_iter()
        .skip(1)
        .map(|(n, s)| {
            assert_eq!(s, 200);
            n
        })
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, [1, 2, 3]);
    let usage = p.t.store.usage(&p.owner).await.unwrap();
    assert_eq!((usage.used, usage.reserved), ((small.len() + big.len()) as u64, 0));

    // The screenshot: the progress bar, full width, in the done colour.
    let bar = p
        .browser
        .eval("(() => { const r = document.getElementById('bar').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()")
        .await
        .unwrap();
    let [left, top, width, height] = [0, 1, 2, 3].map(|i| bar[i].as_f64().unwrap());
    let png = p.browser.screenshot().await.unwrap();
    // Kept for a look: target/browser/<the stack's table>.png.
    let shots = local::stack::project_root().join("target").join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    std::fs::write(shots.join(format!("{}.png", p.t.config.table_name)), &png).unwrap();
    let shot = Image::decode_png(&png).unwrap();
    assert_eq!((shot.width, shot.height), (900, 700), "the viewport's size");
    let y = (top + height / 2.0) as u32;
    // Inside the bar's 1-pixel border, from its left edge to its right.
    let xs: Vec<u32> = ((left + 2.0) as u32..(left + width - 2.0) as u32).collect();
    assert!(xs.len() > 500, "a bar of {width} px");
    let green = xs.iter().filter(|&&x| shot.rgb(x, y) == DONE_GREEN).count();
    assert_eq!(green, xs.len(), "the whole bar is the done colour, e.g. {:?} at its left", shot.rgb(xs[0], y));
    // And above it the page is not that colour: the check looks at the bar.
    assert_ne!(shot.rgb(xs[0], (top - 10.0) as u32), DONE_GREEN);
}

#[tokio::test]
async fn single_and_multipart_uploads_from_a_headless_chromium() {
    single_and_multipart_uploads_from_the_page(false).await;
}

#[tokio::test]
async fn single_and_multipart_uploads_from_a_headless_chromium_against_a_verifying_s3() {
    single_and_multipart_uploads_from_the_page(true).await;
}

/// The page is closed (here: paused) after one part of three; after a
/// reload it offers to resume, and once the same file is chosen again it
/// sends only the two parts S3 does not hold.
async fn resume_after_a_reload(verifying_s3: bool) {
    let mut p = Page::start(verifying_s3).await;
    let big = bytes(2 * 5 * MIB + 99, 13);
    let path = p.file("resumed.bin", &big);
    p.browser.open(&p.url("&part_size=5242880&pause_after=1")).await.unwrap();
    let id = p.upload(&path, "paused").await;
    let first: Vec<u64> = p.puts().await.iter().filter(|(_, s)| *s == 200).map(|(n, _)| *n).collect();
    assert_eq!(first.len(), 1, "paused with part(s) {first:?} sent");
    let session = p.t.store.get_session(&p.owner, &id).await.unwrap().unwrap();
    assert_eq!(session.status, Status::Pending);

    p.browser.open(&p.url("")).await.unwrap();
    let offer = p.browser.eval("document.getElementById('resume').textContent").await.unwrap();
    assert!(offer.as_str().unwrap().contains(id.as_str()), "the page offers to resume: {offer}");
    let resumed = p.upload(&path, "done").await;
    assert_eq!(resumed, id, "the same session, resumed");
    let mut second: Vec<u64> = p
        .puts()
        .await
        .iter()
        .map(|(n, s)| {
            assert_eq!(*s, 200);
            *n
        })
        .collect();
    second.sort_unstable();
    let mut missing: Vec<u64> = (1..=3).filter(|n| !first.contains(n)).collect();
    missing.sort_unstable();
    assert_eq!(second, missing, "only the parts S3 did not hold were sent again");
    p.assert_completed(&id, &big).await;
    assert_eq!(p.t.store.usage(&p.owner).await.unwrap().used, big.len() as u64);
}

#[tokio::test]
async fn an_upload_left_halfway_resumes_after_a_reload() {
    resume_after_a_reload(false).await;
}

#[tokio::test]
async fn an_upload_left_halfway_resumes_after_a_reload_against_a_verifying_s3() {
    resume_after_a_reload(true).await;
}
