//! `cargo xtask bench`: every function's release binary, run as a process
//! through our Lambda Runtime API against the local stack, measured.
//!
//! Each scenario gets a stack of its own (a fresh moto server and the
//! template's table, bucket and queues in it), data made directly through
//! the shared crate's store and the S3 client, and one instance of the
//! function under test whose `AWS_ENDPOINT_URL` points at a counting
//! proxy ([`local::wire`]) in front of moto. The events are the ones API
//! Gateway, the SQS event source mapping and EventBridge hand the function
//! (built by [`local::apigw`] and [`local::feeder`]); every answer is
//! checked, so a run that measures errors fails instead.
//!
//! Per invocation the bench records the latency as the Runtime API sees it
//! (event handed out on `/next` to response received), the AWS calls the
//! function made (counted on the wire by the proxy, filtered by the
//! function's access key id) and the time those calls were in flight (the
//! union of their round trips through the proxy to moto); the rest is the
//! function's own time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use futures::stream::{self, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use shared::domain::{ApiKey, Multipart, ObjectKey, OwnerId, Session, Status, Timestamp, UploadId};
use shared::queue::CleanupMessage;
use shared::store::{CleanupTask, Store};
use shared::Config;

use local::apigw::{parse_response, rest_event, ProxyRequest};
use local::moto::{self, Moto};
use local::project_root;
use local::runtime::{uuid_like, FunctionHost, Outcome, Scaling};
use local::stack::Stack;
use local::template::Function;
use local::wire::{Call, Proxy};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// What one owner may hold and keep pending in the scenarios that create
/// sessions through the function (the defaults, 10 GiB and 100 pending,
/// would refuse the 200th create of one owner).
const BENCH_OVERRIDES: &[(&str, &str)] = &[("QuotaBytes", "1099511627776"), ("MaxPendingUploads", "100000")];
/// The store-level limits the bench's own setup writes under.
const SETUP_QUOTA: u64 = 1 << 50;
const SETUP_MAX_PENDING: u64 = 1_000_000;
/// Requests the setup keeps in flight (moto serves one at a time anyway).
const SETUP_CONCURRENCY: usize = 8;
/// The concurrency of the throughput column's second figure.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, Clone)]
pub struct Options {
    /// Warm invocations per function (cleanup: batches, sweeper: idle sweeps, see [`Scenario::runs`]).
    pub iterations: usize,
    /// Scenarios whose function or label contains one of these (case-insensitive).
    pub only: Vec<String>,
    /// The large end of the scaling runs (cleanup batch, list walk, sweep).
    pub scale: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { iterations: 200, only: Vec::new(), scale: 1000 }
    }
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options::default();
        let mut i = 0;
        while i < args.len() {
            let value = || args.get(i + 1).ok_or_else(|| anyhow!("{} needs a value", args[i]));
            match args[i].as_str() {
                "--iterations" => o.iterations = value()?.parse().context("--iterations takes a whole number")?,
                "--only" => o.only.extend(value()?.split(',').map(|s| s.trim().to_ascii_lowercase())),
                "--scale" => o.scale = value()?.parse().context("--scale takes a whole number")?,
                other => bail!("unknown bench option {other}"),
            }
            i += 2;
        }
        if o.iterations == 0 {
            bail!("--iterations must be at least 1");
        }
        if o.scale < 10 {
            bail!("--scale must be at least 10");
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- figures

/// The `p`th percentile (0 < p <= 100) of `sorted`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// How long at least one of `calls` was in flight: the union of their
/// round trips (calls made concurrently count once).
pub fn busy_time(calls: &[Call]) -> Duration {
    let mut spans: Vec<(Instant, Instant)> = calls.iter().map(|c| (c.arrived, c.answered)).collect();
    spans.sort();
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn fmt_ms(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// `op ×n` for each operation, average per `per` (one decimal when not whole).
fn fmt_calls(calls: &BTreeMap<String, usize>, per: usize) -> String {
    if calls.is_empty() {
        return "none".into();
    }
    let per = per.max(1) as f64;
    calls
        .iter()
        .map(|(op, n)| {
            let v = *n as f64 / per;
            let v = if (v - v.round()).abs() < 0.005 { format!("{v:.0}") } else { format!("{v:.2}") };
            format!("{op} ×{v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_ops(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in calls {
        *out.entry(c.operation.clone()).or_default() += 1;
    }
    out
}

/// Peak resident set (`VmHWM`) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn host_rss_kib(host: &FunctionHost) -> Option<u64> {
    host.pids().await.into_iter().filter_map(peak_rss_kib).max()
}

/// CPU time a process has used so far (user and system), from
/// `/proc/<pid>/stat`, in clock ticks of 10 ms (Linux reports USER_HZ = 100).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

const TICK: Duration = Duration::from_millis(10);

async fn host_cpu(host: &FunctionHost) -> Option<Duration> {
    let pids = host.pids().await;
    let ticks: Option<u64> = pids.iter().map(|p| cpu_ticks(*p)).sum();
    ticks.filter(|_| !pids.is_empty()).map(|t| TICK * t as u32)
}

// ---------------------------------------------------------------- binaries

/// The Python/boto3 peer's script.
pub fn peer_path() -> PathBuf {
    project_root().join("bench").join("peer").join("peer.py")
}

/// Where cargo puts a workspace binary of the release profile.
pub fn release_path(binary: &str) -> PathBuf {
    local::runtime::profile_path("release", binary)
}

/// The instruction set an ELF file is built for.
fn elf_arch(path: &Path) -> &'static str {
    let Ok(bytes) = std::fs::read(path) else { return "unknown" };
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return "unknown";
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        0x3e => "x86_64",
        0xb7 => "arm64",
        _ => "other",
    }
}

/// The deployment zip of one function: its size and what was zipped.
#[derive(Debug, Clone)]
pub struct ZipFigure {
    pub bytes: u64,
    /// What was zipped, with `<function>` for the binary's name.
    pub source: String,
}

/// `zip -9` of the function's `bootstrap`: cargo-lambda's build in
/// `target/lambda/<binary>/bootstrap` when there is one (what `sam build`
/// deploys), else the native release binary.
pub fn zip_figure(binary: &str, work: &Path) -> Result<ZipFigure> {
    let lambda = project_root().join("target").join("lambda").join(binary).join("bootstrap");
    let (path, source) = if lambda.exists() {
        (lambda.clone(), format!("`target/lambda/<function>/bootstrap` ({}, cargo-lambda's build)", elf_arch(&lambda)))
    } else {
        let native = release_path(binary);
        let arch = elf_arch(&native);
        (
            native,
            format!("the native release binary `target/release/<function>` ({arch}; no cargo-lambda build in `target/lambda/`)"),
        )
    };
    let dir = work.join(binary);
    std::fs::create_dir_all(&dir)?;
    let bootstrap = dir.join("bootstrap");
    std::fs::copy(&path, &bootstrap).with_context(|| format!("copying {}", path.display()))?;
    let zip = dir.join("bootstrap.zip");
    let _ = std::fs::remove_file(&zip);
    let zipped = std::process::Command::new("zip")
        .args(["-9", "-q", "-X"])
        .arg(&zip)
        .arg("bootstrap")
        .current_dir(&dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !zipped {
        // No `zip` on this machine: the same DEFLATE level 9 through Python.
        let status = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
            .args([
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED, compresslevel=9).write(sys.argv[2], 'bootstrap')",
            ])
            .arg(&zip)
            .arg(&bootstrap)
            .status()
            .context("zipping with python3")?;
        if !status.success() {
            bail!("neither zip nor python3 could zip {}", bootstrap.display());
        }
    }
    Ok(ZipFigure { bytes: std::fs::metadata(&zip)?.len(), source })
}

// ---------------------------------------------------------------- scenarios

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CreateSingle,
    CreateMultipart,
    Get,
    List,
    ConfirmSingle,
    ConfirmMultipart,
    Resume,
    Delete,
    Cleanup,
    Sweeper,
}

#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub kind: Kind,
    /// The function's logical id in `template.yaml`.
    pub function: &'static str,
    pub label: &'static str,
    pub overrides: &'static [(&'static str, &'static str)],
    /// Run the Python/boto3 peer (`bench/peer/peer.py`) with this
    /// `PEER_HANDLER` instead of the function's binary.
    pub peer: Option<&'static str>,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        kind: Kind::CreateSingle,
        function: "CreateUpload",
        label: "create-upload: single PUT (1 KiB)",
        overrides: BENCH_OVERRIDES,
        peer: None,
    },
    Scenario {
        kind: Kind::CreateMultipart,
        function: "CreateUpload",
        label: "create-upload: multipart (100 MiB, 7 parts)",
        overrides: BENCH_OVERRIDES,
        peer: None,
    },
    Scenario {
        kind: Kind::Get,
        function: "GetUpload",
        label: "get-upload: completed upload",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::List,
        function: "ListUploads",
        label: "list-uploads: page of 10 (owner with `scale` sessions)",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::ConfirmSingle,
        function: "ConfirmUpload",
        label: "confirm-upload: single PUT (1 KiB)",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::ConfirmMultipart,
        function: "ConfirmUpload",
        label: "confirm-upload: multipart (1 part of 1 KiB)",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::Resume,
        function: "ResumeUpload",
        label: "resume-upload: 4 parts, 1 sent",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::Delete,
        function: "DeleteUpload",
        label: "delete-upload: completed upload",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::Cleanup,
        function: "Cleanup",
        label: "cleanup: batch of 10 messages",
        overrides: &[],
        peer: None,
    },
    Scenario {
        kind: Kind::Delete,
        function: "DeleteUpload",
        label: "delete-upload, Python/boto3 peer: completed upload",
        overrides: &[],
        peer: Some("delete"),
    },
    Scenario {
        kind: Kind::Cleanup,
        function: "Cleanup",
        label: "cleanup, Python/boto3 peer: batch of 10 messages",
        overrides: &[],
        peer: Some("cleanup"),
    },
    Scenario { kind: Kind::Sweeper, function: "Sweeper", label: "sweeper: nothing due", overrides: &[], peer: None },
];

