//! Reading a completed upload back through its presigned `GET`, checking
//! its size and declared checksum as the bytes arrive. A file is written
//! under a temporary name beside its destination and renamed only once
//! everything checks out, so a failed or interrupted download leaves no
//! output file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::api::{retry_after, Api, ChecksumType, Session};
use crate::checksum::{Algorithm, Verifier};
use crate::error::{chain, Error};
use crate::retry::{random_hex, Backoff};

/// Where the bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout,
    File(PathBuf),
}

/// What a download checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// The declared checksum (`algorithm`, its value) matched.
    Checksum(String, String),
    /// None was declared: only the size was checked.
    SizeOnly,
}

/// The file name `get` saves upload `id` under when given no name: its
/// filename without path separators or control characters, not starting
/// with a dot (no hidden or special names), at most 255 bytes; the id
/// when nothing usable is left.
pub fn safe_filename(name: &str, id: &str) -> String {
    let mut out: String = name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() { '_' } else { c }).collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    while out.len() > 255 {
        out.pop();
    }
    if out.chars().all(|c| c == '_' || c == '.' || c.is_whitespace()) {
        return id.to_owned();
    }
    out
}

/// Downloads completed upload `session` to `output`. Ctrl-C stops it and
/// removes the temporary file.
pub async fn download(
    api: &Api,
    session: &Session,
    output: &Output,
    retries: u32,
    bar: indicatif::ProgressBar,
) -> Result<Checked, Error> {
    let expected = expected_checksum(session);
    match output {
        Output::Stdout => {
            let mut sink = Sink::Stdout(tokio::io::stdout());
            let checked = interruptible("interrupted", fetch(api, session, &mut sink, expected, retries, &bar)).await?;
            sink.flush().await?;
            Ok(checked)
        }
        Output::File(path) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let temp = dir.join(format!(".uploads-{}.part", random_hex()));
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)
                .await
                .map_err(Error::io(temp.display()))?;
            let mut sink = Sink::File(file, temp.clone());
            let message = format!("interrupted; {} not written", path.display());
            let mut result = interruptible(&message, fetch(api, session, &mut sink, expected, retries, &bar)).await;
            if let (Ok(_), Sink::File(file, _)) = (&result, sink) {
                if let Err(e) = finish(file, &temp, path).await {
                    result = Err(e);
                }
            }
            if result.is_err() {
                let _ = tokio::fs::remove_file(&temp).await;
            }
            result
        }
    }
}

async fn finish(file: tokio::fs::File, temp: &Path, path: &Path) -> Result<(), Error> {
    file.sync_all().await.map_err(Error::io(temp.display()))?;
    drop(file);
    tokio::fs::rename(temp, path).await.map_err(Error::io(path.display()))
}

/// Where the bytes are written as they arrive.
enum Sink {
    Stdout(tokio::io::Stdout),
    /// The temporary file, and its path.
    File(tokio::fs::File, PathBuf),
}

