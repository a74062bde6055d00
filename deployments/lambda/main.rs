//! `tributary-lambda`: the AWS Lambda function (`bootstrap` once packaged by
//! `cargo lambda build`). See `deployments/lambda/README.md`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;
use tributary::cli::{LogFormat, init_logging};
use tributary::lambda::Function;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logging(0, LogFormat::Json);
    let function = Function::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "cannot start");
        e
    })?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move { function.handle(event.payload).await }))
        .await
}
