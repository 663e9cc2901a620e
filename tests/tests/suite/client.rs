//! The `uploads` command-line client, run as its real binary (built by
//! `cargo xtask test` with the workspace) against the local API Gateway over
//! every function's binary, with an owner's key in `UPLOADS_API_KEY`:
//! an upload interrupted (by the client's test hook, by Ctrl-C, by a crash)
//! and finished with `resume`, which sends only what S3 lacks; downloads
//! verified against the declared checksum; deletion leaving no bytes; and
//! the exit codes scripts rely on.
//!
//! The flows run with the bucket in moto and in the verifying local S3
//! (`TestStack::with_verifying_s3`), which checks the signature of every
//! `PUT` the client sends (so every signed header must be sent as given)
//! and the checksums, as S3 does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shared::domain::{ApiKey, OwnerId, UploadId};
use tests::{bytes, eventually, LocalApi, TestStack, MIB, S3};
use tokio::io::{AsyncBufReadExt, BufReader};
use uploads::checksum::{composite, encode, Algorithm};

const PART: usize = 5 * MIB;

struct Client {
    t: TestStack,
    api: LocalApi,
    owner: OwnerId,
    key: ApiKey,
    dir: PathBuf,
}

/// What one run of the binary did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

impl Client {
    async fn start(name: &str, s3: S3) -> Self {
        let t = TestStack::on(s3).await;
        let api = LocalApi::start(&t).await;
        let (owner, key) = t.owner("cli-user").await;
        let dir = std::env::temp_dir().join(format!("uploads-client-{name}-{}", &UploadId::generate().as_str()[4..16]));
        std::fs::create_dir_all(&dir).unwrap();
        Client { t, api, owner, key, dir }
    }

