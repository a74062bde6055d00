//! Shared AWS SDK plumbing for tributary's plugins, so that every AWS client is configured the
//! same way: the SDK's standard credential chain and endpoint variables (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_<SERVICE>`), path-style S3 addressing when a custom endpoint is set (local
//! stand-ins such as moto answer on one host name), one-line error descriptions, and one
//! classification of errors ([`classify`]) that every plugin uses.

use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The standard AWS configuration (environment, profile, instance or task role).
pub async fn config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// A Kinesis client.
#[cfg(feature = "kinesis")]
pub async fn kinesis_client() -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&config().await)
}

/// Every shard of `stream` (open and closed), following ListShards' pages.
///
/// # Errors
/// The first failed ListShards call.
#[cfg(feature = "kinesis")]
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<
    Vec<aws_sdk_kinesis::types::Shard>,
    SdkError<aws_sdk_kinesis::operation::list_shards::ListShardsError, aws_smithy_runtime_api::http::Response>,
> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // A request with a token must not name the stream.
        let request = match token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await?;
        token = page.next_token;
        shards.extend(page.shards.unwrap_or_default());
        if token.is_none() {
            return Ok(shards);
        }
    }
}

/// A shard's parents: the shard it was split from, or the two it was merged from.
#[cfg(feature = "kinesis")]
pub fn shard_parents(shard: &aws_sdk_kinesis::types::Shard) -> Vec<String> {
    shard.parent_shard_id().into_iter().chain(shard.adjacent_parent_shard_id()).map(str::to_owned).collect()
}

/// Whether a shard is closed (resharded: it has an ending sequence number).
#[cfg(feature = "kinesis")]
pub fn shard_is_closed(shard: &aws_sdk_kinesis::types::Shard) -> bool {
    shard.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_some()
}

/// Where a shard iterator points.
#[cfg(feature = "kinesis")]
#[derive(Clone, Copy, Debug)]
pub enum IteratorAt<'a> {
    /// The oldest record in the shard.
    TrimHorizon,
    /// Records put from now on.
    Latest,
    /// Just after this sequence number.
    After(&'a str),
    /// The first record put at or after this time.
    Timestamp(aws_sdk_kinesis::primitives::DateTime),
}

#[cfg(feature = "kinesis")]
impl IteratorAt<'_> {
    /// Where to renew an iterator that was asked for here at `asked_at` and expired before
    /// anything was read from it: the same place, except that LATEST becomes `asked_at` (a
    /// renewal at LATEST would skip what was put meanwhile). Once records were read, renew just
    /// after the last one instead.
    #[must_use]
    pub fn reopened(self, asked_at: std::time::SystemTime) -> Self {
        match self {
            IteratorAt::Latest => IteratorAt::Timestamp(asked_at.into()),
            other => other,
        }
    }
}

/// One GetShardIterator call: an iterator on `shard` of `stream` at `at` (`None` for a closed
/// shard read to its end).
///
/// # Errors
/// The failed call.
#[cfg(feature = "kinesis")]
pub async fn shard_iterator(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    at: IteratorAt<'_>,
) -> Result<
    Option<String>,
    SdkError<
        aws_sdk_kinesis::operation::get_shard_iterator::GetShardIteratorError,
        aws_smithy_runtime_api::http::Response,
    >,
> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    let request = client.get_shard_iterator().stream_name(stream).shard_id(shard);
    let request = match at {
        IteratorAt::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        IteratorAt::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
        IteratorAt::After(sequence) => {
            request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(sequence)
        }
        IteratorAt::Timestamp(time) => request.shard_iterator_type(ShardIteratorType::AtTimestamp).timestamp(time),
    };
    Ok(request.send().await?.shard_iterator)
}

/// A DynamoDB client.
#[cfg(feature = "dynamodb")]
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&config().await)
}

/// An S3 client; path-style addressing when `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` is set.
#[cfg(feature = "s3")]
pub async fn s3_client() -> aws_sdk_s3::Client {
    s3_client_at(None).await
}

/// As [`s3_client`], with `endpoint` (when given) in place of the SDK's endpoint: for
/// variables other tools define, such as MLflow's `MLFLOW_S3_ENDPOINT_URL`.
#[cfg(feature = "s3")]
pub async fn s3_client_at(endpoint: Option<String>) -> aws_sdk_s3::Client {
    let shared = config().await;
    let custom_endpoint =
        endpoint.is_some() || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"].iter().any(|v| std::env::var_os(v).is_some());
    let mut builder = aws_sdk_s3::config::Builder::from(&shared).force_path_style(custom_endpoint);
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The service's error code, when the service answered.
pub fn error_code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<&str> {
    error.as_service_error().and_then(ProvideErrorMetadata::code)
}

/// One line for an SDK error: the service's code and message when it answered, else the whole
/// chain (connection refused, timeout, missing credentials).
pub fn describe<E: ProvideErrorMetadata + std::error::Error + 'static, R: Debug>(error: &SdkError<E, R>) -> String {
    match error.as_service_error() {
        Some(service) => {
            format!("{}: {}", service.code().unwrap_or("service error"), service.message().unwrap_or("(no message)"))
        }
        None => DisplayErrorContext(error).to_string(),
    }
}

