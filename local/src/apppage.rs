//! The local web app on the API: the uploads page (`clients/js/page/`, an
//! Uppy Dashboard on `@upload-sessions/client/uppy`, bundled by `npm run
//! build` into `clients/js/dist/page/`) and the one route every app's
//! backend adds, which mints short-lived browser tokens with the owner's
//! key through the API's own `POST /tokens`. The page holds only tokens.
//!
//! `cargo xtask dev` serves it under `/_local/` beside the API (the page at
//! [`UPLOAD_PAGE_PATH`], same origin as the API); the browser tests serve it
//! alone on a port of its own, another origin than the API's, as an app's
//! page is. Its paths are relative, so it works under either prefix:
//!
//! - `GET upload`: the page, with the API's base URL filled in;
//! - `GET page.js`, `page.css` (and their source maps): the bundle;
//! - `GET token?scope=&upload_id=&max_size=&content_type=&ttl_seconds=`:
//!   `POST /tokens` with those fields and the key, answered as the API
//!   answered it (201 and the token, or the API's error). A real backend
//!   decides the limits itself, after checking who asks; this one is a
//!   local tool for one developer and lets the page choose.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Response, StatusCode, Uri};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

/// Where `cargo xtask dev` serves the page.
pub const UPLOAD_PAGE_PATH: &str = "/_local/upload";
/// The prefix `cargo xtask dev` nests the app's routes under.
pub const DEV_PREFIX: &str = "/_local";

/// The page's source (`index.html`) and its bundle.
pub fn page_dir() -> PathBuf {
    crate::project_root().join("clients").join("js").join("page")
}

pub fn bundle_dir() -> PathBuf {
    crate::project_root().join("clients").join("js").join("dist").join("page")
}

/// The app: the API it talks to and the owner key its backend holds.
pub struct AppPage {
    /// The API's base URL, as the page's browser reaches it.
    pub api_base: String,
    /// The owner's key, `usk_…`: stays on this server.
    pub api_key: String,
    http: reqwest::Client,
}

impl AppPage {
    pub fn new(api_base: &str, api_key: &str) -> Self {
        AppPage {
            api_base: api_base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The app's routes, at the root (nest them under a prefix if needed).
    pub fn router(self) -> Router {
        Router::new()
            .route("/upload", get(page))
            .route("/page.js", get(asset))
            .route("/page.css", get(asset))
            .route("/page.js.map", get(asset))
            .route("/page.css.map", get(asset))
            .route("/token", get(token))
            .with_state(Arc::new(self))
    }

    /// Serves the app alone, at the root, on `listener` (its own origin).
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(listener, self.router()).await?;
        Ok(())
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn not_built() -> Response<Body> {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/plain; charset=utf-8",
        format!(
            "The uploads page is not built: {} is missing. It needs Node 20+ and npm: \
             cd clients/js && npm ci && npm run build (cargo xtask dev and test do it).\n",
            bundle_dir().join("page.js").display()
        ),
    )
}

async fn page(State(app): State<Arc<AppPage>>) -> Response<Body> {
    if !bundle_dir().join("page.js").is_file() {
        return not_built();
    }
    let Ok(html) = std::fs::read_to_string(page_dir().join("index.html")) else {
        return not_built();
    };
    // JSON inside <script>: no `<` may close the element early.
    let config = json!({ "endpoint": app.api_base }).to_string().replace('<', "\\u003c");
    answer(StatusCode::OK, "text/html; charset=utf-8", html.replace("__UPLOADS_CONFIG__", &config))
}

async fn asset(uri: Uri) -> Response<Body> {
    let name = uri.path().rsplit('/').next().unwrap_or_default();
    let content_type = match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        _ => "application/json",
    };
    match std::fs::read(bundle_dir().join(name)) {
        Ok(bytes) => answer(StatusCode::OK, content_type, bytes),
        Err(_) => not_built(),
    }
}

/// `POST /tokens` with the key, for the fields the page asked for.
async fn token(State(app): State<Arc<AppPage>>, uri: Uri) -> Response<Body> {
    let mut body = Map::new();
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        let value = match k.as_ref() {
            "scope" | "upload_id" | "content_type" => Value::from(v.as_ref()),
            "max_size" | "ttl_seconds" => match v.parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => return json_error(StatusCode::BAD_REQUEST, &format!("{k} must be a whole number")),
            },
            _ => continue,
        };
        body.insert(k.into_owned(), value);
    }
    let sent = app
        .http
        .post(format!("{}/tokens", app.api_base))
        .header("x-api-key", &app.api_key)
        .json(&Value::Object(body))
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_GATEWAY, &format!("the API did not answer: {e}")),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match resp.bytes().await {
        Ok(bytes) => answer(status, "application/json", bytes),
        Err(e) => json_error(StatusCode::BAD_GATEWAY, &format!("the API's answer was cut: {e}")),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    answer(status, "application/json", json!({ "error": message }).to_string())
}
