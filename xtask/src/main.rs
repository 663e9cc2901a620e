//! `cargo xtask <command>`: the project's dev commands. What they run is in
//! the `local` crate (the local AWS) and the `bench` crate (the bench and
//! the capacity model); this crate parses arguments, builds, and prints.
//!
//! - `dev`: the whole API locally (moto on loopback, the bucket in the
//!   verifying S3 unless `UPLOADS_VERIFYING_S3=0`, resources from
//!   `template.yaml`, every function as its real binary, the API on
//!   `http://127.0.0.1:3000`, the cleanup queue fed to its function, the
//!   table's stream fed to the publisher, the upload events bus and its
//!   example rule's queue), and the files `sam local` runs the functions
//!   against it with (`target/dev/sam-env.json`, `local/src/samlocal.rs`).
//! - `events [--once] [--json] [--delete] [--queue-url URL]`: the upload
//!   events the example rule delivers, one line each (`xtask/src/events.rs`
//!   on `local/src/events.rs`); the dev stack's unless `--queue-url`.
//! - `test`: the template checks, then every test against a moto server of its own.
//! - `check-template`: `cfn-lint` and `sam validate --lint` on `template.yaml`.
//! - `capacity [--seconds N]`: the capacity model (`bench/src/capacity.rs`)
//!   over N seconds of modeled peak (default 60); see `docs/capacity.md`.
//! - `catalogue [service:Operation[+if-none-match]…]`: the errors each
//!   operation can answer (`local/src/catalogue.rs`: botocore's service
//!   models plus the common and conditional errors), as Markdown.
//! - `bench [--iterations N] [--only FUNCTION,…] [--scale N]`: every
//!   function's release binary measured against the local stack
//!   (`bench/src/binaries.rs`); prints Markdown tables, see `docs/performance.md`.
//! - `check-iam CALL_LOG`: holds the calls logged by a test run's emulator
//!   against every function's policy (`xtask/src/iam.rs`; `cargo xtask test`
//!   does it itself).
//! - `mint-key --owner O [--key usk_…] [--table T]`: mints an API key
//!   against whatever endpoint the AWS environment points to.
//! - `revoke-key --key usk_… [--table T]`: revokes one.
//! - `s3verify [--port N] [--root DIR]`: the verifying local S3 the signature
//!   tests use (`local/src/s3verify.rs`), on loopback until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use local::feeder::Feeder;
use local::moto::{self, Moto};
use local::stack::{project_root, Stack};
use shared::domain::{ApiKey, OwnerId};

const USAGE: &str = "usage: cargo xtask <dev | events [--once] [--json] [--delete] [--queue-url URL] | test [-- cargo test args] | check-template | check-iam CALL_LOG | capacity [--seconds N] | catalogue [service:Operation[+if-none-match]...] | bench [--iterations N] [--only FUNCTION,...] [--scale N] | mint-key --owner OWNER [--key KEY] [--table TABLE] | revoke-key --key KEY [--table TABLE] | s3verify [--port N] [--root DIR]>";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dev") => dev().await,
        Some("events") => xtask::events::command(&args[1..]).await,
        Some("test") => test(&args[1..]).await,
        Some("check-template") => check_template().map(|()| ExitCode::SUCCESS),
        Some("capacity") => capacity(&args[1..]),
        Some("catalogue") => catalogue(&args[1..]),
        Some("bench") => bench(&args[1..]).await,
        Some("check-iam") => match args.get(1) {
            Some(log) => check_iam(std::path::Path::new(log)).map(|()| ExitCode::SUCCESS),
            None => Err(anyhow!(USAGE)),
        },
        Some("mint-key") => mint_key(&args[1..]).await,
        Some("revoke-key") => revoke_key(&args[1..]).await,
        Some("s3verify") => s3verify(&args[1..]).await,
        _ => Err(anyhow!(USAGE)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// `cargo` in the project folder, with the environment `cargo run` gave
/// this process taken back out: build scripts (ring's among them) rerun when
/// `CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR` and the like change, so a build
/// started from here with xtask's values would rebuild them, and everything
/// above them, after every build started from a shell, and the other way round.
fn cargo() -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(project_root());
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_MANIFEST_LINKS",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_run {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd
}

