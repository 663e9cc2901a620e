//! A small client of the upload sessions API: one method per route, the
//! views it answers (the API's own types, crate `api`), and retries of
//! what is safe to retry.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::Method;
use serde_json::Value;

use crate::error::{chain, Error};
use crate::retry::Backoff;
use crate::ui::Ui;

pub use ::api::{
    Checksum as ChecksumView, ChecksumAlgorithm, ChecksumType, CreateUpload as NewUpload, Download, Page, PresignedPut,
    Session, Status, Transfer, TransferType,
};

/// An answer: the typed view, and the JSON as the API sent it (what
/// `--json` prints).
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub view: T,
    pub json: Value,
}

/// One page of `GET /uploads`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub uploads: Vec<Answer<Session>>,
    pub next_cursor: Option<String>,
}

/// What a confirm answered.
#[derive(Debug, Clone)]
pub enum Confirmed {
    /// 200: the upload is completed.
    Done(Box<Answer<Session>>),
    /// 202: S3 is still completing the multipart upload; confirm again
    /// after this long.
    InProgress(Duration),
}

/// When a failed call may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads and idempotent writes (get, list, confirm, resume): after any
    /// network failure, 429 or 5xx.
    Always,
    /// Writes whose lost answer would make a retry do it twice (create,
    /// delete): only when the request surely changed nothing: it never
    /// reached the API, or the API answered 429, 500 or 503 (the service
    /// answers those only before committing anything).
    Unchanged,
}

#[derive(Clone)]
pub struct Api {
    base: String,
    key: String,
    http: reqwest::Client,
    backoff: Backoff,
    ui: Ui,
}

impl Api {
    /// A client of the API at `base` (`http://127.0.0.1:3000`, or a
    /// deployed stage's URL) with `key`, retrying failed calls up to
    /// `retries` times.
    pub fn new(base: &str, key: &str, retries: u32, ui: Ui) -> Result<Self, Error> {
        let url = reqwest::Url::parse(base)
            .map_err(|e| Error::Local(format!("--url / UPLOADS_URL '{base}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
            return Err(Error::Local(format!("--url / UPLOADS_URL '{base}' must be an http:// or https:// base URL")));
        }
        if key.is_empty() || reqwest::header::HeaderValue::from_str(key).is_err() {
            return Err(Error::Local("--api-key / UPLOADS_API_KEY is empty or not a valid header value".into()));
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http: http_client()?,
            backoff: Backoff::api(retries),
            ui,
        })
    }

    /// The HTTP client, shared with the transfers (one pool).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn ui(&self) -> &Ui {
        &self.ui
    }

    /// `POST /uploads`.
    pub async fn create(&self, new: &NewUpload) -> Result<Answer<Session>, Error> {
        let body = serde_json::to_value(new).map_err(|e| Error::Local(format!("encoding the create request: {e}")))?;
        let reply = self.call(Method::POST, "/uploads", &[], Some(&body), Retry::Unchanged).await?;
        answer(reply.json)
    }

    /// `GET /uploads/{id}`.
    pub async fn get(&self, id: &str) -> Result<Answer<Session>, Error> {
        answer(self.call(Method::GET, &format!("/uploads/{id}"), &[], None, Retry::Always).await?.json)
    }

