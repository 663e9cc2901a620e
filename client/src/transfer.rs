//! Sending a file's parts to their presigned `PUT`s: at most `jobs` at
//! once, each streamed from the file, each retried with backoff on
//! network errors, 5xx and expired URLs (fresh ones come from the resume
//! route, which also hands out the URLs a create answer had no room for).

use std::collections::{HashMap, HashSet};
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::api::{retry_after, Api, PresignedPut, Transfer};
use crate::error::{chain, Error};
use crate::plan::part_len;
use crate::retry::Backoff;

/// Test hook: when set to N, a `put` or `resume` stops as Ctrl-C would
/// once it has stored N parts in this run (with `--jobs 1`, exactly parts
/// it sent first), so tests can interrupt an upload at a known point. Not
/// meant for anything else.
pub const INTERRUPT_AFTER_PARTS_VAR: &str = "UPLOADS_TEST_INTERRUPT_AFTER_PARTS";

/// URLs are renewed when they expire within this margin, or within a
/// quarter of their lifetime when that is shorter.
const URL_MARGIN: time::Duration = time::Duration::seconds(60);

/// What to send: parts `parts` of the file at `path` (`size` bytes, cut in
/// `part_size`) to upload `id`, starting with the URLs of `first` (a
/// create or resume answer's `upload`).
pub struct Job {
    pub id: String,
    pub path: PathBuf,
    pub size: u64,
    pub first: Transfer,
    pub parts: Vec<u64>,
    pub jobs: usize,
    pub retries: u32,
    /// The command that finishes the upload, for the interruption message.
    pub resume_hint: String,
}

/// What a run sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// Parts this run stored.
    pub parts: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Parts S3 turned out to hold already.
    pub already_stored: u64,
}

/// Sends every part of `job`, showing progress on `bar` (whose length is
/// the bytes to send).
pub async fn send(api: &Api, job: Job, bar: ProgressBar) -> Result<Sent, Error> {
    let interrupt_after = match std::env::var(INTERRUPT_AFTER_PARTS_VAR) {
        Ok(v) => {
            Some(v.parse::<u64>().map_err(|_| Error::Local(format!("{INTERRUPT_AFTER_PARTS_VAR}: not a number")))?)
        }
        Err(_) => None,
    };
    let ctx = Arc::new(Ctx {
        book: UrlBook::new(api.clone(), job.id.clone(), &job.first),
        api: api.clone(),
        path: job.path,
        size: job.size,
        part_size: job.first.part_size,
        bar,
        done: Arc::new(AtomicU64::new(0)),
        backoff: Backoff::parts(job.retries),
    });
    let mut sent = Sent::default();
    let mut results = futures::stream::iter(job.parts)
        .map(|n| {
            let ctx = ctx.clone();
            async move { send_part(&ctx, n).await }
        })
        .buffer_unordered(job.jobs.max(1));
    while let Some(result) = results.next().await {
        match result? {
            PartDone::Sent(bytes) => {
                sent.parts += 1;
                sent.bytes += bytes;
                if interrupt_after == Some(sent.parts) {
                    return Err(Error::Interrupted(format!(
                        "interrupted after {} part(s) sent; finish with: {}",
                        sent.parts, job.resume_hint
                    )));
                }
            }
            PartDone::AlreadyStored => sent.already_stored += 1,
        }
    }
    ctx.bar.finish();
    Ok(sent)
}

struct Ctx {
    book: UrlBook,
    api: Api,
    path: PathBuf,
    size: u64,
    part_size: u64,
    bar: ProgressBar,
    /// Bytes sent by the attempts in flight and the parts done.
    done: Arc<AtomicU64>,
    backoff: Backoff,
}

impl Ctx {
    /// Counts part `n` as done without sending it (S3 already holds it).
    fn skip(&self, n: u64) {
        let len = part_len(self.size, self.part_size, n);
        self.bar.set_position(self.done.fetch_add(len, Ordering::Relaxed) + len);
    }

    /// Takes back the bytes of a failed attempt.
    fn rewind(&self, n: u64) {
        self.bar.set_position(self.done.fetch_sub(n, Ordering::Relaxed).saturating_sub(n));
    }
}

enum PartDone {
    Sent(u64),
    AlreadyStored,
}

/// Why one `PUT` did not store its part.
enum Failure {
    /// Worth another try: a network error, 5xx, 429 or 408.
    Retry(String, Option<Duration>),
    /// 403: the URL expired (or S3 refuses its signature): retry with a
    /// fresh one.
    Expired(String),
    /// 412 on a single `PUT`: the object is already there (an earlier
    /// attempt whose answer was lost); confirm checks it.
    AlreadyStored,
    /// Retrying cannot help.
    Fatal(Error),
}

