//! The commands: what each does with the API, the file and the terminal.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{parse_upload_id, Answer, Api, Confirmed, NewUpload, Session, TransferType};
use crate::checksum::{self, Algorithm};
use crate::cli::{Cli, Command, GetArgs, LsArgs, PutArgs, ResumeArgs};
use crate::download::{self, interruptible, safe_filename, Checked, Output};
use crate::error::Error;
use crate::plan::{human, part_len, ranges, Plan};
use crate::transfer::{self, Job};
use crate::ui::{print_json, print_stdout, Ui};

/// How long `put` and `resume` keep confirming while S3 completes a
/// multipart upload (202) before leaving it to a later `resume`.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// What every command works with.
pub struct Context {
    pub api: Api,
    pub ui: Ui,
    pub json: bool,
    pub retries: u32,
}

impl Context {
    /// From the global options: `--url`/`UPLOADS_URL`, `--api-key`/
    /// `UPLOADS_API_KEY`, `--json`, `--quiet`, `--retries`.
    pub fn from_cli(cli: &Cli) -> Result<Self, Error> {
        let url = cli
            .url
            .as_deref()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::Local("no API URL: pass --url or set UPLOADS_URL".into()))?;
        let key = cli
            .api_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| Error::Local("no API key: pass --api-key or set UPLOADS_API_KEY".into()))?;
        let ui = Ui::new(cli.quiet, cli.json);
        Ok(Self { api: Api::new(url, key, cli.retries, ui.clone())?, ui, json: cli.json, retries: cli.retries })
    }
}

/// Runs the command `cli` names.
pub async fn run(cli: Cli) -> Result<(), Error> {
    let ctx = Context::from_cli(&cli)?;
    match cli.command {
        Command::Put(args) => put(&ctx, args).await.map(drop),
        Command::Resume(args) => resume(&ctx, args).await.map(drop),
        Command::Get(args) => get(&ctx, args).await,
        Command::Ls(args) => ls(&ctx, args).await,
        Command::Rm(args) => rm(&ctx, &args.id).await,
        Command::Show(args) => show(&ctx, &args.id).await,
    }
}

/// `uploads put FILE`: returns the completed upload's view.
pub async fn put(ctx: &Context, args: PutArgs) -> Result<Answer<Session>, Error> {
    let path = args.file;
    let size = file_size(&path)?;
    if size == 0 {
        return Err(Error::Local(format!("{} is empty: the service takes uploads of 1 byte or more", path.display())));
    }
    let filename = match args.name {
        Some(n) => n,
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| Error::Local(format!("{} has no file name: give one with --name", path.display())))?,
    };
    let content_type = args
        .content_type
        .unwrap_or_else(|| mime_guess::from_path(&path).first_or_octet_stream().essence_str().to_owned());
    let algorithm = args.checksum.algorithm();
    let plan = Plan::choose(size, algorithm, args.part_size)?;

    let checksums = match algorithm {
        None => None,
        Some(a) => Some(digests(ctx, &path, size, a, plan.part_size).await?),
    };
    let started = Instant::now();
    let new = NewUpload {
        filename,
        content_type,
        size,
        part_size: Some(plan.part_size),
        checksum_algorithm: algorithm.map(Algorithm::api),
        checksums,
    };
    let created = ctx.api.create(&new).await?;
    let session = created.view;
    let id = session.upload_id.clone();
    let upload = session
        .upload
        .ok_or_else(|| Error::Unavailable(format!("the API's answer for {id} has no upload instructions")))?;
    let hint = format!("uploads resume {id} {}", shell_quote(&path));
    let shape = if upload.part_count == 1 {
        format!("one PUT of {}", human(size))
    } else {
        format!("{} parts of {}", upload.part_count, human(upload.part_size))
    };
    let declared = match (&session.checksum, algorithm) {
        (Some(c), _) => format!("{} checksums", c.algorithm),
        (None, Some(a)) => format!("{} checksums not kept by this API", a.as_str()),
        (None, None) => "no checksums".to_owned(),
    };
    ctx.ui.always(format!("upload {id} created: {shape}, {declared}; if interrupted, finish with: {hint}"));

    let parts = (1..=upload.part_count).collect();
    let job = Job {
        id: id.clone(),
        path: path.clone(),
        size,
        first: upload,
        parts,
        jobs: usize::from(args.jobs),
        retries: ctx.retries,
        resume_hint: hint.clone(),
    };
    send_and_confirm(ctx, job, size, started).await
}