    /// `GET /uploads?limit=&cursor=`: one page, each upload as its answer
    /// (typed, and the JSON as sent), and the next page's cursor.
    pub async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Listed, Error> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(c) = cursor {
            query.push(("cursor", c.to_owned()));
        }
        let reply = self.call(Method::GET, "/uploads", &query, None, Retry::Always).await?;
        // The page's shape, each upload as sent: `answer` reads each one.
        #[derive(serde::Deserialize)]
        struct Sent {
            uploads: Vec<Value>,
            next_cursor: Option<String>,
        }
        let page: Sent = serde_json::from_value(reply.json).map_err(unexpected)?;
        let uploads = page.uploads.into_iter().map(answer).collect::<Result<_, _>>()?;
        Ok(Listed { uploads, next_cursor: page.next_cursor })
    }

    /// `POST /uploads/{id}/confirm`.
    pub async fn confirm(&self, id: &str) -> Result<Confirmed, Error> {
        let reply = self.call(Method::POST, &format!("/uploads/{id}/confirm"), &[], None, Retry::Always).await?;
        if reply.status == 202 {
            return Ok(Confirmed::InProgress(reply.retry_after.unwrap_or(Duration::from_secs(2))));
        }
        Ok(Confirmed::Done(Box::new(answer(reply.json)?)))
    }

    /// `POST /uploads/{id}/resume`: fresh URLs for the parts S3 lacks.
    pub async fn resume(&self, id: &str) -> Result<Answer<Session>, Error> {
        answer(self.call(Method::POST, &format!("/uploads/{id}/resume"), &[], None, Retry::Always).await?.json)
    }

    /// `DELETE /uploads/{id}`: the API's answer (`message`, `request_id`).
    pub async fn delete(&self, id: &str) -> Result<Value, Error> {
        Ok(self.call(Method::DELETE, &format!("/uploads/{id}"), &[], None, Retry::Unchanged).await?.json)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Reply, Error> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            let mut req = self.http.request(method.clone(), &url).header("x-api-key", &self.key);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            let (failure, retry_after) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = retry_after(resp.headers());
                    match resp.text().await {
                        Ok(text) if (200..300).contains(&status) => {
                            let json = serde_json::from_str(&text).map_err(|e| {
                                Error::Unavailable(format!(
                                    "the API answered {status} with a body that is not JSON: {e}"
                                ))
                            })?;
                            return Ok(Reply { status, retry_after, json });
                        }
                        Ok(text) => {
                            let message = error_message(status, &text);
                            let again = match status {
                                429 | 500 | 503 => true,
                                502 | 504 => retry == Retry::Always,
                                _ => false,
                            };
                            if !again {
                                return Err(if status >= 500 {
                                    Error::Unavailable(format!("{message} (HTTP {status})"))
                                } else {
                                    Error::Api { status, message }
                                });
                            }
                            (format!("{message} (HTTP {status})"), retry_after)
                        }
                        Err(e) if retry == Retry::Always => {
                            (format!("reading the answer from {}: {}", self.base, chain(&e)), None)
                        }
                        Err(e) => {
                            return Err(Error::Unavailable(format!(
                                "reading the answer from {}: {}",
                                self.base,
                                chain(&e)
                            )))
                        }
                    }
                }
                Err(e) => {
                    let message = format!("cannot reach {}: {}", self.base, chain(&e));
                    if retry == Retry::Unchanged && !e.is_connect() {
                        return Err(Error::Unavailable(message));
                    }
                    (message, None)
                }
            };
            attempt += 1;
            if attempt > self.backoff.retries {
                return Err(Error::Unavailable(failure));
            }
            let delay = self.backoff.delay(attempt, retry_after);
            self.ui.note(format!(
                "{failure}; retrying in {:.1} s (retry {attempt} of {})",
                delay.as_secs_f64(),
                self.backoff.retries
            ));
            tokio::time::sleep(delay).await;
        }
    }
}

struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    json: Value,
}

/// The one HTTP client: connection timeouts so a dead endpoint fails
/// fast, a read timeout so a stalled transfer fails instead of hanging.
pub fn http_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("uploads/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Local(format!("cannot set up HTTP: {}", chain(&e))))
}

/// A session answer. A checksum of an algorithm or type this client does
/// not know (one a newer API or another client declared) is left out of
/// the typed view, so that reading and downloading the upload go on with
/// its size checked ([`unknown_checksum`] says which); the JSON keeps it.
fn answer(json: Value) -> Result<Answer<Session>, Error> {
    let view = match unknown_checksum(&json) {
        None => serde_json::from_value(json.clone()),
        Some(_) => {
            let mut known = json.clone();
            if let Some(o) = known.as_object_mut() {
                o.remove("checksum");
            }
            serde_json::from_value(known)
        }
    }
    .map_err(unexpected)?;
    Ok(Answer { view, json })
}

