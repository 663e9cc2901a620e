//! The one error type of the client, and the exit code each kind maps to.
//!
//! The codes are the client's contract with scripts (also in
//! `uploads --help` and the README):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | usage or local error: bad arguments, a missing or unreadable file, an existing output |
//! | 2 | the API refused the request (a 4xx other than 404), or the upload is not in a state that allows it |
//! | 3 | not found (404): no such upload, another owner's, or deleted |
//! | 4 | integrity failure: downloaded bytes differ from the upload's checksum, S3 refused a part's bytes (`BadDigest`), confirm found another checksum |
//! | 5 | network or service unavailable after retries (connection failures, 5xx, 429) |
//! | 130 | interrupted (Ctrl-C): a `put` or `resume` can be finished with `uploads resume` |

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: usage or local error.
pub const EXIT_LOCAL: u8 = 1;
/// Exit code: the API refused the request.
pub const EXIT_REFUSED: u8 = 2;
/// Exit code: no such upload.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit code: the bytes are not the ones declared.
pub const EXIT_INTEGRITY: u8 = 4;
/// Exit code: network or service unavailable after retries.
pub const EXIT_UNAVAILABLE: u8 = 5;
/// Exit code: interrupted (as a shell reports SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments, a file that cannot be read or written: nothing the
    /// service said.
    #[error("{0}")]
    Local(String),
    /// The API answered with an error status; `message` is its `error`.
    /// 404 is "not found", every other 4xx "refused".
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    /// The upload is not in a state that allows the command (say, `get` of
    /// a pending upload): a refusal without an HTTP error.
    #[error("{0}")]
    State(String),
    /// The bytes are not the ones the upload declared.
    #[error("{0}")]
    Integrity(String),
    /// The network or the service failed, and retrying did not help.
    #[error("{0}")]
    Unavailable(String),
    /// Stopped by Ctrl-C (or the test hook) before the end; the message
    /// says how to finish.
    #[error("{0}")]
    Interrupted(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Local(_) => EXIT_LOCAL,
            Error::Api { status: 404, .. } => EXIT_NOT_FOUND,
            Error::Api { .. } | Error::State(_) => EXIT_REFUSED,
            Error::Integrity(_) => EXIT_INTEGRITY,
            Error::Unavailable(_) => EXIT_UNAVAILABLE,
            Error::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }

    /// A local I/O failure on `what` (a path, "stdout").
    pub fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Error {
        move |e| Error::Local(format!("{what}: {e}"))
    }
}

/// `e` and its causes, joined: reqwest's own message alone ("error sending
/// request for url (…)") does not say what went wrong.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Error::Local("x".into()).exit_code(), 1);
        assert_eq!(Error::Api { status: 401, message: "Unauthorized".into() }.exit_code(), 2);
        assert_eq!(Error::Api { status: 409, message: "Upload expired".into() }.exit_code(), 2);
        assert_eq!(Error::Api { status: 404, message: "Upload not found".into() }.exit_code(), 3);
        assert_eq!(Error::Integrity("x".into()).exit_code(), 4);
        assert_eq!(Error::Unavailable("x".into()).exit_code(), 5);
        assert_eq!(
            Error::Api { status: 404, message: "Upload not found".into() }.to_string(),
            "Upload not found (HTTP 404)"
        );
    }
}
