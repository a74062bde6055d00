//! The `tributary` package: the plugin registry that every binary shares, and the pieces of the
//! command-line tool (logging, status line, signal handling).
//!
//! Adding a plugin: write its module (a typed config and a `build` function) in the sources,
//! processors or sinks crate, then add one line to [`registry`].

#[cfg(feature = "parquet")]
pub mod batch;
pub mod cli;
pub mod http_api;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics_endpoint;
#[cfg(feature = "serve")]
pub mod serve;
pub mod status;
#[cfg(any(feature = "kinesis", feature = "kafka"))]
pub mod tools;

use tributary_framework::registry::Registry;
use tributary_processors::moderation::DetectorConfig;
use tributary_sinks::console::ConsoleConfig;

/// Every plugin, by its `type` name. This is the one list to edit when adding a plugin.
pub fn registry() -> Registry {
    let registry = Registry::new()
        .source::<tributary_sources::file::FileConfig>("file", tributary_sources::file::build)
        .source::<tributary_sources::stdin::StdinConfig>("stdin", tributary_sources::stdin::build)
        .source::<tributary_sources::generator::GeneratorConfig>("generator", tributary_sources::generator::build)
        .source::<tributary_sources::lambda::LambdaConfig>("lambda", tributary_sources::lambda::build)
        .source::<tributary_sources::http::HttpConfig>("http", tributary_sources::http::build)
        .processor::<DetectorConfig>("copyright", tributary_processors::moderation::build_copyright)
        .processor::<DetectorConfig>("nsfw", tributary_processors::moderation::build_nsfw)
        .processor::<DetectorConfig>("violence", tributary_processors::moderation::build_violence)
        .processor::<tributary_processors::moderation::merge::MergeConfig>(
            "merge",
            tributary_processors::moderation::merge::build,
        )
        .sink::<ConsoleConfig>("stdout", tributary_sinks::console::build_stdout)
        .sink::<ConsoleConfig>("stderr", tributary_sinks::console::build_stderr)
        .sink::<tributary_sinks::file::FileSinkConfig>("file", tributary_sinks::file::build)
        .sink::<tributary_sinks::blackhole::BlackholeConfig>("blackhole", tributary_sinks::blackhole::build)
        .sink::<tributary_sinks::response::ResponseConfig>("response", tributary_sinks::response::build);
    #[cfg(feature = "onnx")]
    let registry = registry
        .processor::<tributary_processors::onnx::OnnxConfig>("onnx", tributary_processors::onnx::build)
        .processor::<tributary_processors::ride_duration::RideDurationConfig>(
            "ride_duration",
            tributary_processors::ride_duration::build,
        )
        .processor::<tributary_processors::tip::TipConfig>("tip", tributary_processors::tip::build);
    #[cfg(feature = "kinesis")]
    let registry = registry
        .source::<tributary_sources::kinesis::KinesisSourceConfig>("kinesis", tributary_sources::kinesis::build)
        .sink::<tributary_sinks::kinesis::KinesisSinkConfig>("kinesis", tributary_sinks::kinesis::build);
    #[cfg(feature = "kafka")]
    let registry = registry
        .source::<tributary_sources::kafka::KafkaSourceConfig>("kafka", tributary_sources::kafka::build)
        .sink::<tributary_sinks::kafka::KafkaSinkConfig>("kafka", tributary_sinks::kafka::build);
    #[cfg(feature = "s3")]
    let registry = registry.sink::<tributary_sinks::s3::S3SinkConfig>("s3", tributary_sinks::s3::build);
    #[cfg(feature = "parquet")]
    let registry = registry
        .source::<tributary_sources::parquet::ParquetConfig>("parquet", tributary_sources::parquet::build)
        .sink::<tributary_sinks::parquet::ParquetSinkConfig>("parquet", tributary_sinks::parquet::build);
    registry
}