/// The `algorithm/type` of `json`'s checksum, when this client does not
/// know one of them.
pub fn unknown_checksum(json: &Value) -> Option<String> {
    let c = json.get("checksum").filter(|c| c.is_object())?;
    let (algorithm, kind) = (c["algorithm"].as_str().unwrap_or("?"), c["type"].as_str().unwrap_or("?"));
    let known = ChecksumAlgorithm::parse(algorithm).is_some() && ChecksumType::parse(kind).is_some();
    (!known).then(|| format!("{algorithm}/{kind}"))
}

fn unexpected(e: serde_json::Error) -> Error {
    Error::Unavailable(format!("the API answered with an unexpected body: {e}"))
}

/// `Retry-After` in seconds (the API sends whole seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// What a failed answer says: the API's `error`, API Gateway's `message`,
/// else the first line of the body, else the status's reason.
fn error_message(status: u16, body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        for field in ["error", "message"] {
            if let Some(m) = v.get(field).and_then(Value::as_str) {
                return m.to_owned();
            }
        }
    }
    let line = body.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    if !line.is_empty() && !line.starts_with('<') {
        return line.chars().take(200).collect();
    }
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("unexpected answer")
        .to_owned()
}

/// The canonical form of an upload id given on the command line: `upl_`
/// and 32 lowercase hex digits, or the same 128 bits as a hyphenated UUID.
pub fn parse_upload_id(s: &str) -> Result<String, Error> {
    ::api::canonical_upload_id(s).ok_or_else(|| {
        Error::Local(format!("'{s}' is not an upload id (upl_ followed by 32 lowercase hex digits, or a UUID)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36";
        assert_eq!(parse_upload_id(id).unwrap(), id);
        assert_eq!(parse_upload_id("3F2A9C4E-8B1D-4F6A-9E0C-7B5D2A1F8E36").unwrap(), id);
        for bad in ["", "upl_", "upl_3F2A9C4E8B1D4F6A9E0C7B5D2A1F8E36", "../etc", "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e3"]
        {
            assert!(parse_upload_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_checksum_this_client_does_not_know_leaves_the_view_not_the_json() {
        let session = |algorithm: &str, kind: &str| {
            serde_json::json!({
                "upload_id": "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36", "status": "completed", "filename": "a.bin",
                "content_type": "application/octet-stream", "size": 3, "created_at": "2026-12-06T00:00:00Z",
                "expires_at": null, "completed_at": "2026-12-06T00:00:01Z",
                "checksum": {"algorithm": algorithm, "type": kind, "value": "AAAA", "part_size": 0}
            })
        };
        let known = answer(session("SHA256", "FULL_OBJECT")).unwrap();
        assert_eq!(known.view.checksum.unwrap().algorithm, ChecksumAlgorithm::Sha256);
        assert_eq!(unknown_checksum(&known.json), None);
        for (algorithm, kind) in [("SHA512", "FULL_OBJECT"), ("SHA256", "TREE")] {
            let newer = answer(session(algorithm, kind)).unwrap();
            assert_eq!(newer.view.checksum, None, "{algorithm}/{kind}");
            assert_eq!(newer.view.status, Status::Completed);
            assert_eq!(newer.json["checksum"]["algorithm"], algorithm);
            assert_eq!(unknown_checksum(&newer.json), Some(format!("{algorithm}/{kind}")));
        }
        // An unknown status is not guessed at: the client decides on it.
        let mut odd = session("SHA256", "FULL_OBJECT");
        odd["status"] = "archived".into();
        assert!(matches!(answer(odd), Err(Error::Unavailable(_))));
    }

    #[test]
    fn error_messages() {
        assert_eq!(error_message(404, r#"{"error":"Upload not found","request_id":"x"}"#), "Upload not found");
        assert_eq!(error_message(403, r#"{"message":"Missing Authentication Token"}"#), "Missing Authentication Token");
        assert_eq!(
            error_message(413, "HTTP content length exceeded 10485760 bytes."),
            "HTTP content length exceeded 10485760 bytes."
        );
        assert_eq!(error_message(502, ""), "Bad Gateway");
        assert_eq!(error_message(500, "<html>oops</html>"), "Internal Server Error");
    }
}