async fn send_part(ctx: &Ctx, n: u64) -> Result<PartDone, Error> {
    let mut retry = 0;
    loop {
        let (put, generation) = match ctx.book.url(n).await? {
            Lookup::Stored => {
                ctx.skip(n);
                return Ok(PartDone::AlreadyStored);
            }
            Lookup::Url(put, generation) => (put, generation),
        };
        let counted = Arc::new(AtomicU64::new(0));
        let result = put_once(ctx, n, &put, counted.clone()).await;
        if result.is_err() {
            ctx.rewind(counted.load(Ordering::Relaxed));
        }
        let (why, wait, refused) = match result {
            Ok(()) => return Ok(PartDone::Sent(put.size)),
            Err(Failure::AlreadyStored) => {
                ctx.skip(n);
                return Ok(PartDone::AlreadyStored);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Expired(why)) => {
                ctx.book.expire(generation).await;
                (why, None, true)
            }
            Err(Failure::Retry(why, wait)) => (why, wait, false),
        };
        retry += 1;
        if retry > ctx.backoff.retries {
            let message = format!("part {n}: {why}, after {} retries", ctx.backoff.retries);
            return Err(if refused { Error::Api { status: 403, message } } else { Error::Unavailable(message) });
        }
        let delay = ctx.backoff.delay(retry, wait);
        ctx.api.ui().note(format!(
            "part {n}: {why}; retrying in {:.1} s (retry {retry} of {})",
            delay.as_secs_f64(),
            ctx.backoff.retries
        ));
        tokio::time::sleep(delay).await;
    }
}

/// One `PUT` of part `n`, its bytes streamed from the file (so memory
/// holds a chunk per connection, whatever the part size), with exactly
/// the signed headers.
async fn put_once(ctx: &Ctx, n: u64, put: &PresignedPut, counted: Arc<AtomicU64>) -> Result<(), Failure> {
    let len = part_len(ctx.size, ctx.part_size, n);
    if put.size != len {
        return Err(Failure::Fatal(Error::Unavailable(format!(
            "the API's URL for part {n} is for {} bytes; the part has {len}",
            put.size
        ))));
    }
    let path = ctx.path.display().to_string();
    let local = |e: std::io::Error| Failure::Fatal(Error::Local(format!("{path}: {e}")));
    let meta = tokio::fs::metadata(&ctx.path).await.map_err(local)?;
    if meta.len() != ctx.size {
        return Err(Failure::Fatal(Error::Local(format!(
            "{path} changed while uploading: it is {} bytes now, {} when the upload began",
            meta.len(),
            ctx.size
        ))));
    }
    let mut file = tokio::fs::File::open(&ctx.path).await.map_err(local)?;
    file.seek(SeekFrom::Start((n - 1) * ctx.part_size)).await.map_err(local)?;
    let body = part_body(file, len, counted, ctx);

    let mut req = ctx.api.http().put(&put.url).body(body);
    for (name, value) in &put.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    if !put.headers.contains_key("content-length") {
        req = req.header(reqwest::header::CONTENT_LENGTH, len);
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return Err(Failure::Retry(format!("network error: {}", chain(&e)), None)),
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(());
    }
    let wait = retry_after(resp.headers());
    let body = resp.text().await.unwrap_or_default();
    let code = xml_field(&body, "Code").unwrap_or("");
    let message = xml_field(&body, "Message").unwrap_or("");
    let s3_says = if code.is_empty() { format!("HTTP {status}") } else { format!("{code}: {message} (HTTP {status})") };
    Err(match (status, code) {
        (_, c) if c.contains("Digest") || c.contains("Checksum") => Failure::Fatal(Error::Integrity(format!(
            "part {n}: S3 refused the bytes, they do not match the checksum declared for them ({code}); did {path} change?"
        ))),
        (403, _) if code.is_empty() => Failure::Expired("S3 refused the URL".to_owned()),
        (403, _) => Failure::Expired(format!("S3 refused the URL: {code}: {message}")),
        (412, _) => Failure::AlreadyStored,
        (404, _) => Failure::Fatal(Error::Api {
            status,
            message: format!("part {n}: S3 no longer has this upload ({})", if code.is_empty() { "NoSuchUpload" } else { code }),
        }),
        (408 | 429, _) | (500.., _) => Failure::Retry(format!("S3 answered {s3_says}"), wait),
        _ => Failure::Fatal(Error::Api { status, message: format!("part {n}: S3 refused it: {}", if code.is_empty() { "no reason given".to_owned() } else { format!("{code}: {message}") }) }),
    })
}

