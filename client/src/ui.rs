//! What the client tells a person, on stderr: notes, and progress bars
//! with rate and time left. Bars only on a terminal, never with `--quiet`
//! or `--json`; stdout carries only results.

use std::io::{IsTerminal, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Error;

#[derive(Clone)]
pub struct Ui {
    quiet: bool,
    bars: bool,
    multi: MultiProgress,
}

impl Ui {
    /// `quiet` hides notes and bars; `json` hides bars (stdout is for the
    /// document, stderr stays for errors and notes).
    pub fn new(quiet: bool, json: bool) -> Self {
        let bars = !quiet && !json && std::io::stderr().is_terminal();
        let target = if bars { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Self { quiet, bars, multi: MultiProgress::with_draw_target(target) }
    }

    /// Neither notes nor bars: for library callers and tests.
    pub fn silent() -> Self {
        Self::new(true, true)
    }

    /// A line on stderr, unless `--quiet`.
    pub fn note(&self, msg: impl AsRef<str>) {
        if !self.quiet {
            self.always(msg);
        }
    }

    /// A line on stderr, even with `--quiet` (what a person needs to
    /// recover: the id of an upload being sent).
    pub fn always(&self, msg: impl AsRef<str>) {
        self.multi.suspend(|| {
            let _ = writeln!(std::io::stderr().lock(), "{}", msg.as_ref());
        });
    }

    /// A bar over `total` bytes, labelled `label` (hidden unless bars are
    /// shown).
    pub fn bar(&self, total: u64, label: &str) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{msg:>9} [{bar:32}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}  {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(total).with_style(style).with_message(label.to_owned()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }
}

/// Writes `text` to stdout. A closed pipe (`uploads ls | head -1`) is a
/// quiet local error rather than a panic.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Local(format!("cannot write to stdout: {e}"))),
    }
}

/// Prints `value` on stdout as one JSON document.
pub fn print_json(value: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Local(format!("cannot encode JSON: {e}")))?;
    print_stdout(&format!("{text}\n"))
}
