//! Source `lambda`: records arrive with each invocation of the AWS Lambda function, which hands
//! them to the graph itself (`deployments/lambda/`). Under `tributary run` it reads nothing.
//!
//! ```toml
//! [sources.kinesis]
//! type = "lambda"
//! ```

use async_trait::async_trait;
use serde::Deserialize;
use tributary_framework::config::ComponentSpec;
use tributary_framework::registry::BuildFuture;
use tributary_framework::{ComponentError, Record, Source};

/// `[sources.<id>]` with `type = "lambda"`: no options.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LambdaConfig {}

/// The placeholder source of a Lambda pipeline.
#[derive(Debug, Default)]
pub struct LambdaSource;

/// Builds the source.
pub fn build(spec: ComponentSpec) -> BuildFuture<Box<dyn Source>> {
    Box::pin(async move {
        let _: LambdaConfig = spec.parse()?;
        Ok(Box::new(LambdaSource) as Box<dyn Source>)
    })
}

#[async_trait]
impl Source for LambdaSource {
    async fn next_batch(&mut self, _max_records: usize) -> Result<Option<Vec<Record>>, ComponentError> {
        tracing::warn!("a `lambda` source receives records only inside the Lambda function; nothing to read here");
        Ok(None)
    }
}