    fn command(&self, cwd: &Path, args: &[&str]) -> tokio::process::Command {
        let bin = local::runtime::binary_path("uploads");
        assert!(bin.exists(), "{} is missing: run the tests with `cargo xtask test`, which builds it", bin.display());
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(args)
            .current_dir(cwd)
            .env("UPLOADS_URL", &self.api.base)
            .env("UPLOADS_API_KEY", self.key.expose())
            .env_remove(uploads::transfer::INTERRUPT_AFTER_PARTS_VAR)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `uploads ARGS` in the test's folder.
    async fn run(&self, args: &[&str]) -> Run {
        self.run_in(&self.dir, args, &[]).await
    }

    async fn run_in(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(cwd, args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().await.unwrap();
        let run =
            Run { code: out.status.code(), stdout: out.stdout, stderr: String::from_utf8_lossy(&out.stderr).into() };
        eprintln!("$ uploads {} -> {:?}\n{}", args.join(" "), run.code, run.stderr);
        run
    }

    fn write(&self, name: &str, data: &[u8]) {
        std::fs::write(self.dir.join(name), data).unwrap();
    }

    /// The part numbers S3 holds for multipart upload `id`, or `None` once
    /// it is completed (S3 no longer lists its parts).
    async fn parts_in_s3(&self, id: &str) -> Option<Vec<u32>> {
        let id = UploadId::parse(id).unwrap();
        let session = self.t.store.get_session(&self.owner, &id).await.unwrap().expect("the session exists");
        let mp = session.multipart.expect("a multipart upload");
        let parts = self
            .t
            .objects
            .list_parts(&self.t.config.bucket_name, &session.object_key, &mp.s3_upload_id)
            .await
            .unwrap()?;
        Some(parts.iter().map(|p| p.part_number).collect())
    }

    /// The bytes S3 holds for completed upload `id`, read through the
    /// presigned `GET` of its view ([`LocalApi::download`]).
    async fn s3_bytes(&self, id: &str) -> Vec<u8> {
        self.api.download(&self.key, id).await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The upload id in the line `put` prints once the session exists.
fn created_id(stderr: &str) -> String {
    let at = stderr.find("upload upl_").unwrap_or_else(|| panic!("no upload id in: {stderr}")) + "upload ".len();
    let id = stderr[at..at + 36].to_owned();
    assert!(UploadId::parse(&id).is_some(), "{id}");
    id
}

/// SHA-256 composite checksum of `data` in parts of `part`, as S3 gives it.
fn sha256_composite(data: &[u8], part: usize) -> String {
    let digests: Vec<Vec<u8>> = data.chunks(part).map(|c| Algorithm::Sha256.digest(c)).collect();
    composite(Algorithm::Sha256, &digests)
}

#[tokio::test]
async fn put_interrupted_then_resumed() {
    interrupted_then_resumed(S3::Moto).await;
}

#[tokio::test]
async fn put_interrupted_then_resumed_on_a_verifying_s3() {
    interrupted_then_resumed(S3::Verifying).await;
}

async fn interrupted_then_resumed(s3: S3) {
    let c = Client::start("resume", s3).await;
    // Three parts of the minimum size and a short tail.
    let data = bytes(3 * PART + 123_457, 41);
    c.write("big.bin", &data);

    // The test hook stops the upload as Ctrl-C would after 2 parts; with
    // one connection those are parts 1 and 2.
    let put = c
        .run_in(
            &c.dir,
            &["put", "big.bin", "--part-size", "5242880", "--jobs", "1"],
            &[(uploads::transfer::INTERRUPT_AFTER_PARTS_VAR, "2")],
        )
        .await;
    assert_eq!(put.code, Some(130), "{put:?}");
    let id = created_id(&put.stderr);
    assert!(
        put.stderr.contains(&format!(
            "upload {id} created: 4 parts of 5.0 MiB, SHA256 checksums; if interrupted, finish with: uploads resume {id} big.bin"
        )),
        "{}",
        put.stderr
    );
    assert!(
        put.stderr
            .contains(&format!("error: interrupted after 2 part(s) sent; finish with: uploads resume {id} big.bin")),
        "{}",
        put.stderr
    );
    assert!(put.stdout.is_empty());
    assert_eq!(c.parts_in_s3(&id).await, Some(vec![1, 2]), "S3 holds the parts sent before the interruption");

    // The API sees it pending, parts 3 and 4 missing, with the declared
    // composite checksum.
    let show = c.run(&["show", &id, "--json"]).await;
    assert_eq!(show.code, Some(0), "{show:?}");
    let view = show.json();
    assert_eq!(view["status"], "pending");
    assert_eq!(view["upload"]["parts_received"], serde_json::json!([1, 2]));
    assert_eq!(view["upload"]["parts_missing"], serde_json::json!([3, 4]));
    assert_eq!(view["checksum"]["algorithm"], "SHA256", "{view}");
    assert_eq!(view["checksum"]["type"], "COMPOSITE");
    assert_eq!(view["checksum"]["part_size"], PART);
    assert_eq!(view["checksum"]["value"], sha256_composite(&data, PART));
    let plain = c.run(&["show", &id]).await;
    assert!(plain.stdout().contains("parts_missing   3-4"), "{}", plain.stdout());

    // Resume sends exactly the two missing parts, then confirms.
    let resume = c.run(&["resume", &id, "big.bin"]).await;
    assert_eq!(resume.code, Some(0), "{resume:?}");
    assert_eq!(resume.stdout(), format!("{id}\n"));
    assert!(
        resume.stderr.contains(&format!("resuming {id}: 2 of 4 part(s) missing (3-4), 5.1 MiB")),
        "{}",
        resume.stderr
    );
    assert!(resume.stderr.contains(&format!("uploaded {id}: 2 part(s) sent (5.1 MiB)")), "{}", resume.stderr);
    assert_eq!(c.s3_bytes(&id).await, data, "S3 holds the file, whole and in order");

    // A second resume has nothing to send.
    let again = c.run(&["resume", &id, "big.bin", "--json"]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stderr.contains("is already completed"), "{}", again.stderr);
    assert_eq!(again.json()["status"], "completed");

    // Downloaded under its own name into the current folder, verified.
    let down = c.dir.join("down");
    std::fs::create_dir(&down).unwrap();
    let get = c.run_in(&down, &["get", &id], &[]).await;
    assert_eq!(get.code, Some(0), "{get:?}");
    assert_eq!(get.stdout(), "big.bin\n");
    assert!(get.stderr.contains("SHA256 checksum verified"), "{}", get.stderr);
    assert!(std::fs::read(down.join("big.bin")).unwrap() == data, "the bytes read back are the bytes sent");
    let names: Vec<_> = std::fs::read_dir(&down).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("big.bin")], "no temporary file left");
    // An existing file is kept unless --force.
    let refused = c.run_in(&down, &["get", &id], &[]).await;
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(refused.stderr.contains("big.bin exists: use --force to replace it"), "{}", refused.stderr);
    // To stdout.
    let piped = c.run(&["get", &id, "-", "--quiet"]).await;
    assert_eq!(piped.code, Some(0), "{}", piped.stderr);
    assert!(piped.stdout == data);

    // show and ls report it.
    let show = c.run(&["show", &id, "--json"]).await.json();
    assert_eq!((show["status"].as_str(), show["size"].as_u64()), (Some("completed"), Some(data.len() as u64)));
    assert_eq!(show["checksum"]["value"], sha256_composite(&data, PART));
    let ls = c.run(&["ls", "--json"]).await;
    assert_eq!(ls.code, Some(0), "{ls:?}");
    let listed = ls.json();
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["upload_id"].as_str(), listed[0]["status"].as_str()), (Some(id.as_str()), Some("completed")));
    let table = c.run(&["ls"]).await.stdout();
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&id) && l.contains("completed") && l.ends_with("big.bin")), "{table}");
}

