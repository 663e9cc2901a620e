//! A Lambda Runtime API of our own: each function's real binary runs as a
//! child process polling `AWS_LAMBDA_RUNTIME_API`, exactly as on Lambda, and
//! invocations are handed to it one at a time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

use crate::stack::{project_root, ACCOUNT, REGION};

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
    deadline_ms: u64,
    reply: oneshot::Sender<Outcome>,
}

struct Shared {
    name: String,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<String>>,
}

/// One function: its runtime API endpoint and the binary polling it.
pub struct FunctionHost {
    pub name: String,
    pub timeout: Duration,
    tx: mpsc::Sender<Invocation>,
    shared: Arc<Shared>,
    child: tokio::sync::Mutex<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where cargo puts a workspace binary of the dev profile.
pub fn binary_path(binary: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| project_root().join("target"));
    target.join("debug").join(binary)
}

impl FunctionHost {
    /// Starts the runtime API on a free loopback port and the binary against
    /// it. `echo` prints the function's log lines with its name in front.
    pub async fn start(
        name: &str,
        binary: &str,
        env: &[(String, String)],
        timeout: Duration,
        memory_mb: u64,
        echo: bool,
    ) -> Result<Self> {
        let path = binary_path(binary);
        if !path.exists() {
            bail!("{} is not built; run `cargo build --bins` first", path.display());
        }
        let (tx, rx) = mpsc::channel(1024);
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            queue: tokio::sync::Mutex::new(rx),
            pending: Mutex::new(HashMap::new()),
            init_error: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let mut cmd = Command::new(&path);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", path.display()))?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    logs.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            });
        }
        Ok(Self { name: name.to_owned(), timeout, tx, shared, child: tokio::sync::Mutex::new(child), logs, server })
    }

    /// Invokes the function with `payload` and waits for its answer (at most
    /// its timeout plus a grace second).
    pub async fn invoke(&self, payload: &Value) -> Result<Outcome> {
        if let Some(status) = self.child.lock().await.try_wait()? {
            let init = self.shared.init_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
            bail!("{} exited with {status}{}", self.name, init.map(|e| format!(": {e}")).unwrap_or_default());
        }
        let (reply, answer) = oneshot::channel();
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
        let invocation = Invocation {
            id: uuid_like(),
            payload: Bytes::from(serde_json::to_vec(payload)?),
            deadline_ms: now + self.timeout.as_millis() as u64,
            reply,
        };
        self.tx.send(invocation).await.map_err(|_| anyhow!("{} is not accepting invocations", self.name))?;
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), answer).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => bail!("{} dropped the invocation", self.name),
            Err(_) => bail!("{} timed out after {:?}", self.name, self.timeout),
        }
    }

    /// Every line the binary has written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
    let mut queue = shared.queue.lock().await;
    let Some(inv) = queue.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), Bytes::new());
    };
    drop(queue);
    let mut headers = HeaderMap::new();
    let set = |headers: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    };
    set(&mut headers, "lambda-runtime-aws-request-id", inv.id.clone());
    set(&mut headers, "lambda-runtime-deadline-ms", inv.deadline_ms.to_string());
    set(
        &mut headers,
        "lambda-runtime-invoked-function-arn",
        format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}", shared.name),
    );
    set(&mut headers, "lambda-runtime-trace-id", format!("Root=1-{}", &inv.id[..8]));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    shared.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(inv.id, inv.reply);
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