/// `uploads resume ID FILE`: sends the parts S3 lacks and confirms;
/// returns the completed upload's view.
pub async fn resume(ctx: &Context, args: ResumeArgs) -> Result<Answer<Session>, Error> {
    let id = parse_upload_id(&args.id)?;
    let path = args.file;
    let size = file_size(&path)?;
    let hint = format!("uploads resume {id} {}", shell_quote(&path));
    let resumed = match ctx.api.resume(&id).await {
        Err(Error::Api { status: 409, message }) if message == "Upload already completed" => {
            ctx.ui.note(format!("upload {id} is already completed"));
            let done = ctx.api.get(&id).await?;
            if done.view.size != size {
                return Err(Error::Local(format!(
                    "{} is {size} bytes; upload {id} (completed) is {} bytes: not the same file",
                    path.display(),
                    done.view.size
                )));
            }
            print_result(ctx, &done, &id)?;
            return Ok(done);
        }
        other => other?,
    };
    let session = resumed.view;
    if session.size != size {
        return Err(Error::Local(format!(
            "{} is {size} bytes; upload {id} is {} bytes: not the same file",
            path.display(),
            session.size
        )));
    }
    let upload = session
        .upload
        .ok_or_else(|| Error::Unavailable(format!("the API's resume answer for {id} has no upload instructions")))?;
    let received: HashSet<u64> = upload.received().iter().copied().collect();
    let missing: Vec<u64> = (1..=upload.part_count).filter(|n| !received.contains(n)).collect();
    let bytes: u64 = missing.iter().map(|&n| part_len(size, upload.part_size, n)).sum();
    if missing.is_empty() {
        ctx.ui.note(format!("resuming {id}: all {} part(s) are stored already", upload.part_count));
    } else {
        ctx.ui.note(format!(
            "resuming {id}: {} of {} part(s) missing ({}), {}",
            missing.len(),
            upload.part_count,
            ranges(&missing),
            human(bytes)
        ));
    }
    let started = Instant::now();
    let job = Job {
        id: id.clone(),
        path,
        size,
        first: upload,
        parts: missing,
        jobs: usize::from(args.jobs),
        retries: ctx.retries,
        resume_hint: hint.clone(),
    };
    send_and_confirm(ctx, job, bytes, started).await
}

/// Sends the parts of `job` (`bytes` in all) under a progress bar, then
/// confirms; Ctrl-C stops both with the resume command as the message.
/// Shared by `put` and `resume`.
async fn send_and_confirm(ctx: &Context, job: Job, bytes: u64, started: Instant) -> Result<Answer<Session>, Error> {
    let (id, hint) = (job.id.clone(), job.resume_hint.clone());
    let message = format!("interrupted; finish with: {hint}");
    let (sent, done) = interruptible(&message, async {
        let sent = transfer::send(&ctx.api, job, ctx.ui.bar(bytes, "upload")).await?;
        let done = confirm(ctx, &id, &hint).await?;
        Ok((sent, done))
    })
    .await?;
    ctx.ui.note(format!(
        "uploaded {id}: {} part(s) sent ({}) in {:.1} s",
        sent.parts,
        human(sent.bytes),
        started.elapsed().as_secs_f64()
    ));
    print_result(ctx, &done, &id)?;
    Ok(done)
}