/// Builds every workspace binary (the functions `template.yaml` names among
/// them), with the same features `cargo test --workspace` resolves, so the
/// two share one build of the dependencies.
fn build_functions(template: &local::template::Template) -> Result<()> {
    let status = cargo().args(["build", "--workspace", "--bins"]).status().context("running cargo build")?;
    if !status.success() {
        bail!("building the functions failed");
    }
    for f in template.functions()? {
        let path = local::runtime::binary_path(&f.binary);
        if !path.exists() {
            bail!("template function {} names binary {}, which the workspace does not build", f.logical_id, f.binary);
        }
    }
    Ok(())
}

async fn dev() -> Result<ExitCode> {
    let moto_port: u16 = env_or("UPLOADS_MOTO_PORT", "5055").parse().context("UPLOADS_MOTO_PORT")?;
    let api_port: u16 = env_or("UPLOADS_API_PORT", "3000").parse().context("UPLOADS_API_PORT")?;
    let owner = OwnerId::parse(&env_or("UPLOADS_DEV_OWNER", "dev"))
        .ok_or_else(|| anyhow!("UPLOADS_DEV_OWNER is not a valid owner id"))?;
    let key = match std::env::var("UPLOADS_DEV_API_KEY") {
        Ok(k) if !k.is_empty() => ApiKey::parse(&k)
            .ok_or_else(|| anyhow!("UPLOADS_DEV_API_KEY must be usk_ followed by 64 lowercase hex digits"))?,
        _ => ApiKey::generate(),
    };

    let listen: std::net::IpAddr = env_or("UPLOADS_LISTEN", "127.0.0.1")
        .parse()
        .context("UPLOADS_LISTEN must be an IP address (127.0.0.1, 0.0.0.0, 172.17.0.1...)")?;
    let verifying = match env_or("UPLOADS_VERIFYING_S3", "1").as_str() {
        "1" | "true" => true,
        "0" | "false" => false,
        other => bail!("UPLOADS_VERIFYING_S3 must be 1 or 0, not {other:?}"),
    };
    let s3_port: u16 = env_or("UPLOADS_S3_PORT", "5056").parse().context("UPLOADS_S3_PORT")?;
    let container_host = env_or("UPLOADS_CONTAINER_HOST", local::samlocal::CONTAINER_HOST);

    // The functions' build, the uploads page's bundle and the emulator's
    // install go on at once: the first waits on the compiler, the others
    // mostly on the network and on node.
    let template = local::template::Template::load(&project_root().join("template.yaml"))?;
    let functions = std::thread::spawn(move || build_functions(&template));
    let page = std::thread::spawn(|| build_client_js(false));

    let moto = Moto::start_listening(listen, moto_port, None)
        .await
        .with_context(|| format!("starting moto on {}", SocketAddr::new(listen, moto_port)))?;
    // The bucket in the verifying S3 (local/src/s3verify.rs): presigned URLs
    // without their signed headers, expired, or with other bytes than a
    // signed checksum are refused here as on S3; moto takes them all.
    let s3 = if verifying {
        let addr = SocketAddr::new(listen, s3_port);
        let signers = local::s3verify::Signers::AnyKeyId("testing".into());
        Some(local::s3verify::VerifyingS3::start_in_temp(addr, signers).await.with_context(|| {
            format!("starting the verifying S3 on {addr} (UPLOADS_S3_PORT; UPLOADS_VERIFYING_S3=0 keeps S3 in moto)")
        })?)
    } else {
        None
    };
    let overrides = local::stack::parse_overrides(&env_or("UPLOADS_PARAMETER_OVERRIDES", ""))?;
    let stack = Stack::provision_on(
        &moto.endpoint,
        s3.as_ref().map(|s| s.endpoint.as_str()),
        local::stack::DEV_STACK,
        overrides,
    )
    .await?;
    if s3.is_some() {
        let policy = stack.config()?.uploads;
        let largest = policy.part_size_bytes.max(policy.multipart_threshold_bytes);
        if largest as usize > local::s3verify::MAX_BODY {
            bail!(
                "the verifying S3 takes bodies up to {} bytes, and these parameters sign PUTs of up to {largest}: \
                 lower PartSizeBytes/MultipartThresholdBytes or set UPLOADS_VERIFYING_S3=0",
                local::s3verify::MAX_BODY
            );
        }
    }
    functions.join().map_err(|_| anyhow!("the build thread panicked"))??;
    stack.store()?.put_api_key(&key, &owner).await?;
    // The uploads page's bundle (clients/js); the API runs without it.
    let page_built = page.join().map_err(|_| anyhow!("the npm thread panicked"))?;

    let hosts = stack.start_functions(true).await?;

    let config = stack.config()?;
    println!();
    println!("x-api-key: {}", key.expose());
    println!("owner: {owner}");
    println!("emulator endpoint: {}", moto.endpoint);
    match &s3 {
        Some(s3) => println!(
            "S3 endpoint: {} (verifying S3: SigV4 and presigned URLs checked as on S3; objects in {})",
            s3.endpoint,
            s3.root.display()
        ),
        None => println!("S3 endpoint: {} (moto: presigned URLs are not checked)", moto.endpoint),
    }
    println!("table: {}", config.table_name);
    println!("bucket: {}", config.bucket_name);
    for (id, _) in stack.template.of_kind("AWS::SQS::Queue") {
        if let Ok(queue) = stack.physical(id) {
            println!("queue {id}: {}", queue.reference);
        }
    }
    print_events(&stack, moto_port)?;
    println!("api: http://127.0.0.1:{api_port}");
    match &page_built {
        Ok(()) => println!(
            "uploads page (Uppy Dashboard; holds only tokens, which it gets from {}/token, minted with the dev key \
             through POST /tokens): http://127.0.0.1:{api_port}{}",
            local::apppage::DEV_PREFIX,
            local::apppage::UPLOAD_PAGE_PATH
        ),
        Err(e) => println!(
            "uploads page: not built ({e:#}); it needs Node 20+ and npm (cd clients/js && npm ci && npm run build)"
        ),
    }
    println!(
        "one-file upload page (holds the key): http://127.0.0.1:{api_port}{}?key={}",
        local::gateway::BASIC_PAGE_PATH,
        key.expose()
    );
    println!("mint another key: AWS_ENDPOINT_URL={} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing TABLE_NAME={} cargo xtask mint-key --owner OWNER", moto.endpoint, config.table_name);
    println!("routes:");
    let routes = stack.template.routes()?;
    for r in &routes {
        println!("  {} {} -> {}", r.method, r.path, r.function);
    }
    println!("schedules run every {}s locally (UPLOADS_SWEEP_SECONDS)", env_or("UPLOADS_SWEEP_SECONDS", "30"));
    let sam_files = local::samlocal::write(&stack, &container_host, &project_root().join("target").join("dev"))?;
    println!("sam local env vars: {}", sam_files.env_vars.display());
    println!("sam local template: {} (after `sam build`; needs Docker)", sam_files.template.display());
    for command in local::samlocal::commands(&sam_files, &container_host) {
        println!("  {command}");
    }
    if listen.is_loopback() {
        println!("  (containers reach the stack on Docker Desktop; on Linux start dev with UPLOADS_LISTEN=0.0.0.0 or the docker0 address)");
    }
    println!("Ctrl-C stops everything.");

    // Event sources: SQS queues feed their functions.
    let mut feeders = Vec::new();
    for (f, host) in hosts.values() {
        if let Some(queue) = &f.queue {
            let physical = stack.physical(queue)?.clone();
            let feeder = Feeder {
                client: aws_sdk_sqs::Client::new(&stack.sdk),
                queue_url: physical.reference,
                queue_arn: physical.arn,
                batch_size: 10,
                // No long polling: the emulator serves one request at a time.
                wait_seconds: 0,
            };
            let host = host.clone();
            feeders.push(tokio::spawn(async move {
                loop {
                    match feeder.round(&host).await {
                        Ok(r) if r.received == 0 => tokio::time::sleep(Duration::from_millis(200)).await,
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("[feeder {}] {e:#}", host.name);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }));
        }
    }

    // Streams: the table's stream feeds the functions with a DynamoDB event
    // (the publisher), as their event source mappings would.
    for (f, host) in hosts.values() {
        if f.stream.is_some() {
            let mut feeder = local::streams::StreamFeeder::new(&stack, f)?;
            let host = host.clone();
            feeders.push(tokio::spawn(async move {
                loop {
                    match feeder.round(&host).await {
                        Ok(r) if r.read == 0 => tokio::time::sleep(Duration::from_millis(250)).await,
                        Ok(r) if r.discarded > 0 => {
                            eprintln!(
                                "[stream {}] gave up {} records (see the on-failure queue)",
                                host.name, r.discarded
                            )
                        }
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("[stream {}] {e:#}", host.name);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }));
        }
    }

    // Schedules: every function with a Schedule event runs on a short local
    // interval, so abandoned sessions expire while you watch.
    let sweep_every: u64 = env_or("UPLOADS_SWEEP_SECONDS", "30").parse().context("UPLOADS_SWEEP_SECONDS")?;
    for (f, host) in hosts.values() {
        if f.schedule_seconds.is_some() {
            let host = host.clone();
            let name = f.logical_id.clone();
            feeders.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(sweep_every.max(1)));
                loop {
                    tick.tick().await;
                    if let Err(e) = host.invoke(&local::feeder::scheduled_event(&name)).await {
                        eprintln!("[schedule {name}] {e:#}");
                    }
                }
            }));
        }
    }

    let gateway = stack.gateway(&hosts)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], api_port));
    // The uploads page and its token route beside the API, under /_local/.
    let app = local::apppage::AppPage::new(&format!("http://127.0.0.1:{api_port}"), key.expose());
    let router = axum::Router::new().nest(local::apppage::DEV_PREFIX, app.router()).fallback_service(gateway.router());
    tokio::select! {
        r = local::gateway::serve_router(router, addr) => r.with_context(|| format!("serving the API on {addr}"))?,
        _ = stop_signal() => eprintln!("stopping"),
    }
    for f in feeders {
        f.abort();
    }
    drop(hosts);
    drop(s3);
    moto.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Where the dev stack's upload events go and how to read them (the
