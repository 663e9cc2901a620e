//! The local AWS emulator: moto server, installed from PyPI into the
//! project's own virtualenv (`.venv/`, nothing global) and run on loopback.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::project_root;

/// The moto release the project is tested against. Not 5.2.x: its new S3
/// serializer wraps `ListParts` in `<ListPartsResponse>` instead of S3's
/// `<ListPartsResult>`, which the Rust SDK (rightly) refuses to parse.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.1.22";

/// The checkers CI runs, pinned like the emulator: the template's
/// (`cfn-lint`, `sam validate`) and the contract fuzzer that runs
/// `openapi.yaml` against the local API (`schemathesis`, from
/// `tests/tests/suite/fuzz.rs`; 4.32.5 needs Python 3.11 or newer). They live in a
/// virtualenv of their own (`.venv-tools/`), so their pins and moto's never
/// have to agree.
pub const TOOL_REQUIREMENTS: &[&str] = &["cfn-lint==1.58.0", "aws-sam-cli==1.170.0", "schemathesis==4.32.5"];

/// The `.venv-tools/` virtualenv with [`TOOL_REQUIREMENTS`] installed;
/// returns its `bin` folder.
pub fn ensure_tools() -> Result<PathBuf> {
    ensure_venv(".venv-tools", TOOL_REQUIREMENTS)
}

/// Creates the project-local virtualenv `name` (nothing global) and installs
/// `requirements` into it, unless exactly those are there already. Returns
/// its `bin` folder.
pub fn ensure_venv(name: &str, requirements: &[&str]) -> Result<PathBuf> {
    let venv = project_root().join(name);
    let bin = venv.join("bin");
    let stamp = venv.join(".requirements");
    let wanted = requirements.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(bin);
    }
    eprintln!("installing {} into {} (first run only)", requirements.join(" "), venv.display());
    if !bin.join("python").exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
        run(std::process::Command::new(&python).args(["-m", "venv"]).arg(&venv))
            .with_context(|| format!("creating a virtualenv with {python} (is python3 with venv installed?)"))?;
    }
    run(std::process::Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(requirements))
    .with_context(|| format!("installing {} from PyPI", requirements.join(" ")))?;
    std::fs::write(&stamp, wanted)?;
    Ok(bin)
}

/// Installs moto into `.venv/`; returns the virtualenv's `python`.
pub fn ensure_installed() -> Result<PathBuf> {
    Ok(ensure_venv(".venv", &[MOTO_REQUIREMENT])?.join("python"))
}

fn run(cmd: &mut std::process::Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The address a client on this machine uses for a server listening on
/// `listen`: loopback for an unspecified address (`0.0.0.0`, `::`), else
/// `listen` itself.
pub fn reachable(listen: std::net::IpAddr) -> std::net::IpAddr {
    match listen {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        other => other,
    }
}

/// A running moto server. Dropping it stops the server.
pub struct Moto {
    pub endpoint: String,
    pub log: PathBuf,
    child: Child,
}

impl Moto {
    /// Starts moto on `127.0.0.1:port`, one request at a time (see
    /// `local/moto_serial.py` for why), and waits until it answers.
    pub async fn start(port: u16) -> Result<Self> {
        Self::start_with_call_log(port, None).await
    }

    /// As [`Moto::start`], logging every call to `call_log` (one JSON line
    /// each; see `local/moto_serial.py` and `xtask::iam`).
    pub async fn start_with_call_log(port: u16, call_log: Option<&std::path::Path>) -> Result<Self> {
        Self::start_listening(std::net::Ipv4Addr::LOCALHOST.into(), port, call_log).await
    }

    /// As [`Moto::start_with_call_log`], listening on `listen` rather than
    /// loopback (`0.0.0.0`, say, so containers reach it: see
    /// `cargo xtask dev`'s `UPLOADS_LISTEN`). The endpoint names
    /// `127.0.0.1` when `listen` is unspecified, else `listen`.
    pub async fn start_listening(
        listen: std::net::IpAddr,
        port: u16,
        call_log: Option<&std::path::Path>,
    ) -> Result<Self> {
        let python = ensure_installed()?;
        let logs = project_root().join("target").join("moto");
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("moto-{port}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(python);
        // moto keeps an object or part above 5 MiB - 1 KiB in a temporary
        // file, and a full disk then answers UploadPart with a bare 500 (a
        // CI run failed that way). The tests' objects are a few parts of
        // 5 MiB, so keep them in memory: the emulator then needs no disk.
        cmd.env("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", (64 * 1024 * 1024).to_string());
        cmd.arg(project_root().join("local").join("moto_serial.py")).args([
            "--host",
            &listen.to_string(),
            "--port",
            &port.to_string(),
        ]);
        if let Some(path) = call_log {
            cmd.arg("--call-log").arg(path);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .context("starting moto")?;
        let endpoint = format!("http://{}", std::net::SocketAddr::new(reachable(listen), port));
        let mut moto = Moto { endpoint, log, child };
        moto.wait_ready().await?;
        Ok(moto)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited with {status}; see {}", self.log.display());
            }
            if client.get(format!("{}/moto-api/", self.endpoint)).send().await.is_ok() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("moto_server did not answer within 60 s; see {}", self.log.display())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
