//! One way to report a failed AWS call, for every AWS client (Kinesis, S3): the operation,
//! the resource, and what went wrong in a few words — the service's error code and message,
//! or which endpoint could not be reached — never the SDK's debug structure (headers, request
//! ids, body bytes).

use std::error::Error as StdError;
use std::fmt::Debug;

// Both SDK crates re-export the same smithy types; either path names them.
#[cfg(feature = "kinesis")]
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
#[cfg(all(feature = "s3", not(feature = "kinesis")))]
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Longest service message or cause quoted, in characters.
const MAX_QUOTE: usize = 200;

/// The [`crate::connectors::SourceFailure`] kind of a service error code: refused
/// credentials or permissions, a missing stream or bucket, or anything else (an unreachable
/// endpoint has no code).
pub fn failure_kind(code: Option<&str>) -> &'static str {
    use crate::connectors::{FAILURE_ACCESS_DENIED, FAILURE_NOT_FOUND, FAILURE_UNAVAILABLE};
    match code.unwrap_or("") {
        "ResourceNotFoundException" | "NoSuchBucket" => FAILURE_NOT_FOUND,
        c if c.contains("AccessDenied")
            || c.starts_with("KMS") && !c.contains("Throttling")
            || matches!(
                c,
                "UnrecognizedClientException"
                    | "InvalidAccessKeyId"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "AllAccessDisabled"
                    | "AccountProblem"
            ) =>
        {
            FAILURE_ACCESS_DENIED
        }
        _ => FAILURE_UNAVAILABLE,
    }
}

/// A failed call: `"<operation> <resource>: <what went wrong>"` (see [`what_went_wrong`]).
/// `endpoint` is the endpoint override, if any (named when it cannot be reached).
pub fn describe<E, R>(
    e: &SdkError<E, R>,
    operation: &str,
    resource: &str,
    endpoint: Option<&str>,
) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: Debug + 'static,
{
    format!("{operation} {resource}: {}", what_went_wrong(e, endpoint))
}

/// What went wrong, in a few words:
/// - the service answered with an error: `<Code>: <message>`;
/// - no answer in time: `timed out`;
/// - no connection: `cannot reach <endpoint>: <cause>` (`the AWS endpoint` without an override);
/// - an answer that could not be read: `unreadable response: <cause>`;
/// - a request that could not be built: `invalid request: <cause>`.
pub fn what_went_wrong<E, R>(e: &SdkError<E, R>, endpoint: Option<&str>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: Debug + 'static,
{
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(code), Some(msg)) if !msg.is_empty() => format!("{code}: {}", quote(msg)),
                (Some(code), _) => code.to_string(),
                (None, Some(msg)) => quote(msg),
                (None, None) => "the service answered with an error without a code".to_string(),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(d) => {
            let at = endpoint.unwrap_or("the AWS endpoint");
            let cause = if d.is_timeout() {
                "timed out".to_string()
            } else {
                causes(e)
            };
            format!("cannot reach {at}: {cause}")
        }
        SdkError::ResponseError(_) => format!("unreadable response: {}", causes(e)),
        SdkError::ConstructionFailure(_) => format!("invalid request: {}", causes(e)),
        // A future variant: its Display, which is short.
        other => other.to_string(),
    }
}

/// Any error with its sources, on one short line (for the errors around a call: reading a
/// response body).
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let inner = causes(e);
    let outer = e.to_string();
    if inner == outer {
        quote(&outer)
    } else {
        quote(&format!("{outer}: {inner}"))
    }
}

/// The error's sources, innermost last, joined with `: ` (the outermost layers are generic:
/// "dispatch failure", "io error").
fn causes(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src = e.source();
    while let Some(inner) = src {
        let text = inner.to_string();
        if !matches!(
            text.as_str(),
            "io error" | "other" | "timeout" | "user error"
        ) && !parts.iter().any(|p| p.contains(&text))
        {
            parts.push(text);
        }
        src = inner.source();
    }
    if parts.is_empty() {
        return e.to_string();
    }
    quote(&parts.join(": "))
}

/// `text` on one line, cut to [`MAX_QUOTE`] characters.
fn quote(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match one_line.char_indices().nth(MAX_QUOTE) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(all(test, feature = "kinesis"))]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Svc(aws_sdk_kinesis::error::ErrorMetadata);
    impl std::fmt::Display for Svc {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl StdError for Svc {}
    impl ProvideErrorMetadata for Svc {
        fn meta(&self) -> &aws_sdk_kinesis::error::ErrorMetadata {
            &self.0
        }
    }

    #[test]
    fn service_errors_are_code_and_message() {
        let meta = aws_sdk_kinesis::error::ErrorMetadata::builder()
            .code("ResourceNotFoundException")
            .message(format!("Stream out not found.\n{}", "x".repeat(500)))
            .custom("aws_request_id", "abc")
            .build();
        let e: SdkError<Svc, ()> = SdkError::service_error(Svc(meta), ());
        let text = describe(&e, "PutRecords", "stream out", None);
        assert!(
            text.starts_with(
                "PutRecords stream out: ResourceNotFoundException: Stream out not found. x"
            ),
            "{text}"
        );
        assert!(text.chars().count() < 300, "{text}");
        assert!(!text.contains("abc") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn dispatch_failures_name_the_endpoint() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let e: SdkError<Svc, ()> =
            SdkError::dispatch_failure(aws_sdk_kinesis::error::ConnectorError::io(Box::new(io)));
        let text = what_went_wrong(&e, Some("http://127.0.0.1:1"));
        assert_eq!(text, "cannot reach http://127.0.0.1:1: Connection refused");
    }
}
