//! A Lambda Runtime API of our own: each function's real binary runs as
//! child processes polling `AWS_LAMBDA_RUNTIME_API`, exactly as on Lambda.
//!
//! Like Lambda, a function runs as several instances at once, each handling
//! one invocation at a time: an invocation goes to an idle instance, and
//! when every instance is busy a new one is started, up to the host's limit
//! (`UPLOADS_MAX_INSTANCES`, default 4); past it, invocations wait for the
//! next instance to become free (on Lambda they would be throttled).
//!
//! As Lambda Managed Instances runs a function ([`Scaling::managed`]), one
//! instance instead takes several invocations at once: it is started with
//! `AWS_LAMBDA_MAX_CONCURRENCY=N`, polls `/next` from N tasks, and each
//! poll gets an invocation of its own, answered by its own request id.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use crate::{project_root, ACCOUNT, REGION};

/// What a function answered.
#[derive(Debug)]
pub enum Outcome {
    Response(Value),
    /// The function reported an error (`/invocation/{id}/error`).
    Error(Value),
}

struct Invocation {
    id: String,
    payload: Bytes,
    /// The function's timeout: its deadline runs from when an instance
    /// takes the invocation, not from when it was queued.
    timeout: Duration,
    /// Told when an instance takes the invocation.
    started: oneshot::Sender<()>,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    name: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<String>>,
    /// When the first `GET /next` arrived: the end of the first instance's init.
    first_poll: Mutex<Option<Instant>>,
    /// Most invocations handed out and not answered yet, at any one time.
    busiest: AtomicUsize,
}

/// How many invocations a function's host runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scaling {
    /// Instances (processes) at most; one more starts when every one is full.
    pub max_instances: usize,
    /// Invocations one instance takes at once: 1 on Lambda; more on Lambda
    /// Managed Instances, where the process reads it from
    /// `AWS_LAMBDA_MAX_CONCURRENCY`.
    pub max_concurrency: usize,
}

impl Scaling {
    /// Lambda's model: one invocation per instance, up to `max_instances`.
    pub fn instances(max_instances: usize) -> Self {
        Scaling { max_instances, max_concurrency: 1 }
    }

    /// Lambda Managed Instances' model, one execution environment: a single
    /// instance taking up to `max_concurrency` invocations at once.
    pub fn managed(max_concurrency: usize) -> Self {
        Scaling { max_instances: 1, max_concurrency }
    }
}

/// How to start one more instance of a function.
struct Launch {
    path: PathBuf,
    env: Vec<(String, String)>,
    runtime_api: SocketAddr,
    memory_mb: u64,
    echo: bool,
}

/// One function: its runtime API endpoint and the instances of its binary
/// polling it.
pub struct FunctionHost {
    pub name: String,
    pub timeout: Duration,
    /// Instances at most.
    pub max_instances: usize,
    /// Invocations one instance takes at once (`AWS_LAMBDA_MAX_CONCURRENCY`
    /// when above 1).
    pub max_concurrency: usize,
    tx: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    launch: Launch,
    instances: tokio::sync::Mutex<Vec<Child>>,
    /// Invocations handed to the host and not answered yet.
    in_flight: AtomicUsize,
    next_instance_number: AtomicUsize,
    logs: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
    /// When the first instance was started.
    started_at: Instant,
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where cargo puts a workspace binary of the dev profile.
pub fn binary_path(binary: &str) -> PathBuf {
    profile_path("debug", binary)
}

/// The executable `binary` of cargo profile directory `profile` (`debug`,
/// `release`).
pub fn profile_path(profile: &str, binary: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"));
    target.join(profile).join(binary)
}

/// Counts an invocation in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FunctionHost {
    /// Starts the runtime API on a free loopback port and one instance of
    /// the executable at `path` against it; more start as invocations
    /// overlap, as `scaling` says (with [`Scaling::managed`], one instance
    /// serving several invocations at once, as on Lambda Managed
    /// Instances). `echo` prints the function's log lines with its name in
    /// front.
    pub async fn start_scaled(
        name: &str,
        path: PathBuf,
        env: &[(String, String)],
        timeout: Duration,
        memory_mb: u64,
        scaling: Scaling,
        echo: bool,
    ) -> Result<Self> {
        if !path.exists() {
            bail!("{} is not built; run `cargo build --bins` first", path.display());
        }
        let (tx, rx) = mpsc::channel(4096);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            queue: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
            first_poll: Mutex::new(None),
            busiest: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let runtime_api: SocketAddr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let host = Self {
            name: name.to_owned(),
            timeout,
            max_instances: scaling.max_instances.max(1),
            max_concurrency: scaling.max_concurrency.max(1),
            tx,
            shared,
            launch: Launch { path, env: env.to_vec(), runtime_api, memory_mb, echo },
            instances: tokio::sync::Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            next_instance_number: AtomicUsize::new(1),
            logs: Arc::new(Mutex::new(Vec::new())),
            server,
            started_at: Instant::now(),
        };
        host.instances.lock().await.push(host.spawn_instance(0)?);
        Ok(host)
    }