impl Scenario {
    /// Warm invocations for `iterations`: a cleanup run handles 10 messages
    /// (ten cleanup tasks to prepare each), an idle sweep reads every shard of
    /// the due index (64 queries), so those run a tenth and a quarter as often.
    pub fn runs(&self, iterations: usize) -> usize {
        match self.kind {
            Kind::Cleanup => (iterations / 10).max(5),
            Kind::Sweeper => (iterations / 4).max(5),
            _ => iterations,
        }
    }

    fn label(&self, scale: usize) -> String {
        self.label.replace("`scale`", &format!("{scale}"))
    }

    pub fn selected(&self, only: &[String]) -> bool {
        let package = self.label.split(':').next().unwrap_or_default();
        only.is_empty()
            || only.iter().any(|o| {
                package == o || self.function.eq_ignore_ascii_case(o) || self.label.to_ascii_lowercase().contains(o)
            })
    }
}

/// One scenario's stack: moto, the template's resources, the proxy in
/// front of moto, and one owner with a key.
struct Env {
    moto: Moto,
    stack: Stack,
    proxy: Proxy,
    config: Config,
    store: Store,
    s3: aws_sdk_s3::Client,
    owner: OwnerId,
    key: ApiKey,
}

impl Env {
    async fn new(overrides: &[(&str, &str)]) -> Result<Self> {
        let moto = Moto::start(moto::free_port()?).await?;
        let overrides = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let stack = Stack::provision_with(&moto.endpoint, "bench", overrides).await?;
        let proxy = Proxy::start(&moto.endpoint).await?;
        let config = stack.config()?;
        let store = stack.store()?;
        let owner = OwnerId::parse("bench-owner").ok_or_else(|| anyhow!("owner id"))?;
        let key = ApiKey::generate();
        store.put_api_key(&key, &owner).await.map_err(|e| anyhow!(shared::error::chain(&e)))?;
        Ok(Env { s3: stack.s3_client(), store, config, proxy, stack, moto, owner, key })
    }