/// Confirms `id` until it is completed: again after `Retry-After` while S3
/// completes a multipart upload (202).
async fn confirm(ctx: &Context, id: &str, hint: &str) -> Result<Answer<Session>, Error> {
    let deadline = Instant::now() + CONFIRM_PATIENCE;
    loop {
        match ctx.api.confirm(id).await {
            Ok(Confirmed::Done(done)) => return Ok(*done),
            Ok(Confirmed::InProgress(wait)) => {
                if Instant::now() >= deadline {
                    return Err(Error::Unavailable(format!(
                        "S3 is still completing {id}; confirm it later with: {hint}"
                    )));
                }
                let wait = wait.clamp(Duration::from_secs(1), Duration::from_secs(60));
                ctx.ui.note(format!("S3 is completing {id}; confirming again in {} s", wait.as_secs()));
                tokio::time::sleep(wait).await;
            }
            Err(Error::Api { status: 409, message }) if message == "Upload checksum mismatch" => {
                return Err(Error::Integrity(format!(
                    "{message} (HTTP 409): S3 holds bytes for {id} whose checksum is not the one declared"
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The id on stdout, or with `--json` the view.
fn print_result(ctx: &Context, done: &Answer<Session>, id: &str) -> Result<(), Error> {
    if ctx.json {
        print_json(&done.json)
    } else {
        print_stdout(&format!("{id}\n"))
    }
}

/// The checksum of each part of `path`, read once.
async fn digests(
    ctx: &Context,
    path: &Path,
    size: u64,
    algorithm: Algorithm,
    part_size: u64,
) -> Result<Vec<String>, Error> {
    let bar = ctx.ui.bar(size, algorithm.as_str());
    let path = path.to_path_buf();
    let reading = bar.clone();
    let (raw, read) = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(Error::io(path.display()))?;
        checksum::part_digests(file, algorithm, part_size, |n| reading.inc(n)).map_err(Error::io(path.display()))
    })
    .await
    .map_err(|e| Error::Local(format!("computing checksums: {e}")))??;
    bar.finish_and_clear();
    if read != size {
        return Err(Error::Local(format!("the file changed while being read ({read} bytes, {size} before)")));
    }
    Ok(raw.iter().map(|d| checksum::encode(d)).collect())
}

/// `uploads get ID [OUT]`.
pub async fn get(ctx: &Context, args: GetArgs) -> Result<(), Error> {
    let id = parse_upload_id(&args.id)?;
    if args.out.as_deref() == Some("-") && ctx.json {
        return Err(Error::Local("--json and OUT `-` both want stdout: choose one".into()));
    }
    let answer = ctx.api.get(&id).await?;
    let session = &answer.view;
    if !session.is_completed() {
        return Err(Error::State(format!(
            "upload {id} is {}: there is nothing to download until it is confirmed",
            session.status
        )));
    }
    let output = match args.out.as_deref() {
        Some("-") => Output::Stdout,
        Some(out) if Path::new(out).is_dir() => {
            Output::File(Path::new(out).join(safe_filename(&session.filename, &id)))
        }
        Some(out) => Output::File(PathBuf::from(out)),
        None => Output::File(PathBuf::from(safe_filename(&session.filename, &id))),
    };
    if let Output::File(path) = &output {
        if !args.force && std::fs::symlink_metadata(path).is_ok() {
            return Err(Error::Local(format!("{} exists: use --force to replace it", path.display())));
        }
    }
    if let Some(checksum) = crate::api::unknown_checksum(&answer.json) {
        ctx.ui.note(format!("checksum {checksum} is unknown to this client: only the size is checked"));
    }
    let bar = ctx.ui.bar(session.size, "download");
    let checked = download::download(&ctx.api, session, &output, ctx.retries, bar).await?;
    let verdict = match &checked {
        Checked::Checksum(algorithm, _) => format!("{algorithm} checksum verified"),
        Checked::SizeOnly => "no checksum declared, size checked".to_owned(),
    };
    match &output {
        Output::Stdout => ctx.ui.note(format!("{id}: {} written to stdout, {verdict}", human(session.size))),
        Output::File(path) => {
            ctx.ui.note(format!("saved {id} to {} ({}, {verdict})", path.display(), human(session.size)));
            if ctx.json {
                print_json(&answer.json)?;
            } else {
                print_stdout(&format!("{}\n", path.display()))?;
            }
        }
    }
    Ok(())
}

/// `uploads ls`: every page, or `--limit` uploads.
pub async fn ls(ctx: &Context, args: LsArgs) -> Result<(), Error> {
    let uploads = list_all(&ctx.api, args.limit).await?;
    if ctx.json {
        // The API's JSON as it came, members this client does not know included.
        return print_json(&Value::Array(uploads.into_iter().map(|a| a.json).collect()));
    }
    let uploads: Vec<Session> = uploads.into_iter().map(|a| a.view).collect();
    if uploads.is_empty() {
        ctx.ui.note("no uploads");
        return Ok(());
    }
    let mut table = format!("{:<36}  {:<9}  {:>10}  {:<19}  {}\n", "ID", "STATUS", "SIZE", "CREATED (UTC)", "FILENAME");
    for s in &uploads {
        table.push_str(&format!(
            "{:<36}  {:<9}  {:>10}  {:<19}  {}\n",
            s.upload_id,
            s.status,
            human(s.size),
            short_time(&s.created_at),
            s.filename
        ));
    }
    print_stdout(&table)
}

/// The caller's uploads, newest first, following cursors; at most `limit`.
pub async fn list_all(api: &Api, limit: Option<u32>) -> Result<Vec<Answer<Session>>, Error> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let want = limit.map_or(100, |l| (l as usize).saturating_sub(all.len()).min(100));
        if want == 0 {
            break;
        }
        let page = api.list(want as u32, cursor.as_deref()).await?;
        all.extend(page.uploads);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if let Some(l) = limit {
        all.truncate(l as usize);
    }
    Ok(all)
}

/// `uploads rm ID`.
pub async fn rm(ctx: &Context, id: &str) -> Result<(), Error> {
    let id = parse_upload_id(id)?;
    let answer = ctx.api.delete(&id).await?;
    if ctx.json {
        return print_json(&answer);
    }
    let message =
        answer.get("message").and_then(Value::as_str).map_or_else(|| format!("Upload {id} deleted"), str::to_owned);
    print_stdout(&format!("{message}\n"))
}

/// `uploads show ID`.
pub async fn show(ctx: &Context, id: &str) -> Result<(), Error> {
    let id = parse_upload_id(id)?;
    let answer = ctx.api.get(&id).await?;
    if ctx.json {
        return print_json(&answer.json);
    }
    let s = &answer.view;
    let mut lines = vec![
        ("upload_id", s.upload_id.clone()),
        ("status", s.status.to_string()),
        ("filename", s.filename.clone()),
        ("content_type", s.content_type.clone()),
        ("size", format!("{} ({})", s.size, human(s.size))),
        ("created_at", s.created_at.clone()),
    ];
    if let Some(at) = &s.completed_at {
        lines.push(("completed_at", at.clone()));
    }
    if let Some(at) = &s.expires_at {
        lines.push(("expires_at", at.clone()));
    }
    if let Some(c) = &s.checksum {
        lines.push(("checksum", format!("{} {} {}", c.algorithm, c.kind, c.value)));
    }
    if let Some(u) = &s.upload {
        let shape = if u.kind == TransferType::Single {
            "single PUT".to_owned()
        } else {
            format!("multipart, {} parts of {}", u.part_count, human(u.part_size))
        };
        lines.push(("transfer", shape));
        lines.push(("parts_received", or_none(ranges(u.received()))));
        lines.push(("parts_missing", or_none(ranges(u.missing()))));
    }
    if let Some(d) = &s.download {
        lines.push(("download", format!("uploads get {} (URL valid until {})", s.upload_id, d.expires_at)));
    }
    let text: String = lines.iter().map(|(k, v)| format!("{k:<15} {v}\n")).collect();
    print_stdout(&text)
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

/// `2026-11-23T21:56:01.123Z` as `2026-11-23 21:56:01`.
fn short_time(t: &str) -> String {
    t.get(..19).map_or_else(|| t.to_owned(), |s| s.replacen('T', " ", 1))
}

/// The size of the regular file at `path`.
fn file_size(path: &Path) -> Result<u64, Error> {
    let meta = std::fs::metadata(path).map_err(Error::io(path.display()))?;
    if !meta.is_file() {
        return Err(Error::Local(format!("{} is not a regular file", path.display())));
    }
    Ok(meta.len())
}

/// `path` as a shell word: as it is when it is plain, else single-quoted.
fn shell_quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./+=:@%,".contains(c)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_times() {
        assert_eq!(shell_quote(Path::new("big.bin")), "big.bin");
        assert_eq!(shell_quote(Path::new("my file's.bin")), r"'my file'\''s.bin'");
        assert_eq!(short_time("2026-11-23T21:56:01.123Z"), "2026-11-23 21:56:01");
    }
}
