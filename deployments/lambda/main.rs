//! `tributary-lambda`: the AWS Lambda function (`bootstrap` once packaged by
//! `cargo xtask package-lambda`). See `deployments/lambda/README.md`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tributary::cli::{LogFormat, init_logging};
use tributary::lambda::{Handler, Invocation};

/// The process allocator (feature `mimalloc`), as in `tributary`'s `src/main.rs`, which says
/// why.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Time kept to send the answer after the last retry: the invocation's deadline (milliseconds
/// since the epoch) less this is when no more retries start.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// The instant by which the batch must be done, from the invocation's deadline.
fn answer_by(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(ANSWER_MARGIN)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(0, LogFormat::Json);
    match Handler::from_env().await {
        // A stream pipeline reads a Kinesis event's records straight from the request, entry by
        // entry (`Invocation`), never holding the whole event as JSON values.
        Ok(Handler::Stream(function)) => {
            let function = &function;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Invocation>| async move {
                let deadline = answer_by(event.context.deadline);
                function.handle_invocation_until(event.payload, deadline).await
            }))
            .await
        }
        #[allow(unreachable_patterns, reason = "the only other handler, a batch job, needs feature parquet-s3")]
        Ok(handler) => {
            let handler = &handler;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                let deadline = answer_by(event.context.deadline);
                handler.handle_until(event.payload, deadline).await
            }))
            .await
        }
        Err(error) => {
            // Answer the pending invocation with the reason (instead of leaving it unanswered),
            // then exit so that the next invocation starts a fresh execution environment.
            tracing::error!(%error, "cannot start");
            let message = error.to_string();
            lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| {
                let message = message.clone();
                async move {
                    tokio::spawn(async {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        std::process::exit(1);
                    });
                    Err::<Value, _>(Diagnostic { error_type: "InitFailed".into(), error_message: message })
                }
            }))
            .await
        }
    }
}