#[tokio::test]
async fn ctrl_c_and_a_crash_are_resumable() {
    let c = Client::start("crash", S3::Moto).await;
    // Twelve parts and a tail, so that the signals land halfway (sending
    // one part to moto takes about 0.1 s here).
    const PARTS: u64 = 13;
    let data = bytes(12 * PART + 5, 42);
    c.write("data.bin", &data);

    // Ctrl-C once S3 holds a part.
    let mut put = c.command(&c.dir, &["put", "data.bin", "--part-size", "5MiB", "--jobs", "1"]);
    let mut child = put.stderr(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().expect("a line on stderr");
    let id = created_id(&first);
    let (cr, idr) = (&c, id.as_str());
    let some_part = || async move { cr.parts_in_s3(idr).await.is_none_or(|p| !p.is_empty()) };
    assert!(eventually(30, some_part).await, "no part arrived");
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().unwrap().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().await.unwrap();
    let mut rest = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push(l);
    }
    let rest = rest.join("\n");
    eprintln!("put, Ctrl-C -> {:?}\n{first}\n{rest}", status.code());
    if status.code() == Some(130) {
        assert!(rest.contains(&format!("error: interrupted; finish with: uploads resume {id} data.bin")), "{rest}");
    } else {
        // Every part and the confirm were faster than the signal.
        assert_eq!(status.code(), Some(0), "{rest}");
        eprintln!("the put finished before Ctrl-C reached it");
    }

    // A crash (SIGKILL) of a resume, once it has sent another part.
    if let Some(held) = c.parts_in_s3(&id).await.filter(|p| (p.len() as u64) < PARTS) {
        let mut resume = c.command(&c.dir, &["resume", &id, "data.bin", "--jobs", "1"]);
        let mut child = resume.stderr(Stdio::null()).stdout(Stdio::null()).spawn().unwrap();
        let held = held.len();
        let another = || async move { cr.parts_in_s3(idr).await.is_none_or(|p| p.len() > held) };
        let more = eventually(30, another).await;
        child.kill().await.unwrap();
        assert!(more, "the resume sent nothing");
        eprintln!("resume killed (SIGKILL) with {:?} in S3", c.parts_in_s3(&id).await);
    }

    // What S3 holds now (a part in flight when the process died is not
    // there), and a resume that sends exactly the rest.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(held) = c.parts_in_s3(&id).await {
        let missing: Vec<u64> = (1..=PARTS).filter(|n| !held.contains(&(*n as u32))).collect();
        let resume = c.run(&["resume", &id, "data.bin"]).await;
        assert_eq!(resume.code, Some(0), "{resume:?}");
        let expected = if missing.is_empty() {
            format!("resuming {id}: all {PARTS} part(s) are stored already")
        } else {
            let ranges = uploads::plan::ranges(&missing);
            format!("resuming {id}: {} of {PARTS} part(s) missing ({ranges})", missing.len())
        };
        assert!(resume.stderr.contains(&expected), "{expected:?} not in {}", resume.stderr);
        assert!(resume.stderr.contains(&format!("uploaded {id}: {} part(s) sent", missing.len())), "{}", resume.stderr);
    }
    assert_eq!(c.s3_bytes(&id).await, data);
    let get = c.run(&["get", &id, "copy.bin"]).await;
    assert_eq!(get.code, Some(0), "{get:?}");
    assert!(std::fs::read(c.dir.join("copy.bin")).unwrap() == data);
}