/// What to do about a failed AWS call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with backoff: throttling, a 5xx, a timeout, a connection that failed or broke, an
    /// expired session token (the credential chain refreshes it).
    Retry,
    /// Stop and say why: access denied, not found, invalid request or credentials, a request
    /// that could not be built. No retry changes the answer.
    Fatal,
}

/// Service error codes that mean "slow down" or "try again" whatever their HTTP status (most
/// throttling answers are 400).
const TRANSIENT: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestTimeout",
    "RequestTimeoutException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "KMSThrottlingException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
];

/// Classifies a failed SDK call once, from the SDK's typed error: the kind of failure (timeout,
/// dispatch, response, construction), then for a service's answer its HTTP status and error
/// code. Callers handle the codes that mean something to them (an expired iterator, a failed
/// condition) before asking.
pub fn classify<E: ProvideErrorMetadata>(error: &SdkError<E, aws_smithy_runtime_api::http::Response>) -> ErrorClass {
    match error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorClass::Retry,
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            let throttled = context.err().code().is_some_and(|code| TRANSIENT.contains(&code));
            if throttled || status == 429 || status >= 500 { ErrorClass::Retry } else { ErrorClass::Fatal }
        }
        // A request that cannot be built (missing region, bad input) fails the same way again.
        _ => ErrorClass::Fatal,
    }
}

/// [`classify`] as a component error, with `context` (the call and its target) and the
/// service's message.
pub fn component_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    context: &str,
    error: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> tributary_framework::ComponentError {
    let message = format!("{context}: {}", describe(error));
    match classify(error) {
        ErrorClass::Retry => tributary_framework::ComponentError::Retryable(message),
        ErrorClass::Fatal => tributary_framework::ComponentError::Fatal(message),
    }
}

#[cfg(test)]
mod tests {
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::{ErrorClass, classify};

    fn answer(status: u16, code: &str) -> SdkError<ErrorMetadata, Response> {
        let response = Response::new(StatusCode::try_from(status).unwrap_or_else(|e| panic!("{e}")), SdkBody::empty());
        SdkError::service_error(ErrorMetadata::builder().code(code).message("m").build(), response)
    }

    /// Regression (issue 19): AWS errors were recognised by matching a few codes in each
    /// plugin, so bad credentials (`UnrecognizedClientException`, 400) or a disabled KMS key
    /// were retried forever by the Kinesis sink, while other places let a throttled call stop
    /// the pipeline. Now one classification from the typed error decides.
    #[test]
    fn aws_errors_are_classified_once_from_the_sdks_typed_errors() {
        for (status, code) in [
            (400, "UnrecognizedClientException"),
            (400, "KMSDisabledException"),
            (400, "AccessDeniedException"),
            (400, "ResourceNotFoundException"),
            (400, "ValidationException"),
            (403, "AccessDenied"),
            (404, "NoSuchBucket"),
        ] {
            assert_eq!(classify(&answer(status, code)), ErrorClass::Fatal, "{status} {code}");
        }
        for (status, code) in [
            (400, "ProvisionedThroughputExceededException"),
            (400, "ThrottlingException"),
            (400, "LimitExceededException"),
            (400, "ExpiredTokenException"),
            (503, "SlowDown"),
            (500, "InternalFailure"),
            (429, "Whatever"),
            (502, ""),
        ] {
            assert_eq!(classify(&answer(status, code)), ErrorClass::Retry, "{status} {code}");
        }
        let refused: SdkError<ErrorMetadata, Response> =
            SdkError::dispatch_failure(ConnectorError::io("connection refused".into()));
        assert_eq!(classify(&refused), ErrorClass::Retry);
        let timeout: SdkError<ErrorMetadata, Response> = SdkError::timeout_error("took too long");
        assert_eq!(classify(&timeout), ErrorClass::Retry);
        let unbuildable: SdkError<ErrorMetadata, Response> = SdkError::construction_failure("no region");
        assert_eq!(classify(&unbuildable), ErrorClass::Fatal);
    }
}