    /// Starts instance number `n` of the binary.
    fn spawn_instance(&self, n: usize) -> Result<Child> {
        let l = &self.launch;
        let mut cmd = Command::new(&l.path);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", l.runtime_api.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", l.memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{}", self.name))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local-{n}"))
            .envs((self.max_concurrency > 1).then(|| ("AWS_LAMBDA_MAX_CONCURRENCY", self.max_concurrency.to_string())))
            .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", l.path.display()))?;
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = self.logs.clone();
            let prefix = if self.max_instances > 1 { format!("{}#{n}", self.name) } else { self.name.clone() };
            let echo = l.echo;
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{prefix}] {line}");
                    }
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Ok(child)
    }

    /// Instances running now.
    pub async fn instances(&self) -> usize {
        self.instances.lock().await.len()
    }

    /// Makes sure an instance is free for one more invocation: drops
    /// instances that exited (an instance that failed its init fails the
    /// invocation, as on Lambda), and starts a new one when every instance
    /// is full (`max_concurrency` invocations each) and the limit allows.
    async fn scale_for(&self, in_flight: usize) -> Result<()> {
        let mut instances = self.instances.lock().await;
        let mut exited = None;
        let mut i = 0;
        while i < instances.len() {
            match instances[i].try_wait()? {
                Some(status) => {
                    exited = Some(status);
                    instances.swap_remove(i);
                }
                None => i += 1,
            }
        }
        if let Some(status) = exited {
            let init = self.shared.init_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if instances.is_empty() || init.is_some() {
                bail!("{} exited with {status}{}", self.name, init.map(|e| format!(": {e}")).unwrap_or_default());
            }
        }
        if (instances.is_empty() || in_flight > instances.len() * self.max_concurrency)
            && instances.len() < self.max_instances
        {
            let n = self.next_instance_number.fetch_add(1, Ordering::SeqCst);
            instances.push(self.spawn_instance(n)?);
        }
        Ok(())
    }

    /// Invokes the function with `payload` and waits for its answer: until
    /// an instance takes it, then at most its timeout plus a grace second.
    pub async fn invoke(&self, payload: &Value) -> Result<Outcome> {
        self.invoke_timed(payload).await.map(|(outcome, _)| outcome)
    }

    /// As [`FunctionHost::invoke`], with the invocation's latency as the
    /// Runtime API sees it: from handing the event out on `/next` to
    /// receiving the function's answer.
    pub async fn invoke_timed(&self, payload: &Value) -> Result<(Outcome, Duration)> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let _counted = InFlight(&self.in_flight);
        self.scale_for(in_flight).await?;
        let (reply, answer) = oneshot::channel();
        let (started, taken) = oneshot::channel();
        let id = uuid_like();
        let invocation = Invocation {
            id: id.clone(),
            payload: Bytes::from(serde_json::to_vec(payload)?),
            timeout: self.timeout,
            started,
            reply,
        };
        self.tx.send(invocation).await.map_err(|_| anyhow!("{} is not accepting invocations", self.name))?;
        taken.await.map_err(|_| anyhow!("{} dropped the invocation", self.name))?;
        let handed_out = Instant::now();
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), answer).await {
            Ok(Ok(outcome)) => Ok((outcome, handed_out.elapsed())),
            Ok(Err(_)) => bail!("{} dropped the invocation", self.name),
            Err(_) => {
                // A late answer is refused, as Lambda refuses one past the deadline.
                self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                bail!("{} timed out after {:?}", self.name, self.timeout)
            }
        }
    }

    /// Every line the binary's instances have written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// From starting the first instance to its first `GET /next` (its
    /// init), once that has arrived.
    pub fn init_time(&self) -> Option<Duration> {
        let first = *self.shared.first_poll.lock().unwrap_or_else(|e| e.into_inner());
        first.map(|at| at.saturating_duration_since(self.started_at))
    }

    /// Process ids of the running instances.
    pub async fn pids(&self) -> Vec<u32> {
        self.instances.lock().await.iter().filter_map(Child::id).collect()
    }

    /// The most invocations the instances held at one moment: handed out on
    /// `/next` and not answered yet. Above 1 with a single instance, that
    /// instance served them concurrently.
    pub fn busiest(&self) -> usize {
        self.shared.busiest.load(Ordering::SeqCst)
    }
}

/// 128 random bits as a hyphenated UUID, for invocation ids.
pub fn uuid_like() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("operating system random number generator unavailable");
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    shared.first_poll.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
    let mut queue = shared.queue.lock().await;
    let Some(inv) = queue.recv().await else {
        // The host is shutting down. Lambda never answers `next` without an
        // invocation (it freezes or ends the sandbox), and a runtime given
        // any other answer panics ("missing lambda-runtime-aws-request-id
        // header", which Ctrl-C of `cargo xtask dev` used to print): wait,
        // as Lambda would, until the process is ended.
        return std::future::pending().await;
    };
    drop(queue);
    let mut headers = HeaderMap::new();
    let set = |headers: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set(&mut headers, "lambda-runtime-aws-request-id", inv.id.clone());
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
    set(&mut headers, "lambda-runtime-deadline-ms", (now + inv.timeout.as_millis() as u64).to_string());
    set(
        &mut headers,
        "lambda-runtime-invoked-function-arn",
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", shared.name),
    );
    set(&mut headers, "lambda-runtime-trace-id", format!("Root=1-{}", &inv.id[..8]));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    {
        let mut pending = shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(inv.id, inv.reply);
        shared.busiest.fetch_max(pending.len(), Ordering::SeqCst);
    }
    let _ = inv.started.send(());
    (StatusCode::OK, headers, inv.payload)
}

fn settle(shared: &Shared, id: &str, outcome: Outcome) -> StatusCode {
    match shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json_or_text(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Response(json_or_text(&body)))
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    settle(&shared, &id, Outcome::Error(json_or_text(&body)))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    *shared.init_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}