/// emulator on `moto_port`).
fn print_events(stack: &Stack, moto_port: u16) -> Result<()> {
    for (id, _) in stack.template.of_kind("AWS::Events::EventBus") {
        let source = stack
            .template
            .functions()?
            .into_iter()
            .find_map(|f| f.environment.get("EVENT_SOURCE").cloned())
            .map(|v| stack.resolve(&v))
            .transpose()?
            .unwrap_or_default();
        println!("upload events: bus {} ({id}), source {source}", stack.physical(id)?.reference);
    }
    let queues: Vec<String> =
        local::events::event_queues(stack).into_iter().filter(|q| stack.resources.contains_key(q)).collect();
    for q in &queues {
        println!("  delivered to queue {q}: {}", stack.physical(q)?.reference);
    }
    if queues.is_empty() {
        println!("  (no rule delivers them to a queue: ExampleEventsQueue=false)");
    } else {
        let port = if moto_port == 5055 { String::new() } else { format!("UPLOADS_MOTO_PORT={moto_port} ") };
        println!("  tail them: {port}cargo xtask events   (--json for whole events, --once to stop when read)");
    }
    Ok(())
}

/// `cfn-lint template.yaml` and `sam validate --lint`, from PyPI. Any error
/// or warning fails; a check the template must break says why in its
/// `Metadata.cfn-lint` (none does today).
fn check_template() -> Result<()> {
    let bin = moto::ensure_tools()?;
    for (tool, args) in [("cfn-lint", &["template.yaml"][..]), ("sam", &["validate", "--lint"][..])] {
        let status = std::process::Command::new(bin.join(tool))
            .args(args)
            .current_dir(project_root())
            .env("SAM_CLI_TELEMETRY", "0")
            .env("AWS_DEFAULT_REGION", std::env::var("AWS_DEFAULT_REGION").unwrap_or_else(|_| "us-east-1".into()))
            .status()
            .with_context(|| format!("running {tool}"))?;
        if !status.success() {
            bail!("{tool} {} found problems in template.yaml ({status})", args.join(" "));
        }
        eprintln!("{tool} {}: clean", args.join(" "));
    }
    Ok(())
}