    async fn stop(self) {
        drop(self.proxy);
        self.moto.stop().await;
    }

    fn function(&self, logical_id: &str) -> Result<Function> {
        self.stack
            .template
            .functions()?
            .into_iter()
            .find(|f| f.logical_id == logical_id)
            .ok_or_else(|| anyhow!("template.yaml has no function {logical_id}"))
    }

    /// `f`'s release binary, scaled as `scaling` says, its AWS calls
    /// through the proxy.
    async fn start(&self, f: &Function, scaling: Scaling) -> Result<FunctionHost> {
        let extra = [("AWS_ENDPOINT_URL", self.proxy.endpoint.as_str())];
        self.stack.start_executable(f, release_path(&f.binary), false, &extra, scaling).await
    }

    /// The Python/boto3 peer in `f`'s place, with `f`'s environment, run by
    /// the emulator's virtualenv (which has boto3) with `PEER_HANDLER=handler`.
    async fn start_peer(&self, f: &Function, handler: &str) -> Result<FunctionHost> {
        let venv_bin = project_root().join(".venv").join("bin");
        let path = format!("{}:{}", venv_bin.display(), std::env::var("PATH").unwrap_or_default());
        let extra = [
            ("AWS_ENDPOINT_URL", self.proxy.endpoint.as_str()),
            ("PATH", path.as_str()),
            ("PEER_HANDLER", handler),
            ("PYTHONDONTWRITEBYTECODE", "1"),
        ];
        self.stack.start_executable(f, peer_path(), false, &extra, Scaling::instances(1)).await
    }

    // ---- data, made as the functions' own store and objects make it

    fn session(&self, size: u64, multipart: Option<Multipart>, created_at: Timestamp, expiry: i64) -> Session {
        let id = UploadId::generate();
        Session {
            object_key: ObjectKey::for_upload(&self.owner, &id),
            id,
            owner: self.owner.clone(),
            status: Status::Pending,
            filename: "report.pdf".into(),
            content_type: "application/pdf".into(),
            size,
            multipart,
            checksums: None,
            created_at,
            expires_at: created_at.plus_seconds(expiry),
            completed_at: None,
            completing_since: None,
            token_id: None,
            version: 0,
        }
    }

    async fn create(&self, session: &Session) -> Result<()> {
        self.store
            .create_session(session, SETUP_QUOTA, SETUP_MAX_PENDING)
            .await
            .map_err(|e| anyhow!(shared::error::chain(&e)))
    }

    /// The bytes a client's presigned `PUT` would store, tagged pending as
    /// that `PUT`'s signed header tags them.
    async fn put_object(&self, key: &ObjectKey, len: usize) -> Result<()> {
        self.s3
            .put_object()
            .bucket(&self.config.bucket_name)
            .key(key.as_str())
            .tagging("upload-state=pending")
            .body(ByteStream::from(vec![7u8; len]))
            .send()
            .await
            .context("PutObject")?;
        Ok(())
    }

    /// A pending single-`PUT` session whose bytes (`len`) are in S3, or not.
    async fn pending_single(&self, len: u64, with_bytes: bool) -> Result<Session> {
        let s = self.session(len, None, Timestamp::now(), 86_400);
        self.create(&s).await?;
        if with_bytes {
            self.put_object(&s.object_key, len as usize).await?;
        }
        Ok(s)
    }

    /// A completed single-`PUT` session (its bytes in S3 when `with_bytes`).
    async fn completed(&self, len: u64, with_bytes: bool) -> Result<Session> {
        let s = self.pending_single(len, with_bytes).await?;
        self.store.complete_session(&self.owner, &s.id).await.map_err(|e| anyhow!("complete_session: {e:?}"))
    }

