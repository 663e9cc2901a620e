//! Headless Chromium for the browser test (`tests/tests/suite/browser.rs`):
//! installed from Debian's `chromium` package when missing, started on a
//! loopback DevTools port, and driven through the DevTools protocol (JSON
//! over a websocket: a command is `{id, method, params}`, its answer the
//! message with the same `id`; events are ignored unless subscribed to,
//! see [`Browser::subscribe`]).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The browser the tests drive: `$CHROMIUM`, else `chromium` on `PATH`.
fn binary() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

fn on_path(name: &str) -> bool {
    std::process::Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure a Chromium is there: as root on Debian or Ubuntu, installs
/// the distribution's `chromium` package (no recommends) the first time;
/// otherwise says what to install.
pub fn ensure_installed() -> Result<()> {
    let chromium = binary();
    if on_path(&chromium) {
        return Ok(());
    }
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    if !root || !on_path("apt-get") {
        bail!(
            "the browser test needs Chromium: install Debian's `chromium` package (apt-get install chromium) \
             or set CHROMIUM to a Chromium or Chrome binary"
        );
    }
    eprintln!("installing chromium with apt-get (first run only)");
    for args in [&["update", "-qq"][..], &["install", "-y", "-qq", "--no-install-recommends", "chromium"][..]] {
        let status = std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed with {status}", args.join(" "));
        }
    }
    if !on_path(&chromium) {
        bail!("apt-get installed chromium, but `{chromium} --version` still fails");
    }
    Ok(())
}

/// A headless Chromium with one page, driven over the DevTools protocol.
/// Dropping it kills the browser.
pub struct Browser {
    child: Child,
    page: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Events of the subscribed methods, received while waiting for answers.
    events: Vec<Value>,
    subscribed: std::collections::HashSet<String>,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and a `width` x
    /// `height` viewport, and attaches to its first page.
    pub async fn launch(width: u32, height: u32) -> Result<Self> {
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| anyhow!("random folder name: {e}"))?;
        let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        let profile = std::env::temp_dir().join(format!("uploads-chromium-{name}"));
        std::fs::create_dir_all(&profile)?;
        let profile = TempDir(profile);
        let mut child = Command::new(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary()))?;
        // Chromium prints `DevTools listening on ws://127.0.0.1:<port>/…`.
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    return rest.split('/').next().and_then(|p| p.parse::<u16>().ok()).ok_or_else(|| anyhow!("{line}"));
                }
            }
            bail!("chromium exited before its DevTools endpoint was up")
        })
        .await
        .context("waiting for chromium's DevTools endpoint")??;
        // Keep draining its stderr, so the browser never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let targets: Value =
            reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await?.error_for_status()?.json().await?;
        let ws = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| anyhow!("no page target in {targets}"))?
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(ws).await.context("attaching to the page")?;
        let mut browser =
            Browser { child, page, next_id: 0, events: Vec::new(), subscribed: Default::default(), _profile: profile };
        browser.call("Page.enable", json!({})).await?;
        // The viewport itself `width` x `height` (the window's frame takes
        // some of --window-size), at one device pixel per CSS pixel.
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        Ok(browser)
    }

    /// Sends a DevTools command and returns its `result`.
    pub async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.page.send(Message::text(msg.to_string())).await?;
        let answer = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(msg) = self.page.next().await {
                if let Message::Text(text) = msg? {
                    let v = parse_message(&text)?;
                    if v["id"] == id {
                        return Ok(v);
                    }
                    if v["method"].as_str().is_some_and(|m| self.subscribed.contains(m)) {
                        self.events.push(v);
                    }
                }
            }
            bail!("the page's DevTools connection closed")
        })
        .await
        .with_context(|| format!("{method}: no answer within 60 s"))??;
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    /// Keeps the events named `method` (e.g. `Fetch.requestPaused`) that
    /// arrive from now on, for [`Browser::take_events`]. Events arrive
    /// while a command waits for its answer: poll with [`Browser::eval`].
    pub fn subscribe(&mut self, method: &str) {
        self.subscribed.insert(method.to_owned());
    }

    /// The kept events named `method` (their `params`), oldest first,
    /// removed from the buffer.
    pub fn take_events(&mut self, method: &str) -> Vec<Value> {
        let (taken, kept) = std::mem::take(&mut self.events).into_iter().partition(|e| e["method"] == method);
        self.events = kept;
        taken.into_iter().map(|mut e| e["params"].take()).collect()
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value; a thrown exception is an error.
    pub async fn eval(&mut self, expression: &str) -> Result<Value> {
        let r = self
            .call("Runtime.evaluate", json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }))
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!("{expression}: {e}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Opens `url` and waits until the page has loaded.
    pub async fn open(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", json!({ "url": url })).await?;
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", 30).await
    }

    /// Waits (polling) until `condition` is true in the page.
    pub async fn wait_for(&mut self, condition: &str, seconds: u64) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            if self.eval(condition).await.ok() == Some(Value::Bool(true)) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("waited {seconds} s for {condition}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the file input matched by `selector` to `path`, as a user
    /// choosing that file does.
    pub async fn choose_file(&mut self, selector: &str, path: &std::path::Path) -> Result<()> {
        let doc = self.call("DOM.getDocument", json!({})).await?;
        let node =
            self.call("DOM.querySelector", json!({ "nodeId": doc["root"]["nodeId"], "selector": selector })).await?;
        self.call("DOM.setFileInputFiles", json!({ "nodeId": node["nodeId"], "files": [path] })).await?;
        Ok(())
    }

    /// The viewport as a PNG.
    pub async fn screenshot(&mut self) -> Result<Vec<u8>> {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({ "format": "png" })).await?;
        let data = shot["data"].as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(data)?)
    }

    pub async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A DevTools message. Chromium writes a request's body into events
/// (`Fetch.requestPaused`'s `postData`) as a string of its bytes, where a
/// lone UTF-16 surrogate escape is valid JavaScript but not JSON: such a
/// message is read again with those escapes replaced by U+FFFD.
fn parse_message(text: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(v) => Ok(v),
        Err(first) => {
            let surrogate = regex_lite::Regex::new(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}").expect("a valid pattern");
            serde_json::from_str(&surrogate.replace_all(text, r"\ufffd"))
                .with_context(|| format!("a DevTools message that is not JSON ({first})"))
        }
    }
}

/// A decoded RGBA image.
pub struct Image {
    pub width: u32,
    pub height: u32,
    rgba: Vec<u8>,
}

impl Image {
    pub fn decode_png(bytes: &[u8]) -> Result<Self> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
        let mut reader = decoder.read_info()?;
        let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| anyhow!("image too large"))?];
        let info = reader.next_frame(&mut buf)?;
        buf.truncate(info.buffer_size());
        let rgba = match info.color_type {
            png::ColorType::Rgba => buf,
            png::ColorType::GrayscaleAlpha => buf.chunks(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
            other => bail!("unexpected PNG colour type {other:?}"),
        };
        Ok(Image { width: info.width, height: info.height, rgba })
    }

    /// The pixel at (`x`, `y`) as `[r, g, b]`.
    pub fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 4) as usize;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }
}