/// `len` bytes of `file` from where it stands, as a request body, counting
/// them (in `counted`, and on the progress bar) as they go out.
fn part_body(file: tokio::fs::File, len: u64, counted: Arc<AtomicU64>, ctx: &Ctx) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let state = (file.take(len), len, counted, ctx.done.clone(), ctx.bar.clone());
    let stream = futures::stream::try_unfold(state, |(mut reader, left, counted, done, bar)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; CHUNK.min(left) as usize];
        let got = reader.read(&mut buf).await?;
        if got == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when the upload began",
            ));
        }
        buf.truncate(got);
        let got = got as u64;
        counted.fetch_add(got, Ordering::Relaxed);
        bar.set_position(done.fetch_add(got, Ordering::Relaxed) + got);
        Ok::<_, std::io::Error>(Some((buf, (reader, left - got, counted, done, bar))))
    });
    reqwest::Body::wrap_stream(stream)
}

/// The text of the first `<tag>` of an S3 XML error body.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(&body[start..end])
}

/// Where a part's URL comes from.
enum Lookup {
    Url(PresignedPut, u64),
    /// S3 already holds the part.
    Stored,
}

/// The presigned `PUT`s at hand, renewed through the resume route when
/// they are about to expire, when S3 refused one as expired, or for parts
/// no answer has carried yet (answers carry at most 1,000 URLs). One
/// renewal at a time: parts waiting for a URL wait for it.
struct UrlBook {
    api: Api,
    id: String,
    state: tokio::sync::Mutex<Urls>,
}

struct Urls {
    by_part: HashMap<u64, PresignedPut>,
    /// When to renew the URLs: shortly before they expire.
    renew_at: Option<OffsetDateTime>,
    /// Counts renewals, so that several parts refused with the same stale
    /// URLs renew them once.
    generation: u64,
    stale: bool,
    /// What S3 held at the last renewal.
    received: HashSet<u64>,
}

impl UrlBook {
    fn new(api: Api, id: String, first: &Transfer) -> Self {
        let mut urls =
            Urls { by_part: HashMap::new(), renew_at: None, generation: 0, stale: false, received: HashSet::new() };
        urls.take(first);
        Self { api, id, state: tokio::sync::Mutex::new(urls) }
    }

    /// A URL for part `n` that will not expire within a minute, or word
    /// that S3 already holds the part.
    async fn url(&self, n: u64) -> Result<Lookup, Error> {
        let mut urls = self.state.lock().await;
        let expiring = urls.renew_at.is_some_and(|at| at <= OffsetDateTime::now_utc());
        if urls.stale || expiring || !urls.by_part.contains_key(&n) {
            let answer = self.api.resume(&self.id).await?;
            let transfer = answer.view.upload.ok_or_else(|| {
                Error::Unavailable(format!("the API's resume answer for {} has no upload instructions", self.id))
            })?;
            urls.take(&transfer);
            urls.generation += 1;
            urls.stale = false;
        }
        if let Some(put) = urls.by_part.get(&n) {
            return Ok(Lookup::Url(put.clone(), urls.generation));
        }
        if urls.received.contains(&n) {
            return Ok(Lookup::Stored);
        }
        Err(Error::Unavailable(format!("the API gave no URL for part {n} of {}", self.id)))
    }

    /// S3 refused a URL of `generation` as expired: renew them at the next
    /// lookup, unless that was done meanwhile.
    async fn expire(&self, generation: u64) {
        let mut urls = self.state.lock().await;
        if urls.generation == generation {
            urls.stale = true;
        }
    }
}

impl Urls {
    fn take(&mut self, t: &Transfer) {
        self.by_part = t.puts().iter().map(|p| (p.part_number, p.clone())).collect();
        let now = OffsetDateTime::now_utc();
        let expires_at = t.urls_expire_at.as_deref().and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok());
        self.renew_at = expires_at.map(|at| at - URL_MARGIN.min((at - now) / 4));
        self.received = t.received().iter().copied().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_fields() {
        let body = "<?xml version=\"1.0\"?><Error><Code>BadDigest</Code><Message>The SHA256 you specified did not match.</Message></Error>";
        assert_eq!(xml_field(body, "Code"), Some("BadDigest"));
        assert_eq!(xml_field(body, "Message"), Some("The SHA256 you specified did not match."));
        assert_eq!(xml_field("", "Code"), None);
    }
}