#[tokio::test]
async fn single_put_with_crc32c_then_rm() {
    crc32c_then_rm(S3::Moto).await;
}

#[tokio::test]
async fn single_put_with_crc32c_then_rm_on_a_verifying_s3() {
    crc32c_then_rm(S3::Verifying).await;
}

async fn crc32c_then_rm(s3: S3) {
    let c = Client::start("rm", s3).await;
    let data = bytes(300_000, 43);
    c.write("notes.txt", &data);
    let put = c.run(&["put", "notes.txt", "--checksum", "crc32c", "--json"]).await;
    assert_eq!(put.code, Some(0), "{put:?}");
    let view = put.json();
    let id = view["upload_id"].as_str().unwrap().to_owned();
    assert!(
        put.stderr.contains(&format!("upload {id} created: one PUT of 293.0 KiB, CRC32C checksums")),
        "{}",
        put.stderr
    );
    assert_eq!(view["status"], "completed");
    assert_eq!(view["content_type"], "text/plain", "guessed from the extension");
    assert_eq!(view["checksum"]["type"], "FULL_OBJECT", "{view}");
    assert_eq!(view["checksum"]["value"], encode(&Algorithm::Crc32c.digest(&data)));

    let get = c.run(&["get", &id, "back.txt"]).await;
    assert_eq!(get.code, Some(0), "{get:?}");
    assert!(get.stderr.contains("CRC32C checksum verified"), "{}", get.stderr);
    assert!(std::fs::read(c.dir.join("back.txt")).unwrap() == data);

    let rm = c.run(&["rm", &id]).await;
    assert_eq!(rm.code, Some(0), "{rm:?}");
    assert_eq!(rm.stdout(), format!("Upload {id} deleted successfully\n"));
    assert!(c.t.drain_cleanup().await >= 1);
    assert!(c.t.all_keys().await.is_empty(), "no object left after cleanup");

    for args in [vec!["show", &id], vec!["get", &id], vec!["rm", &id]] {
        let gone = c.run(&args).await;
        assert_eq!(gone.code, Some(3), "{gone:?}");
        assert_eq!(gone.stderr.trim_end(), "error: Upload not found (HTTP 404)");
    }
}

#[tokio::test]
async fn exit_codes() {
    let c = Client::start("codes", S3::Moto).await;

    // 3: an id nobody has.
    let unknown = UploadId::generate();
    let run = c.run(&["show", unknown.as_str()]).await;
    assert_eq!((run.code, run.stderr.trim_end()), (Some(3), "error: Upload not found (HTTP 404)"));

    // 2: a key the API does not know.
    let stranger = ApiKey::generate();
    let run = c.run_in(&c.dir, &["ls"], &[("UPLOADS_API_KEY", stranger.expose())]).await;
    assert_eq!((run.code, run.stderr.trim_end()), (Some(2), "error: Unauthorized (HTTP 401)"));

    // 1: local errors, before any request.
    let run = c.run(&["put", "missing.bin"]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.starts_with("error: missing.bin: "), "{}", run.stderr);
    for args in [
        vec!["put"],
        vec!["frobnicate"],
        vec!["show", "not-an-id"],
        vec!["put", "x", "--checksum", "md5"],
        vec!["put", "x", "--part-size", "1MiB"],
    ] {
        c.write("x", b"x");
        let run = c.run(&args).await;
        assert_eq!(run.code, Some(1), "{args:?}: {run:?}");
    }
    let run = c.run_in(&c.dir, &["ls"], &[("UPLOADS_URL", "")]).await;
    assert_eq!((run.code, run.stderr.trim_end()), (Some(1), "error: no API URL: pass --url or set UPLOADS_URL"));

    // 5: nothing listening, after the retries.
    let closed = format!("http://127.0.0.1:{}", local::moto::free_port().unwrap());
    let run = c.run(&["ls", "--retries", "1", "--url", &closed]).await;
    assert_eq!(run.code, Some(5), "{run:?}");
    assert!(run.stderr.contains(&format!("error: cannot reach {closed}")), "{}", run.stderr);

    // 4: an upload whose bytes are not the ones its checksum describes.
    forged(&c, S3::Moto).await;
    let left: Vec<_> = std::fs::read_dir(&c.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("x")], "no output file and no temporary file");
}