    /// A pending multipart session of `size` in parts of `part_size`, with
    /// parts `1..=sent` in S3.
    async fn pending_multipart(&self, size: u64, part_size: u64, sent: u32) -> Result<Session> {
        let part_count = size.div_ceil(part_size) as u32;
        let id = UploadId::generate();
        let key = ObjectKey::for_upload(&self.owner, &id);
        let bucket = &self.config.bucket_name;
        let mp = self.s3.create_multipart_upload().bucket(bucket).key(key.as_str()).send().await?;
        let s3_upload_id = mp.upload_id.ok_or_else(|| anyhow!("no multipart upload id"))?;
        for n in 1..=sent {
            let len = part_size.min(size - u64::from(n - 1) * part_size);
            self.s3
                .upload_part()
                .bucket(bucket)
                .key(key.as_str())
                .upload_id(&s3_upload_id)
                .part_number(n as i32)
                .body(ByteStream::from(vec![n as u8; len as usize]))
                .send()
                .await
                .context("UploadPart")?;
        }
        let mut s =
            self.session(size, Some(Multipart { s3_upload_id, part_size, part_count }), Timestamp::now(), 86_400);
        s.id = id;
        s.object_key = key;
        self.create(&s).await?;
        Ok(s)
    }

    /// `n` of `make`, made `SETUP_CONCURRENCY` at a time.
    async fn many<T, F, Fut>(&self, n: usize, make: F) -> Result<Vec<T>>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        stream::iter(0..n).map(make).buffer_unordered(SETUP_CONCURRENCY).try_collect().await
    }

    /// The cleanup messages of `n` deleted uploads, as the event source
    /// mapping delivers them, and the state those deletions leave: per
    /// upload a durable task (the store's own task item, as the delete
    /// transaction writes it) and the upload's 1 KiB object, still in S3.
    /// The task's final pass is `PresignedUrlTtlSeconds` + 60 s away (a
    /// first pass, as cleanup runs right after a deletion), or, with
    /// `final_pass_due`, already past (the pass the sweeper re-drives).
    ///
    /// Neither the sessions nor the queue are gone through: in moto every
    /// transaction copies the whole table and every receive scans the whole
    /// queue, which would make a 1,000-message batch take minutes to set up
    /// while leaving exactly this state. So the messages are made here, with
    /// the body the delete path sends and fresh ids and receipt handles.
    async fn cleanup_messages(&self, n: usize, final_pass_due: bool) -> Result<Vec<aws_sdk_sqs::types::Message>> {
        use aws_sdk_sqs::types::{Message, MessageSystemAttributeName as Attr};
        let delay = self.config.uploads.url_ttl_seconds + shared::deletion::FINAL_PASS_MARGIN_SECONDS;
        self.many(n, |_| async move {
            let s = self.session(KIB, None, Timestamp::now(), 86_400);
            self.put_object(&s.object_key, KIB as usize).await?;
            let deleted_at = if final_pass_due { Timestamp::now().plus_seconds(-delay - 1) } else { Timestamp::now() };
            let task =
                CleanupTask::for_session(&s, &self.config.bucket_name, deleted_at, deleted_at.plus_seconds(delay));
            self.store.put_cleanup_task(&task).await.map_err(|e| anyhow!(shared::error::chain(&e)))?;
            let sent = Timestamp::now().unix_millis().to_string();
            Ok(Message::builder()
                .message_id(uuid_like())
                .receipt_handle(format!("{}{}", uuid_like(), uuid_like()))
                .body(serde_json::to_string(&CleanupMessage::new(&s.id))?)
                .attributes(Attr::ApproximateReceiveCount, "1")
                .attributes(Attr::SentTimestamp, sent.clone())
                .attributes(Attr::ApproximateFirstReceiveTimestamp, sent)
                .attributes(Attr::SenderId, "DeleteUpload")
                .build())
        })
        .await
    }

    /// `n` pending sessions that expired a day ago (no bytes sent).
    async fn expired(&self, n: usize) -> Result<()> {
        let created = Timestamp::now().plus_seconds(-2 * 86_400);
        self.many(n, |_| async move {
            let s = self.session(KIB, None, created, 86_400);
            self.create(&s).await
        })
        .await?;
        Ok(())
    }

    // ---- events

    /// The proxy event API Gateway hands the function for this request.
    fn api(&self, method: &str, path: &str, resource: &str, query: &[(&str, String)], body: Option<Value>) -> Value {
        let mut headers = vec![
            ("host".to_owned(), "api.bench.local".to_owned()),
            ("user-agent".to_owned(), "xtask-bench".to_owned()),
            ("x-api-key".to_owned(), self.key.expose().to_owned()),
        ];
        if body.is_some() {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        rest_event(&ProxyRequest {
            method: method.into(),
            path: path.into(),
            resource: resource.into(),
            path_parameters: local::gateway::match_path(resource, path).unwrap_or_default(),
            headers,
            query: query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            body: body.map(|b| b.to_string().into_bytes()),
            source_ip: "127.0.0.1".into(),
            request_id: uuid_like(),
        })
    }

    fn create_event(&self, size: u64) -> Value {
        self.api(
            "POST",
            "/uploads",
            "/uploads",
            &[],
            Some(json!({ "filename": "report.pdf", "content_type": "application/pdf", "size": size })),
        )
    }

    fn on_upload(&self, method: &str, id: &UploadId, action: &str) -> Value {
        let (path, resource) = match action {
            "" => (format!("/uploads/{id}"), "/uploads/{upload_id}".to_owned()),
            a => (format!("/uploads/{id}/{a}"), format!("/uploads/{{upload_id}}/{a}")),
        };
        self.api(method, &path, &resource, &[], None)
    }

    fn list_event(&self, limit: usize, cursor: Option<&str>) -> Value {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        self.api("GET", "/uploads", "/uploads", &query, None)
    }

    fn cleanup_event(&self, messages: &[aws_sdk_sqs::types::Message]) -> Result<Value> {
        Ok(local::feeder::sqs_event(messages, &self.stack.physical("CleanupQueue")?.arn))
    }
}