impl Sink {
    fn name(&self) -> String {
        match self {
            Sink::Stdout(_) => "stdout".into(),
            Sink::File(_, p) => p.display().to_string(),
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let result = match self {
            Sink::Stdout(out) => out.write_all(bytes).await,
            Sink::File(f, _) => f.write_all(bytes).await,
        };
        result.map_err(Error::io(self.name()))
    }

    async fn flush(&mut self) -> Result<(), Error> {
        let result = match self {
            Sink::Stdout(out) => out.flush().await,
            Sink::File(f, _) => f.flush().await,
        };
        result.map_err(Error::io(self.name()))
    }

    /// Starts over (the server ignored a `Range`): possible for a file only.
    async fn restart(&mut self) -> Result<bool, Error> {
        let name = self.name();
        match self {
            Sink::Stdout(_) => Ok(false),
            Sink::File(f, _) => {
                f.rewind().await.map_err(Error::io(&name))?;
                f.set_len(0).await.map_err(Error::io(&name))?;
                Ok(true)
            }
        }
    }
}

/// The checksum `session` declares (algorithm, value), if it has one.
fn expected_checksum(session: &Session) -> Option<(Algorithm, String)> {
    let c = session.checksum.as_ref()?;
    Some((Algorithm::from(c.algorithm), c.value.clone()))
}

/// A verifier of `session`'s kind of checksum, fed from the first byte.
fn new_verifier(algorithm: Algorithm, session: &Session) -> Verifier {
    match session.checksum.as_ref() {
        Some(c) if c.kind == ChecksumType::Composite => Verifier::composite(algorithm, c.part_size),
        _ => Verifier::full_object(algorithm),
    }
}

/// Why one `GET` stopped short.
enum Failure {
    Retry(String, Option<Duration>),
    /// 403: the URL expired; get a fresh one.
    Expired(String),
}

/// Streams the object into `sink`, resuming with `Range` after a broken
/// connection, then checks size and checksum.
async fn fetch(
    api: &Api,
    session: &Session,
    sink: &mut Sink,
    expected: Option<(Algorithm, String)>,
    retries: u32,
    bar: &indicatif::ProgressBar,
) -> Result<Checked, Error> {
    let id = &session.upload_id;
    let size = session.size;
    let mut url = session
        .download
        .as_ref()
        .map(|d| d.url.clone())
        .ok_or_else(|| Error::Unavailable(format!("the API shows no download URL for completed upload {id}")))?;
    let backoff = Backoff::parts(retries);
    let mut verifier = expected.as_ref().map(|(a, _)| new_verifier(*a, session));
    let mut written = 0u64;
    let mut retry = 0;
    loop {
        let mut req = api.http().get(&url);
        if written > 0 {
            req = req.header(RANGE, format!("bytes={written}-"));
        }
        let failure = match req.send().await {
            Err(e) => Failure::Retry(format!("network error: {}", chain(&e)), None),
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                match status {
                    200 | 206 => {
                        let resumed = status == 206
                            && resp
                                .headers()
                                .get(CONTENT_RANGE)
                                .and_then(|v| v.to_str().ok())
                                .is_some_and(|v| v.starts_with(&format!("bytes {written}-")));
                        if written > 0 && !resumed {
                            // The server sent the object from its start.
                            if !sink.restart().await? {
                                return Err(Error::Unavailable(format!(
                                    "the download of {id} broke off and S3 cannot resume it; stdout already has part of it"
                                )));
                            }
                            written = 0;
                            bar.set_position(0);
                            verifier = expected.as_ref().map(|(a, _)| new_verifier(*a, session));
                        }
                        let mut broke = None;
                        loop {
                            match resp.chunk().await {
                                Ok(Some(chunk)) => {
                                    written += chunk.len() as u64;
                                    if written > size {
                                        return Err(Error::Integrity(format!(
                                            "the download of {id} is longer than its {size} bytes"
                                        )));
                                    }
                                    if let Some(v) = verifier.as_mut() {
                                        v.update(&chunk);
                                    }
                                    sink.write(&chunk).await?;
                                    bar.set_position(written);
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    broke = Some(Failure::Retry(format!("network error: {}", chain(&e)), None));
                                    break;
                                }
                            }
                        }
                        match broke {
                            None if written < size => {
                                Failure::Retry(format!("the answer ended after {written} bytes"), None)
                            }
                            None => break,
                            Some(f) => f,
                        }
                    }
                    403 => Failure::Expired(format!("S3 refused the download URL (HTTP {status})")),
                    404 => {
                        return Err(Error::Api { status, message: format!("the bytes of {id} are gone (deleted?)") })
                    }
                    408 | 429 | 500.. => {
                        Failure::Retry(format!("S3 answered HTTP {status}"), retry_after(resp.headers()))
                    }
                    _ => return Err(Error::Api { status, message: format!("S3 refused the download of {id}") }),
                }
            }
        };
        retry += 1;
        let (why, wait) = match failure {
            Failure::Retry(why, wait) => (why, wait),
            Failure::Expired(why) => {
                if retry <= backoff.retries {
                    let fresh = api.get(id).await?;
                    url = fresh.view.download.map(|d| d.url).unwrap_or(url);
                }
                (why, None)
            }
        };
        if retry > backoff.retries {
            return Err(Error::Unavailable(format!("downloading {id}: {why}, after {} retries", backoff.retries)));
        }
        let delay = backoff.delay(retry, wait);
        api.ui().note(format!(
            "download: {why}; retrying in {:.1} s (retry {retry} of {})",
            delay.as_secs_f64(),
            backoff.retries
        ));
        tokio::time::sleep(delay).await;
    }
    bar.finish();
    match (expected, verifier) {
        (Some((algorithm, expected)), Some(v)) => {
            let actual = v.finish();
            if actual != expected {
                let nothing = match sink {
                    Sink::File(..) => "; nothing written",
                    Sink::Stdout(_) => "",
                };
                return Err(Error::Integrity(format!(
                    "checksum mismatch: upload {id} declares {} {expected}, the bytes downloaded have {actual}{nothing}",
                    algorithm.as_str()
                )));
            }
            Ok(Checked::Checksum(algorithm.as_str().to_owned(), actual))
        }
        _ => Ok(Checked::SizeOnly),
    }
}

/// Runs `fut`, or stops with [`Error::Interrupted`] (`message`) on Ctrl-C.
pub async fn interruptible<T>(
    message: &str,
    fut: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: never fires.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = fut => result,
        () = ctrl_c => Err(Error::Interrupted(message.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_are_made_safe() {
        let id = "upl_3f2a9c4e8b1d4f6a9e0c7b5d2a1f8e36";
        assert_eq!(safe_filename("report.pdf", id), "report.pdf");
        assert_eq!(safe_filename("../../etc/passwd", id), "_._.._etc_passwd");
        assert_eq!(safe_filename("a\\b/c", id), "a_b_c");
        assert_eq!(safe_filename(".bashrc", id), "_bashrc");
        assert_eq!(safe_filename("..", id), id);
        assert_eq!(safe_filename("/", id), id);
        assert_eq!(safe_filename("tab\there", id), "tab_here");
        assert_eq!(safe_filename("Grüße ☀.txt", id), "Grüße ☀.txt");
        assert!(safe_filename(&"é".repeat(255), id).len() <= 255);
    }
}
