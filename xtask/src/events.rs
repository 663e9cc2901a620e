//! `cargo xtask events`: the upload events a rule of the stack's bus
//! delivers to a queue, one line each as they arrive, read with
//! `local::events::Tail` (which leaves them in the queue unless `--delete`).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use local::events::{event_queues, Delivery, Tail};
use local::stack::Stack;

pub const USAGE: &str = "usage: cargo xtask events [--once] [--json] [--delete] [--queue-url URL]

Prints the upload events the stack's example rule delivers to its queue,
one line each: time, type, event id, upload id. --json prints each whole
event (EventBridge's JSON) on a line instead. --once stops when the queue
has nothing new. --delete removes what it printed from the queue.

Without --queue-url: the dev stack's queue (`cargo xtask dev`, moto on
127.0.0.1:$UPLOADS_MOTO_PORT, default 5055). With it: that queue, with
the AWS credentials and region of the environment (a deployed stack's
UploadEventsQueueUrl output).";

#[derive(Debug, Default)]
struct Options {
    once: bool,
    json: bool,
    delete: bool,
    queue_url: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--once" => o.once = true,
                "--json" => o.json = true,
                "--delete" => o.delete = true,
                "--queue-url" => o.queue_url = Some(args.next().ok_or_else(|| anyhow!(USAGE))?.clone()),
                "-h" | "--help" => bail!(USAGE),
                other => bail!("unknown argument {other}\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

/// `cargo xtask events …`.
pub async fn command(args: &[String]) -> Result<std::process::ExitCode> {
    let options = Options::parse(args)?;
    let (client, queue_url) = match &options.queue_url {
        Some(url) => {
            let sdk = shared::aws::tool_sdk_config().await;
            (aws_sdk_sqs::Client::new(&sdk), url.clone())
        }
        None => dev_queue().await?,
    };
    eprintln!("reading upload events from {queue_url}{}", if options.once { "" } else { " (Ctrl-C stops)" });
    let mut tail = Tail::new(client, queue_url);
    let print = |d: &Delivery| {
        if options.json {
            println!("{}", d.event);
        } else {
            println!("{}", d.line());
        }
    };
    if options.once {
        tail.drain(options.delete).await?.iter().for_each(print);
        tail.release().await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let follow = async {
        loop {
            let new = tail.poll(options.delete).await?;
            new.iter().for_each(print);
            if new.is_empty() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let outcome: Result<()> = tokio::select! {
        r = follow => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    tail.release().await?;
    outcome.map(|()| std::process::ExitCode::SUCCESS)
}

/// The dev stack's events queue: its name as `cargo xtask dev` makes it,
/// looked up in the emulator it runs.
async fn dev_queue() -> Result<(aws_sdk_sqs::Client, String)> {
    let port = std::env::var("UPLOADS_MOTO_PORT").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "5055".into());
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut stack = Stack::unprovisioned(local::stack::DEV_STACK)?;
    stack.parameters =
        local::stack::parse_overrides(&std::env::var("UPLOADS_PARAMETER_OVERRIDES").unwrap_or_default())?;
    let queue = event_queues(&stack).into_iter().find(|id| stack.exists(id).unwrap_or(false)).ok_or_else(|| {
        anyhow!("the template delivers no events to a queue with these parameters (ExampleEventsQueue)")
    })?;
    let name = stack.attribute_of(&queue, "QueueName")?;
    let client = aws_sdk_sqs::Client::new(&local::stack::sdk_config(&endpoint));
    let url = client
        .get_queue_url()
        .queue_name(&name)
        .send()
        .await
        .with_context(|| format!("finding queue {name} at {endpoint}: is `cargo xtask dev` running?"))?
        .queue_url
        .ok_or_else(|| anyhow!("no URL for queue {name}"))?;
    Ok((client, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert!(Options::parse(&["--bogus".into()]).is_err());
        let o = Options::parse(&["--once".into(), "--queue-url".into(), "https://q".into()]).unwrap();
        assert!(o.once && !o.json && !o.delete);
        assert_eq!(o.queue_url.as_deref(), Some("https://q"));
    }
}
