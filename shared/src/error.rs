//! The one error type of the service. Client errors carry the exact message
//! that is the API's contract; internal failures carry their cause, which is
//! logged with the request id and never returned.

use lambda_http::http::StatusCode;

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The step name of S3's `HeadObject` (`Objects::object`), whose errors
/// come without a body.
pub const HEAD_OBJECT: &str = "head object";

/// Where the SDK keeps a service answer's request id in its error metadata.
const REQUEST_ID: &str = "aws_request_id";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Unauthorized")]
    Unauthorized,
    /// A `Bearer ubt_…` this service did not mint, or altered.
    #[error("Invalid token")]
    InvalidToken,
    #[error("Token expired")]
    TokenExpired,
    /// A valid credential asking for what it does not cover: a token out
    /// of its scope or limits, or a token minting.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("Missing Upload-Id header")]
    MissingUploadId,
    #[error("Invalid upload id")]
    InvalidUploadId,
    #[error("Upload not found")]
    NotFound,
    #[error("Invalid JSON body")]
    InvalidBody,
    /// A body sent with a `Content-Type` other than JSON.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
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
    /// What S3 holds does not carry the checksum declared at create.
    #[error("Upload checksum mismatch")]
    ChecksumMismatch,
    #[error("Upload expired")]
    Expired,
    /// One owner's writes keep conflicting (its usage item is in every
    /// create, confirm and delete): the owner is throttled.
    #[error("Too many requests")]
    TooManyRequests,
    /// A key's browser tokens together over its rate limit: wait the
    /// given seconds, until the window ends.
    #[error("Rate limit exceeded")]
    RateLimited(u32),
    /// AWS throttled us or is briefly unavailable, past the retries.
    #[error("Service busy")]
    Busy,
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
            Error::Unauthorized | Error::InvalidToken | Error::TokenExpired => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::MissingUploadId | Error::InvalidUploadId | Error::InvalidBody | Error::Invalid(_) => {
                StatusCode::BAD_REQUEST
            }
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::QuotaExceeded | Error::TooManyPending => StatusCode::FORBIDDEN,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::AlreadyCompleted
            | Error::BytesMissing
            | Error::SizeMismatch
            | Error::ChecksumMismatch
            | Error::Expired => StatusCode::CONFLICT,
            Error::TooManyRequests | Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds a client should wait before trying again, for the errors
    /// that say so (`Retry-After`).
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::TooManyRequests | Error::Busy => Some(1),
            Error::RateLimited(seconds) => Some(*seconds),
            _ => None,
        }
    }

    /// A closure for `map_err` on an AWS call: throttling and brief
    /// unavailability that outlasted the SDK's own retries become `Busy`
    /// (503 with `Retry-After`), anything else an internal failure of `what`.
    ///
    /// A 5xx answer without an error code is unavailability too: S3
    /// answers a `HEAD` with no body, so a throttled `HeadObject` (503
    /// `SlowDown`) carries nothing but its status. So is a 400 without a
    /// code: the only 400s S3 gives a `HEAD` the SDK built and signed are
    /// `ExpiredToken` and `RequestTimeout` (a 403 without a code is a
    /// refusal, `AccessDenied`, and stays internal).
    pub fn aws<E>(what: &'static str) -> impl FnOnce(E) -> Error
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + AnswerStatus + Into<BoxError>,
    {
        move |e| match e.code() {
            // An item this call touches is in another transaction (or, in a
            // multi-Region strongly consistent table, written at once in
            // another Region): the owner's writes collide.
            Some("TransactionConflictException" | "ReplicatedWriteConflictException") => Error::TooManyRequests,
            code if is_throttling(code) => Error::Busy,
            None if e.answer_status().is_some_and(is_unavailable_status) => Error::Busy,
            // Only a HEAD's answer has no body to carry a code.
            None if what == HEAD_OBJECT && e.answer_status() == Some(400) => Error::Busy,
            // A service's refusal: its code and request id say what
            // happened. Its message stays out of the logs: AWS writes the
            // caller's role ARN, the table or the resource's ARN into some
            // (`AccessDeniedException`, `ResourceNotFoundException`).
            Some(code) => {
                let source = match e.meta().extra(REQUEST_ID) {
                    Some(id) => format!("{code} (request id {id})"),
                    None => code.to_owned(),
                };
                Error::Internal { what, source: source.into() }
            }
            // No answer (connection, timeout): the transport's own chain.
            None => Error::Internal { what, source: e.into() },
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

/// The HTTP status of the answer an AWS failure came with, if one came.
pub trait AnswerStatus {
    fn answer_status(&self) -> Option<u16>;
}

impl<E> AnswerStatus for aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse> {
    fn answer_status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}

/// Bare metadata (tests build failures from it) carries no answer.
impl AnswerStatus for aws_smithy_types::error::ErrorMetadata {
    fn answer_status(&self) -> Option<u16> {
        None
    }
}

/// HTTP statuses AWS answers when it is briefly unable to serve, for
/// answers that carry no error code.
pub fn is_unavailable_status(status: u16) -> bool {
    matches!(status, 500 | 502 | 503 | 504)
}

/// AWS error codes that mean "slow down" or "briefly unavailable": the
/// same call succeeds a little later, so the client is told to retry (503
/// with `Retry-After`), never that the request failed.
///
/// Besides throttling and internal errors (DynamoDB's `InternalServerError`,
/// S3's `InternalError`, SQS's and the common `InternalFailure`, 503
/// `ServiceUnavailable`): a request S3 or the common errors call timed out
/// (`RequestTimeout`, 400; `RequestTimeoutException`, 408), and expired
/// credentials (`ExpiredToken`, S3's 400; `ExpiredTokenException`): a
/// function's role credentials are renewed by Lambda, so the retry runs
/// with fresh ones. SQS's `KmsThrottled` is its KMS key throttled.
pub fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "Throttling"
                | "ThrottledException"
                | "TooManyRequestsException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "TransactionInProgressException"
                | "InternalServerError"
                | "InternalError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "SlowDown"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "KmsThrottled"
                | "RequestTimeout"
                | "RequestTimeoutException"
                | "ExpiredToken"
                | "ExpiredTokenException"
        )
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_refusal_logs_its_code_and_request_id_not_its_message() {
        let refusal = aws_smithy_types::error::ErrorMetadata::builder()
            .code("AccessDeniedException")
            .message("User: arn:aws:sts::123456789012:assumed-role/r/f is not authorized to perform: dynamodb:GetItem on resource: arn:aws:dynamodb:eu-west-1:123456789012:table/uploads")
            .custom(REQUEST_ID, "RID1")
            .build();
        let err = Error::aws("read session")(refusal);
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(chain(&err), "read session: AccessDeniedException (request id RID1)");
    }

    #[test]
    fn throttling_is_busy_not_internal() {
        for code in [
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "SlowDown",
            "InternalError",
            "InternalFailure",
            "ServiceUnavailable",
            "RequestTimeout",
            "ExpiredToken",
            "ExpiredTokenException",
            "KmsThrottled",
        ] {
            assert!(is_throttling(Some(code)), "{code}");
        }
        for code in [
            None,
            Some("ConditionalCheckFailedException"),
            Some("ValidationException"),
            Some("AccessDenied"),
            Some("AccessDeniedException"),
            Some("ResourceNotFoundException"),
            Some("KmsDisabled"),
            Some("NoSuchKey"),
            Some("TransactionConflictException"),
        ] {
            assert!(!is_throttling(code), "{code:?}");
        }
        let conflict =
            aws_smithy_types::error::ErrorMetadata::builder().code("ReplicatedWriteConflictException").build();
        assert!(matches!(Error::aws("update usage")(conflict), Error::TooManyRequests));
        assert_eq!(Error::Busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Error::TooManyRequests.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(Error::Busy.retry_after(), Some(1));
        assert_eq!(Error::Busy.public_message("Failed to delete upload record"), "Service busy");
        assert_eq!(Error::NotFound.retry_after(), None);
    }

    /// An S3 `HEAD` answered 503 with no body (as S3 throttles one), or
    /// 400 (an expired token, a timed-out request), is `Busy`; a 403 or 404
    /// without a code, or a failure with no answer at all, stays an
    /// internal failure.
    #[test]
    fn a_5xx_without_an_error_code_is_busy() {
        use aws_sdk_dynamodb::config::http::HttpResponse;
        use aws_sdk_dynamodb::error::SdkError;
        use aws_sdk_s3::operation::head_object::HeadObjectError;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;
        let answered = |status: u16| {
            let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
            SdkError::service_error(HeadObjectError::generic(ErrorMetadata::builder().build()), raw)
        };
        assert!(matches!(Error::aws("head object")(answered(503)), Error::Busy));
        assert!(matches!(Error::aws("head object")(answered(500)), Error::Busy));
        assert!(matches!(Error::aws(HEAD_OBJECT)(answered(400)), Error::Busy), "ExpiredToken, RequestTimeout");
        // Elsewhere a 400 has a body with its code: one without is no
        // passing condition (an SSE-C object's HEAD, say), not to retry.
        assert!(matches!(Error::aws("list parts")(answered(400)), Error::Internal { .. }));
        assert!(matches!(Error::aws("head object")(answered(403)), Error::Internal { .. }));
        assert!(matches!(Error::aws("head object")(answered(404)), Error::Internal { .. }));
        let lost: SdkError<HeadObjectError, HttpResponse> = SdkError::timeout_error("no answer");
        assert!(matches!(Error::aws("head object")(lost), Error::Internal { .. }));
    }
}
