//! `tributary-lambda`: the AWS Lambda function (`bootstrap` once packaged by
//! `cargo xtask package-lambda`). See `deployments/lambda/README.md`.

use std::time::Duration;

use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::Value;
use tributary::cli::{LogFormat, init_logging};
use tributary::lambda::Function;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(0, LogFormat::Json);
    match Function::from_env().await {
        Ok(function) => {
            let function = &function;
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                function.handle(event.payload).await
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