/// What an invocation must answer for the bench to count it.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Status(u16),
    /// No batch item failures.
    CleanBatch,
    /// A sweep that expired exactly this many sessions and failed none.
    Expired(usize),
}

fn check(outcome: &Outcome, expect: Expect) -> Result<()> {
    let v = match outcome {
        Outcome::Response(v) => v,
        Outcome::Error(e) => bail!("the function failed: {e}"),
    };
    match expect {
        Expect::Status(want) => {
            let r = parse_response(v)?;
            if r.status != want {
                bail!("answered {} instead of {want}: {}", r.status, String::from_utf8_lossy(&r.body));
            }
        }
        Expect::CleanBatch => {
            let failures = v.get("batchItemFailures").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            if failures > 0 {
                bail!("{failures} messages failed: {v}");
            }
        }
        Expect::Expired(n) => {
            let expired = v.get("expired").and_then(Value::as_u64).unwrap_or(u64::MAX) as usize;
            let failed = v.get("failed").and_then(Value::as_u64).unwrap_or(u64::MAX);
            if expired != n || failed != 0 {
                bail!("the sweep expired {expired} of {n} sessions, {failed} failed: {v}");
            }
        }
    }
    Ok(())
}

/// One measured invocation.
#[derive(Debug, Clone)]
struct Sample {
    latency: Duration,
    wire: Duration,
    calls: Vec<Call>,
}

impl Sample {
    fn own(&self) -> Duration {
        self.latency.saturating_sub(self.wire)
    }
}

/// Invokes `host` with `event`, checks the answer, and collects the calls
/// signed by the function that crossed the proxy meanwhile.
async fn measure(host: &FunctionHost, proxy: &Proxy, event: &Value, expect: Expect) -> Result<(Outcome, Sample)> {
    let mark = proxy.len();
    let result = host.invoke_timed(event).await;
    let calls: Vec<Call> = proxy.calls_since(mark).into_iter().filter(|c| c.signer == host.name).collect();
    let meanwhile =
        || format!("its AWS calls meanwhile: {} in {:.0} ms", fmt_calls(&count_ops(&calls), 1), ms(busy_time(&calls)));
    let (outcome, latency) = result.with_context(meanwhile)?;
    check(&outcome, expect).with_context(|| format!("{} answered unexpectedly; {}", host.name, meanwhile()))?;
    let wire = busy_time(&calls);
    Ok((outcome, Sample { latency, wire, calls }))
}

