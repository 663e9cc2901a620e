//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::checksum::Algorithm;
use crate::plan::parse_size;

const AFTER_HELP: &str = "\
Environment:
  UPLOADS_URL      the API's base URL, as --url (e.g. http://127.0.0.1:3000)
  UPLOADS_API_KEY  the API key, as --api-key

Exit codes:
  0    done
  1    usage or local error: bad arguments, a missing or unreadable file, an existing output file
  2    the API refused the request (a 4xx other than 404), printed as `error: <message> (HTTP <status>)`
  3    not found (404): no such upload, another owner's, or deleted
  4    integrity failure: the bytes differ from the declared checksum (download, S3 BadDigest, confirm)
  5    network or service unavailable after retries (connection failures, 5xx, 429)
  130  interrupted (Ctrl-C); an interrupted put is finished with `uploads resume ID FILE`";

/// Command-line client of the upload sessions API.
#[derive(Debug, Parser)]
#[command(name = "uploads", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// The API's base URL.
    #[arg(long, env = "UPLOADS_URL", global = true, value_name = "URL")]
    pub url: Option<String>,

    /// The API key (sent as x-api-key).
    #[arg(long, env = "UPLOADS_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    pub api_key: Option<String>,

    /// Print one JSON document on stdout: the API's view of the upload
    /// (for ls, an array of them). Hides progress bars.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress bars or notes on stderr (errors, and the id of an
    /// upload being sent, are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Retries of a failed request or part (exponential backoff with
    /// jitter) before giving up.
    #[arg(long, global = true, default_value_t = 5, value_name = "N")]
    pub retries: u32,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload FILE: checksums, a session, the parts in parallel, confirm.
    /// Prints the upload id (on stderr as soon as the session exists, on
    /// stdout at the end).
    Put(PutArgs),
    /// Finish an interrupted upload: send the parts S3 lacks, then confirm.
    Resume(ResumeArgs),
    /// Download an upload to OUT (default: its filename in the current
    /// directory; `-` for stdout), checking its checksum.
    Get(GetArgs),
    /// List your uploads, newest first.
    Ls(LsArgs),
    /// Delete an upload (its bytes are removed asynchronously).
    Rm(IdArg),
    /// Show one upload.
    Show(IdArg),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChecksumArg {
    Sha256,
    Crc32c,
    None,
}

impl ChecksumArg {
    pub fn algorithm(self) -> Option<Algorithm> {
        match self {
            ChecksumArg::Sha256 => Some(Algorithm::Sha256),
            ChecksumArg::Crc32c => Some(Algorithm::Crc32c),
            ChecksumArg::None => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// The file to upload.
    pub file: PathBuf,

    /// Checksum declared for every part and checked by S3 as it stores
    /// them (and by `get` on the way back).
    #[arg(long, value_enum, default_value_t = ChecksumArg::Sha256)]
    pub checksum: ChecksumArg,

    /// Part size (bytes, or with KiB/MiB/GiB), 5 MiB to 5 GiB. Default: at
    /// least 8 MiB, larger when needed to stay within 300 parts (with
    /// checksums: the most a create declares) or 10,000 (none). A file up
    /// to one part is one PUT.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub part_size: Option<u64>,

    /// Parts sent at once (connections).
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// The upload's filename (default: FILE's name).
    #[arg(long)]
    pub name: Option<String>,

    /// The upload's content type (default: guessed from the file's extension).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The upload's id.
    pub id: String,

    /// The same file `put` was sending.
    pub file: PathBuf,

    /// Parts sent at once (connections).
    #[arg(short, long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// The upload's id.
    pub id: String,

    /// Where to write the bytes: a file, a directory, or `-` for stdout.
    pub out: Option<String>,

    /// Replace OUT if it exists.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show at most this many uploads (default: all, page after page).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Debug, Args)]
pub struct IdArg {
    /// The upload's id.
    pub id: String,
}