#[tokio::test]
async fn forged_bytes_on_a_verifying_s3() {
    let c = Client::start("forged", S3::Verifying).await;
    forged(&c, S3::Verifying).await;
    let left: Vec<_> = std::fs::read_dir(&c.dir).unwrap().collect();
    assert!(left.is_empty(), "no output file and no temporary file");
}

/// A session made through the API (the client's library) declaring the
/// SHA-256 of other bytes than the ones sent. moto keeps whatever checksum
/// a client declares, so the `PUT` and the confirm succeed and `get` finds
/// the mismatch; an S3 that checks checksums refuses the `PUT`
/// (`BadDigest`), as it does when `uploads resume` sends those bytes.
/// Either way: exit 4.
async fn forged(c: &Client, s3: S3) {
    let api = uploads::api::Api::new(&c.api.base, c.key.expose(), 2, uploads::ui::Ui::silent()).unwrap();
    let data = bytes(70_000, 44);
    let claimed = encode(&Algorithm::Sha256.digest(b"other bytes"));
    let created = api
        .create(&uploads::api::NewUpload {
            filename: "forged.bin".into(),
            content_type: "application/octet-stream".into(),
            size: data.len() as u64,
            part_size: Some(PART as u64),
            checksum_algorithm: Some(uploads::api::ChecksumAlgorithm::Sha256),
            checksums: Some(vec![claimed.clone()]),
        })
        .await
        .unwrap();
    let id = created.view.upload_id.clone();
    let put = &created.view.upload.as_ref().unwrap().puts()[0];
    assert_eq!(put.headers.get("x-amz-checksum-sha256"), Some(&claimed), "the checksum is signed into the URL");
    let mut req = reqwest::Client::new().put(&put.url).body(data.clone());
    for (k, v) in &put.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let stored = req.send().await.unwrap();
    if s3 == S3::Moto {
        assert_eq!(stored.status(), 200);
        match api.confirm(&id).await.unwrap() {
            uploads::api::Confirmed::Done(done) => assert_eq!(done.view.status, uploads::api::Status::Completed),
            other => panic!("{other:?}"),
        }
        let run = c.run(&["get", &id, "forged.bin"]).await;
        assert_eq!(run.code, Some(4), "{run:?}");
        let actual = encode(&Algorithm::Sha256.digest(&data));
        let message =
            format!("error: checksum mismatch: upload {id} declares SHA256 {claimed}, the bytes downloaded have {actual}; nothing written");
        assert!(run.stderr.contains(&message), "{}", run.stderr);
    } else {
        // An S3 that checks checksums refuses those bytes (BadDigest), and
        // so it does when the client sends them.
        assert_eq!(stored.status(), 400);
        assert_eq!(c.run(&["show", &id, "--json"]).await.json()["status"], "pending");
        assert!(stored.text().await.unwrap().contains("BadDigest"));
        c.write("forged.bin", &data);
        let run = c.run(&["resume", &id, "forged.bin"]).await;
        assert_eq!(run.code, Some(4), "{run:?}");
        assert!(run.stderr.contains("part 1: S3 refused the bytes"), "{}", run.stderr);
        std::fs::remove_file(c.dir.join("forged.bin")).unwrap();
    }
}