async fn wait_init(host: &FunctionHost) -> Result<Duration> {
    let started = Instant::now();
    loop {
        if let Some(d) = host.init_time() {
            return Ok(d);
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("{} did not poll the Runtime API within 30 s: {:?}", host.name, host.logs());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The events of `n` invocations of `kind` (its data made first) and what
/// each must answer.
async fn prepare(kind: Kind, env: &Env, n: usize) -> Result<(Vec<Value>, Expect)> {
    Ok(match kind {
        Kind::CreateSingle => ((0..n).map(|_| env.create_event(KIB)).collect(), Expect::Status(201)),
        Kind::CreateMultipart => ((0..n).map(|_| env.create_event(100 * MIB)).collect(), Expect::Status(201)),
        Kind::Get => {
            let s = env.completed(KIB, true).await?;
            ((0..n).map(|_| env.on_upload("GET", &s.id, "")).collect(), Expect::Status(200))
        }
        Kind::List => ((0..n).map(|_| env.list_event(10, None)).collect(), Expect::Status(200)),
        Kind::ConfirmSingle => {
            let sessions = env.many(n, |_| env.pending_single(KIB, true)).await?;
            (sessions.iter().map(|s| env.on_upload("POST", &s.id, "confirm")).collect(), Expect::Status(200))
        }
        Kind::ConfirmMultipart => {
            let sessions = env.many(n, |_| env.pending_multipart(KIB, 16 * MIB, 1)).await?;
            (sessions.iter().map(|s| env.on_upload("POST", &s.id, "confirm")).collect(), Expect::Status(200))
        }
        Kind::Resume => {
            let s = env.pending_multipart(64 * MIB, 16 * MIB, 1).await?;
            ((0..n).map(|_| env.on_upload("POST", &s.id, "resume")).collect(), Expect::Status(200))
        }
        Kind::Delete => {
            let sessions = env.many(n, |_| env.completed(KIB, false)).await?;
            (sessions.iter().map(|s| env.on_upload("DELETE", &s.id, "")).collect(), Expect::Status(200))
        }
        Kind::Cleanup => {
            let messages = env.cleanup_messages(n * 10, false).await?;
            (messages.chunks(10).map(|c| env.cleanup_event(c)).collect::<Result<_>>()?, Expect::CleanBatch)
        }
        Kind::Sweeper => ((0..n).map(|_| local::feeder::scheduled_event("Sweeper")).collect(), Expect::Expired(0)),
    })
}

// ---------------------------------------------------------------- results

/// One row of the main table.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub binary: String,
    pub runs: usize,
    pub init: Duration,
    pub first: Duration,
    pub first_calls: usize,
    pub latency_ms: Vec<f64>,
    pub wire_ms: Vec<f64>,
    pub own_ms: Vec<f64>,
    pub calls: BTreeMap<String, usize>,
    pub rss_kib: Option<u64>,
    /// CPU time the process used per warm invocation, ms.
    pub cpu_ms: Option<f64>,
    pub per_second_1: f64,
    pub per_second_n: std::result::Result<f64, String>,
}

/// One run of the scaling table: `work` units handled in `invocations`.
#[derive(Debug, Clone)]
pub struct Scale {
    pub what: String,
    pub work: usize,
    pub unit: &'static str,
    pub invocations: usize,
    pub time: Duration,
    pub wire: Duration,
    pub calls: BTreeMap<String, usize>,
    pub rss_kib: Option<u64>,
}

impl Scale {
    fn from_samples(what: String, work: usize, unit: &'static str, samples: &[Sample], rss: Option<u64>) -> Self {
        let calls: Vec<Call> = samples.iter().flat_map(|s| s.calls.iter().cloned()).collect();
        Scale {
            what,
            work,
            unit,
            invocations: samples.len(),
            time: samples.iter().map(|s| s.latency).sum(),
            wire: samples.iter().map(|s| s.wire).sum(),
            calls: count_ops(&calls),
            rss_kib: rss,
        }
    }
}

/// The sample whose latency is the median of `samples`.
fn median_sample(samples: &[Sample]) -> Option<&Sample> {
    let mut order: Vec<&Sample> = samples.iter().collect();
    order.sort_by_key(|s| s.latency);
    order.get(order.len().saturating_sub(1) / 2).copied()
}

/// Runs one scenario on a stack of its own: init, first invocation, warm
/// invocations, the scaling runs of its kind, and the throughput of one
/// process at [`CONCURRENCY`].
async fn run_scenario(sc: &Scenario, opts: &Options) -> Result<(Row, Vec<Scale>)> {
    let env = Env::new(sc.overrides).await?;
    let f = env.function(sc.function)?;
    let runs = sc.runs(opts.iterations);
    let setup = Instant::now();
    if sc.kind == Kind::List {
        env.many(opts.scale, |_| async { env.pending_single(KIB, false).await.map(drop) }).await?;
    }
    let (events, expect) = prepare(sc.kind, &env, runs + 1).await?;
    eprintln!("  setup {:.1} s", setup.elapsed().as_secs_f64());

    let host = match sc.peer {
        None => env.start(&f, Scaling::instances(1)).await?,
        Some(handler) => env.start_peer(&f, handler).await?,
    };
    let init = wait_init(&host).await?;
    let (_, first) = measure(&host, &env.proxy, &events[0], expect).await?;
    let mut warm = Vec::with_capacity(runs);
    let cpu_before = host_cpu(&host).await;
    let started = Instant::now();
    for event in &events[1..] {
        warm.push(measure(&host, &env.proxy, event, expect).await?.1);
    }
    let warm_wall = started.elapsed();
    let cpu = match (cpu_before, host_cpu(&host).await) {
        (Some(before), Some(after)) => Some(ms(after.saturating_sub(before)) / runs as f64),
        _ => None,
    };
    let rss = host_rss_kib(&host).await;
    // The peer does the measured path only: no scaling runs (their final
    // pass is not in it), and it takes one invocation at a time.
    let scales = match sc.peer {
        None => scale(sc, &env, &host, &warm, opts).await?,
        Some(_) => Vec::new(),
    };
    drop(host);

    let per_second_n = match sc.kind {
        _ if sc.peer.is_some() => Err("the peer takes one invocation at a time".to_owned()),
        Kind::Sweeper => Err("one sweep at a time (reserved concurrency 1)".to_owned()),
        _ => throughput_one_process(sc, &env, &f, CONCURRENCY).await,
    };
    env.stop().await;

    let all_calls: Vec<Call> = warm.iter().flat_map(|s| s.calls.iter().cloned()).collect();
    let row = Row {
        label: sc.label(opts.scale),
        binary: match sc.peer {
            None => f.binary.clone(),
            Some(handler) => format!("peer.py ({handler})"),
        },
        runs,
        init,
        first: first.latency,
        first_calls: first.calls.len(),
        latency_ms: sorted(warm.iter().map(|s| ms(s.latency)).collect()),
        wire_ms: sorted(warm.iter().map(|s| ms(s.wire)).collect()),
        own_ms: sorted(warm.iter().map(|s| ms(s.own())).collect()),
        calls: count_ops(&all_calls),
        rss_kib: rss,
        cpu_ms: cpu,
        per_second_1: runs as f64 / warm_wall.as_secs_f64(),
        per_second_n,
    };
    Ok((row, scales))
}

/// The scaling runs of a scenario, in the same (warm) process.
async fn scale(sc: &Scenario, env: &Env, host: &FunctionHost, warm: &[Sample], opts: &Options) -> Result<Vec<Scale>> {
    let mut out = Vec::new();
    let big = opts.scale;
    match sc.kind {
        Kind::Cleanup => {
            if let Some(s) = median_sample(warm) {
                let what = "cleanup: one batch, first pass (median of the warm runs)".to_owned();
                out.push(Scale::from_samples(what, 10, "messages", std::slice::from_ref(s), host_rss_kib(host).await));
            }
            for (final_pass, n) in sizes(&[100, big]).into_iter().map(|n| (false, n)).chain([(true, 10), (true, big)]) {
                let setup = Instant::now();
                let messages = env.cleanup_messages(n, final_pass).await?;
                eprintln!("  setup of {n} cleanup tasks {:.1} s", setup.elapsed().as_secs_f64());
                let (_, s) = measure(host, &env.proxy, &env.cleanup_event(&messages)?, Expect::CleanBatch).await?;
                let rss = host_rss_kib(host).await;
                let what = if final_pass { "cleanup: one batch, final pass" } else { "cleanup: one batch, first pass" };
                out.push(Scale::from_samples(what.into(), n, "messages", &[s], rss));
            }
        }
        Kind::List => {
            if let Some(s) = median_sample(warm) {
                let what = "list-uploads: one page, limit=10 (median)".to_owned();
                out.push(Scale::from_samples(what, 10, "sessions", std::slice::from_ref(s), None));
            }
            let mut pages = Vec::new();
            for _ in 0..5 {
                pages.push(measure(host, &env.proxy, &env.list_event(100, None), Expect::Status(200)).await?.1);
            }
            if let Some(s) = median_sample(&pages) {
                let what = "list-uploads: one page, limit=100 (the cap; median of 5)".to_owned();
                out.push(Scale::from_samples(what, 100, "sessions", std::slice::from_ref(s), None));
            }
            let mut walks: Vec<(Vec<Sample>, usize)> = Vec::new();
            for _ in 0..3 {
                walks.push(walk(env, host).await?);
            }
            walks.sort_by_key(|(w, _)| w.iter().map(|s| s.latency).sum::<Duration>());
            let (w, seen) = &walks[1];
            if *seen != big {
                bail!("the walk listed {seen} sessions, not {big}");
            }
            let what = format!("list-uploads: all {big}, limit=100 pages following next_cursor (median of 3)");
            out.push(Scale::from_samples(what, big, "sessions", w, host_rss_kib(host).await));
        }
        Kind::Sweeper => {
            // Each expiry is a transaction, and moto copies the whole table
            // for every one: 100 is where this stays bounded.
            for n in sizes(&[10, 100.min(big)]) {
                let setup = Instant::now();
                env.expired(n).await?;
                eprintln!("  setup of {n} expired sessions {:.1} s", setup.elapsed().as_secs_f64());
                let event = local::feeder::scheduled_event("Sweeper");
                let (_, s) = measure(host, &env.proxy, &event, Expect::Expired(n)).await?;
                let rss = host_rss_kib(host).await;
                out.push(Scale::from_samples("sweeper: one run".into(), n, "expiries", &[s], rss));
            }
        }
        _ => {}
    }
    Ok(out)
}

/// `sizes` in order, each once.
fn sizes(sizes: &[usize]) -> Vec<usize> {
    let mut out: Vec<usize> = sizes.to_vec();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every page of the owner's sessions, 100 at a time, following
/// `next_cursor`; the samples and how many sessions were listed.
async fn walk(env: &Env, host: &FunctionHost) -> Result<(Vec<Sample>, usize)> {
    let mut samples = Vec::new();
    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let (outcome, s) =
            measure(host, &env.proxy, &env.list_event(100, cursor.as_deref()), Expect::Status(200)).await?;
        samples.push(s);
        let Outcome::Response(v) = outcome else { unreachable!("checked") };
        let body = parse_response(&v)?.json()?;
        seen += body["uploads"].as_array().map(Vec::len).unwrap_or(0);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok((samples, seen)),
        }
        if samples.len() > 1000 {
            bail!("the walk did not end");
        }
    }
}

/// Invocations per second of ONE process serving `n` invocations at once
/// (`AWS_LAMBDA_MAX_CONCURRENCY=n`, as Lambda Managed Instances runs it:
/// [`Scaling::managed`]), kept `n` invocations busy over `2 n` fresh events.
/// If the process served them one at a time anyway (the most the Runtime
/// API saw handed out and unanswered at once stays below `n/2`), there is no
/// per-process figure to give.
async fn throughput_one_process(sc: &Scenario, env: &Env, f: &Function, n: usize) -> Result<f64, String> {
    let inner = async {
        let (events, expect) = prepare(sc.kind, env, 2 * n).await?;
        let host = env.start(f, Scaling::managed(n)).await?;
        wait_init(&host).await?;
        let started = Instant::now();
        stream::iter(events.iter())
            .map(|e| {
                let host = &host;
                async move { check(&host.invoke(e).await?, expect) }
            })
            .buffer_unordered(n)
            .try_collect::<Vec<()>>()
            .await?;
        let wall = started.elapsed();
        Ok::<_, anyhow::Error>((events.len() as f64 / wall.as_secs_f64(), host.busiest()))
    };
    match inner.await {
        Ok((rate, busiest)) if busiest * 2 >= n => Ok(rate),
        Ok((_, busiest)) => Err(format!("the process served at most {busiest} at once")),
        Err(e) => Err(format!("{e:#}")),
    }
}

// ---------------------------------------------------------------- the run

/// What the bench measured, ready to print.
pub struct Report {
    pub rows: Vec<Row>,
    pub scales: Vec<Scale>,
    pub zips: BTreeMap<String, ZipFigure>,
    pub iterations: usize,
}

/// Runs the selected scenarios one after the other (the release binaries
/// must be built).
pub async fn run(opts: &Options) -> Result<Report> {
    moto::ensure_installed()?;
    let work = project_root().join("target").join("bench");
    let mut zips = BTreeMap::new();
    let mut rows = Vec::new();
    let mut scales = Vec::new();
    for sc in SCENARIOS.iter().filter(|s| s.selected(&opts.only)) {
        let label = sc.label(opts.scale);
        eprintln!("bench: {label}");
        let started = Instant::now();
        let (row, s) = run_scenario(sc, opts).await.with_context(|| format!("scenario {label}"))?;
        if sc.peer.is_none() && !zips.contains_key(&row.binary) {
            zips.insert(row.binary.clone(), zip_figure(&row.binary, &work)?);
        }
        eprintln!("  done in {:.1} s", started.elapsed().as_secs_f64());
        rows.push(row);
        scales.extend(s);
    }
    if rows.is_empty() {
        bail!("--only matched no scenario");
    }
    Ok(Report { rows, scales, zips, iterations: opts.iterations })
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "–".into())
}