/// The TypeScript package (clients/js): `npm ci` when the lock file is
/// newer than the install, then `npm run build` (the package and the
/// uploads page's bundle), then its unit tests when `unit_tests`.
///
/// A `node_modules` that is a symbolic link (another checkout's install,
/// shared by a worktree) is used as it is: `npm ci` empties the folder the
/// link points to before it replaces the link with an install of its own,
/// and a fresh checkout's lock file is always newer than that install.
fn build_client_js(unit_tests: bool) -> Result<()> {
    let js = project_root().join("clients").join("js");
    let shared_install = std::fs::symlink_metadata(js.join("node_modules")).is_ok_and(|m| m.file_type().is_symlink());
    let installed = std::fs::metadata(js.join("node_modules/.package-lock.json")).and_then(|m| m.modified()).ok();
    let locked = std::fs::metadata(js.join("package-lock.json")).and_then(|m| m.modified()).ok();
    let stale = installed.is_none() || locked > installed;
    if stale && shared_install {
        eprintln!("clients/js/node_modules links to another checkout's install: not running npm ci over it");
    }
    let ci: &[&str] = if stale && !shared_install { &["ci"] } else { &[] };
    let test: &[&str] = if unit_tests { &["test"] } else { &[] };
    for args in [ci, &["run", "build"][..], test].into_iter().filter(|a| !a.is_empty()) {
        let status = std::process::Command::new("npm").args(args).current_dir(&js).status().context("running npm")?;
        if !status.success() {
            bail!("npm {} in clients/js failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

async fn test(extra: &[String]) -> Result<ExitCode> {
    let template = local::template::Template::load(&project_root().join("template.yaml"))?;
    // The template's lint, the TypeScript package and the installs (moto,
    // Chromium) go on beside the Rust builds: they wait mostly on the
    // network and on node, the builds on the compiler.
    let setup = std::thread::spawn(|| -> Result<()> {
        check_template()?;
        build_client_js(true)?;
        eprintln!("clients/js: built, unit tests pass");
        moto::ensure_installed()?;
        local::chromium::ensure_installed()
    });
    let built = build_functions(&template).and_then(|()| {
        // The test binaries too, before the emulator starts.
        let cargo_args = extra.iter().take_while(|a| *a != "--");
        let status =
            cargo().args(["test", "--workspace", "--no-run"]).args(cargo_args).status().context("running cargo test")?;
        if !status.success() {
            bail!("building the tests failed");
        }
        Ok(())
    });
    let set_up = setup.join().map_err(|_| anyhow!("the setup thread panicked")).and_then(|r| r);
    match (set_up, built) {
        (Ok(()), Ok(())) => {}
        (Err(e), Ok(())) | (Ok(()), Err(e)) => return Err(e),
        (Err(setup), Err(build)) => bail!("{setup:#}\n{build:#}"),
    }
    let port = moto::free_port()?;
    let call_log = project_root().join("target").join("moto").join(format!("calls-{port}.jsonl"));
    let _ = std::fs::remove_file(&call_log);
    let moto = Moto::start_with_call_log(port, Some(&call_log)).await?;
    eprintln!("moto server at {} (log: {}, calls: {})", moto.endpoint, moto.log.display(), call_log.display());
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"]).env("MOTO_ENDPOINT", &moto.endpoint);
    cmd.args(extra);
    let status = tokio::task::spawn_blocking(move || cmd.status()).await??;
    moto.stop().await;
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    // A filtered run (`-- some_test`) does not exercise every function.
    if extra.is_empty() {
        check_iam(&call_log)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Every AWS operation each function performed during the tests, through the
/// local stack, must be granted by its policy in `template.yaml`.
fn check_iam(call_log: &std::path::Path) -> Result<()> {
    let reports = xtask::iam::check(call_log)?;
    let mut problems = Vec::new();
    eprintln!("IAM: actions each function used during the tests (calls), checked against template.yaml:");
    for (function, report) in &reports {
        let mut by_action: std::collections::BTreeMap<&str, usize> = Default::default();
        for (need, count) in &report.used {
            *by_action.entry(need.action.as_str()).or_default() += count;
        }
        let used: Vec<String> = by_action.iter().map(|(action, count)| format!("{action} ({count})")).collect();
        eprintln!("  {function}: {}", used.join(", "));
        if report.used.is_empty() {
            problems.push(format!("{function} made no AWS call through the local stack; its policy is unchecked"));
        }
        let mut missing: std::collections::BTreeMap<&str, (&str, usize)> = Default::default();
        for need in &report.missing {
            missing.entry(need.action.as_str()).or_insert((need.arn.as_str(), 0)).1 += 1;
        }
        for (action, (example, resources)) in missing {
            problems.push(format!(
                "{function} called {action} on {resources} resource(s) its policy does not allow, e.g. {example}"
            ));
        }
    }
    if !problems.is_empty() {
        bail!("IAM check failed:\n  {}", problems.join("\n  "));
    }
    eprintln!("IAM check: every call was allowed by its function's policy");
    Ok(())
}

fn capacity(args: &[String]) -> Result<ExitCode> {
    let mut load = bench::capacity::Load::default();
    if let Some(seconds) = flag(args, "--seconds") {
        load.seconds = seconds.parse().context("--seconds takes a whole number")?;
    }
    let report = bench::capacity::simulate(&load);
    print!("{}", report.render(&load));
    Ok(if report.within_limits() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Builds the functions' release binaries (the release profile they deploy
/// with) and measures each against the local stack.
async fn bench(args: &[String]) -> Result<ExitCode> {
    let options = bench::binaries::Options::parse(args)?;
    moto::ensure_installed()?;
    let template = local::template::Template::load(&project_root().join("template.yaml"))?;
    let mut cmd = cargo();
    cmd.args(["build", "--release"]);
    for f in template.functions()? {
        cmd.args(["--bin", &f.binary]);
    }
    eprintln!("building the functions' release binaries");
    if !cmd.status().context("running cargo build --release")?.success() {
        bail!("building the release binaries failed");
    }
    let report = bench::binaries::run(&options).await?;
    println!("{}", report.render());
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask catalogue [service:Operation[+if-none-match]…]`: the
/// entries of each operation named (a `+header` adds a condition the call
/// carries), as Markdown.
fn catalogue(args: &[String]) -> Result<ExitCode> {
    let models = local::catalogue::Models::load()?;
    println!("Service models: botocore {}.\n", models.botocore);
    println!("| operation | error | status | source | class |\n|---|---|---|---|---|");
    for arg in args {
        let mut parts = arg.split('+');
        let operation = parts.next().unwrap_or_default();
        let conditions: Vec<String> = parts.map(str::to_lowercase).collect();
        for e in models.errors(operation, &conditions)? {
            println!("| `{arg}` | `{}` | {} | {} | {} |", e.code, e.status, e.source.name(), e.class.name());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cargo xtask s3verify [--port N] [--root DIR] [--any-key-id-secret S]`:
/// serves until Ctrl-C.
async fn s3verify(args: &[String]) -> Result<ExitCode> {
    use local::s3verify::{Signers, VerifyingS3, ACCESS_KEY, SECRET_KEY};
    let port: u16 = flag(args, "--port").map(str::parse).transpose().context("--port")?.unwrap_or(0);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let signers = flag(args, "--any-key-id-secret").map_or(Signers::Fixed, |s| Signers::AnyKeyId(s.to_owned()));
    let credentials = match &signers {
        Signers::Fixed => format!("AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY}"),
        Signers::AnyKeyId(secret) => format!("AWS_ACCESS_KEY_ID=<any> AWS_SECRET_ACCESS_KEY={secret}"),
    };
    let server = match flag(args, "--root") {
        Some(root) => {
            std::fs::create_dir_all(root)?;
            VerifyingS3::start_on(addr, std::path::Path::new(root), signers).await?
        }
        None => VerifyingS3::start_in_temp(addr, signers).await?,
    };
    println!("verifying S3: {}", server.endpoint);
    println!("folder: {}", server.root.display());
    println!("AWS_ENDPOINT_URL_S3={} {credentials} AWS_REGION={}", server.endpoint, local::REGION);
    println!("path-style only; Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(ExitCode::SUCCESS)
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

async fn key_store(args: &[String]) -> Result<shared::store::Store> {
    let table = flag(args, "--table")
        .map(str::to_owned)
        .or_else(|| std::env::var("TABLE_NAME").ok())
        .ok_or_else(|| anyhow!("name the table with --table or TABLE_NAME"))?;
    let sdk = shared::aws::tool_sdk_config().await;
    Ok(shared::store::Store::new(aws_sdk_dynamodb::Client::new(&sdk), table))
}

async fn mint_key(args: &[String]) -> Result<ExitCode> {
    let owner = flag(args, "--owner").ok_or_else(|| anyhow!(USAGE))?;
    let owner = OwnerId::parse(owner)
        .ok_or_else(|| anyhow!("owner must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit"))?;
    let key = match flag(args, "--key") {
        Some(k) => ApiKey::parse(k).ok_or_else(|| anyhow!("--key must be usk_ followed by 64 lowercase hex digits"))?,
        None => ApiKey::generate(),
    };
    let store = key_store(args).await?;
    let created = store.put_api_key(&key, &owner).await.map_err(|e| anyhow!(shared::error::chain(&e)))?;
    if !created {
        eprintln!("this key is already minted in table {}; choose another, or revoke it first", store.table());
        return Ok(ExitCode::FAILURE);
    }
    println!("x-api-key: {}", key.expose());
    eprintln!("minted for owner {owner} in table {}; this is the only time the key is shown", store.table());
    Ok(ExitCode::SUCCESS)
}

async fn revoke_key(args: &[String]) -> Result<ExitCode> {
    let key = flag(args, "--key")
        .and_then(ApiKey::parse)
        .ok_or_else(|| anyhow!("--key must be usk_ followed by 64 lowercase hex digits"))?;
    let store = key_store(args).await?;
    let existed = store.revoke_api_key(&key).await.map_err(|e| anyhow!(shared::error::chain(&e)))?;
    if existed {
        println!("revoked");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no such key");
        Ok(ExitCode::FAILURE)
    }
}

/// Ctrl-C (SIGINT) or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
