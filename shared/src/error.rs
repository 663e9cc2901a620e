//! The one error type of the service. Client errors carry the exact message
//! that is the API's contract; internal failures carry their cause, which is
//! logged with the request id and never returned.

use lambda_http::http::StatusCode;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Unauthorized")]
    Unauthorized,
    #[error("Missing Upload-Id header")]
    MissingUploadId,
    #[error("Invalid upload id")]
    InvalidUploadId,
    #[error("Upload not found")]
    NotFound,
    #[error("Invalid JSON body")]
    InvalidBody,
    /// A request value out of its domain; the message names it
    /// (`Invalid filename`, `Invalid limit`, …).
    #[error("{0}")]
    Invalid(&'static str),
    #[error("Quota exceeded")]
    QuotaExceeded,
    #[error("Too many pending uploads")]
    TooManyPending,
    #[error("Upload already completed")]
    AlreadyCompleted,
    #[error("Upload bytes missing")]
    BytesMissing,
    #[error("Upload size mismatch")]
    SizeMismatch,
    #[error("Upload expired")]
    Expired,
    /// A dependency (DynamoDB, S3, SQS) failed or broke an invariant.
    /// `what` names the step for the log; the client sees only the
    /// operation's failure message.
    #[error("{what}")]
    Internal {
        what: &'static str,
        #[source]
        source: BoxError,
    },
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::MissingUploadId | Error::InvalidUploadId | Error::InvalidBody | Error::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::QuotaExceeded | Error::TooManyPending => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::AlreadyCompleted | Error::BytesMissing | Error::SizeMismatch | Error::Expired => {
                StatusCode::CONFLICT
            }
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A closure for `map_err` that files any error under step `what`.
    pub fn internal<E>(what: &'static str) -> impl FnOnce(E) -> Error
    where
        E: Into<BoxError>,
    {
        move |e| Error::Internal { what, source: e.into() }
    }

    /// An internal failure with no underlying error value.
    pub fn invariant(what: &'static str, detail: impl Into<String>) -> Error {
        Error::Internal { what, source: detail.into().into() }
    }

    /// The message a client may see: the contract's text for client errors,
    /// the operation's failure message for internal ones.
    pub fn public_message<'a>(&'a self, failure_message: &'a str) -> String {
        match self {
            Error::Internal { .. } => failure_message.to_owned(),
            other => other.to_string(),
        }
    }
}

/// Renders an error with its whole `source()` chain, for logs only.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