impl Report {
    /// The tables in Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| function: scenario | runs | zip KiB | init ms | first ms | warm p50 / p99 ms | wire p50 / p99 ms | own p50 / p99 ms | CPU ms | peak RSS MiB | AWS calls per invocation (on the wire) | inv/s, 1 at a time | inv/s, {CONCURRENCY} at once |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|");
        for r in &self.rows {
            let zip = self
                .zips
                .get(&r.binary)
                .map(|z| format!("{:.0}", z.bytes as f64 / 1024.0))
                .unwrap_or_else(|| "–".into());
            let pair = |v: &[f64]| format!("{} / {}", fmt_ms(percentile(v, 50.0)), fmt_ms(percentile(v, 99.0)));
            let n = match &r.per_second_n {
                Ok(v) => format!("{v:.0}"),
                Err(why) => format!("n/a: {why}"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} ({} calls) | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
                r.label,
                r.runs,
                zip,
                fmt_ms(ms(r.init)),
                fmt_ms(ms(r.first)),
                r.first_calls,
                pair(&r.latency_ms),
                pair(&r.wire_ms),
                pair(&r.own_ms),
                r.cpu_ms.map(|c| format!("{c:.2}")).unwrap_or_else(|| "–".into()),
                mib(r.rss_kib),
                fmt_calls(&r.calls, r.runs),
                r.per_second_1,
                n,
            );
        }
        let _ = writeln!(out);
        let sources: std::collections::BTreeSet<&str> = self.zips.values().map(|z| z.source.as_str()).collect();
        for source in sources {
            let which: Vec<&str> =
                self.zips.iter().filter(|(_, z)| z.source == source).map(|(b, _)| b.as_str()).collect();
            let _ = writeln!(out, "Zip: `zip -9` of {source}, for {}.", which.join(", "));
        }
        if !self.scales.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| run | work | invocations | time ms | wire ms | own ms | ms per unit | units/s | AWS calls (whole run) | calls per unit | peak RSS MiB |"
            );
            let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|");
            for s in &self.scales {
                let t = ms(s.time);
                let _ = writeln!(
                    out,
                    "| {} | {} {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.3} | {} |",
                    s.what,
                    s.work,
                    s.unit,
                    s.invocations,
                    fmt_ms(t),
                    fmt_ms(ms(s.wire)),
                    fmt_ms(ms(s.time.saturating_sub(s.wire))),
                    fmt_ms(t / s.work as f64),
                    s.work as f64 / s.time.as_secs_f64(),
                    fmt_calls(&s.calls, 1),
                    s.calls.values().sum::<usize>() as f64 / s.work as f64,
                    mib(s.rss_kib),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 100.0);
        assert_eq!(percentile(&v, 99.0), 198.0);
        assert_eq!(percentile(&v, 100.0), 200.0);
        assert_eq!(percentile(&[7.0], 50.0), 7.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0], 50.0), 1.0);
        assert_eq!(percentile(&[1.0, 2.0], 99.0), 2.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    fn call(start_ms: u64, end_ms: u64, base: Instant) -> Call {
        Call {
            operation: "dynamodb:GetItem".into(),
            signer: "F".into(),
            arrived: base + Duration::from_millis(start_ms),
            answered: base + Duration::from_millis(end_ms),
            status: 200,
            conditions: Vec::new(),
        }
    }

    #[test]
    fn concurrent_calls_count_once_on_the_wire() {
        let t = Instant::now();
        // 0-10 and 5-12 overlap (12 ms), 20-25 is apart (5 ms).
        let calls = [call(20, 25, t), call(0, 10, t), call(5, 12, t)];
        assert_eq!(busy_time(&calls), Duration::from_millis(17));
        assert_eq!(busy_time(&[]), Duration::ZERO);
        // Back to back: no gap, no double count.
        assert_eq!(busy_time(&[call(0, 5, t), call(5, 9, t)]), Duration::from_millis(9));
    }

    #[test]
    fn calls_per_invocation() {
        let calls = BTreeMap::from([("dynamodb:GetItem".to_owned(), 400), ("sqs:SendMessage".to_owned(), 300)]);
        assert_eq!(fmt_calls(&calls, 200), "dynamodb:GetItem ×2, sqs:SendMessage ×1.50");
        assert_eq!(fmt_calls(&BTreeMap::new(), 1), "none");
    }

    #[test]
    fn options() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let o = Options::parse(&args("--iterations 50 --only cleanup,sweeper --scale 100")).unwrap();
        assert_eq!((o.iterations, o.scale), (50, 100));
        assert_eq!(o.only, ["cleanup", "sweeper"]);
        assert!(Options::parse(&args("--iterations")).is_err());
        assert!(Options::parse(&args("--fast")).is_err());
        let confirm: Vec<_> = SCENARIOS.iter().filter(|s| s.selected(&["confirm-upload".into()])).collect();
        assert_eq!(confirm.len(), 2);
        assert_eq!(SCENARIOS.iter().filter(|s| s.selected(&[])).count(), SCENARIOS.len());
        assert_eq!(SCENARIOS.iter().filter(|s| s.selected(&["sweeper".into()])).count(), 1);
    }
}
