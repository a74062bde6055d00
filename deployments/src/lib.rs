//! The `tributary` package: the plugin registry that every binary shares, and the pieces of the
//! command-line tool (logging, status line, signal handling).
//!
//! Adding a plugin: write its module (a typed config and a `build` function) in the sources,
//! processors or sinks crate, then add one line to [`registry`].

/// The process allocator of every binary built on this package (feature `mimalloc`, on by
/// default). Decoding and encoding JSON allocate for every record: against glibc's malloc,
/// mimalloc gives about 1.6x the records per CPU-second at batch 1,000 for about 3 MB more peak
/// RSS (BENCHMARKS.md). It is built not to ask for transparent huge pages (`no_thp`), which
/// otherwise added about 12 MB of RSS here (a kernel with THP set to `always` uses them anyway).
/// ONNX Runtime keeps the C library's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "parquet")]
pub mod batch;
pub mod cli;
#[cfg(feature = "kinesis")]
pub mod esm;
pub mod http_api;
#[cfg(feature = "kafka")]
pub mod kafka_cli;
#[cfg(feature = "kinesis")]
pub mod kinesis_cli;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics_endpoint;
#[cfg(feature = "serve")]
pub mod serve;
pub mod status;

use tributary_framework::registry::Registry;

/// Every plugin, by its `type` name. This is the one list to edit when adding a plugin.
pub fn registry() -> Registry {
    let registry = Registry::new()
        .source("file", tributary_sources::file::build)
        .source("stdin", tributary_sources::stdin::build)
        .source("generator", tributary_sources::generator::build)
        .source("lambda", tributary_sources::lambda::build)
        .source("http", tributary_sources::http::build)
        .processor("copyright", tributary_processors::moderation::build_copyright)
        .processor("nsfw", tributary_processors::moderation::build_nsfw)
        .processor("violence", tributary_processors::moderation::build_violence)
        .processor("merge", tributary_processors::moderation::merge::build)
        .sink("stdout", tributary_sinks::console::build_stdout)
        .sink("stderr", tributary_sinks::console::build_stderr)
        .sink("file", tributary_sinks::file::build)
        .sink("blackhole", tributary_sinks::blackhole::build)
        .sink("response", tributary_sinks::response::build);
    #[cfg(feature = "onnx")]
    let registry = registry
        .processor("onnx", tributary_processors::onnx::build)
        .processor("ride_duration", tributary_processors::ride_duration::build)
        .processor("tip", tributary_processors::tip::build);
    #[cfg(feature = "kinesis")]
    let registry =
        registry.source("kinesis", tributary_sources::kinesis::build).sink("kinesis", tributary_sinks::kinesis::build);
    #[cfg(feature = "kafka")]
    let registry =
        registry.source("kafka", tributary_sources::kafka::build).sink("kafka", tributary_sinks::kafka::build);
    #[cfg(feature = "s3")]
    let registry = registry.sink("s3", tributary_sinks::s3::build);
    #[cfg(feature = "parquet")]
    let registry =
        registry.source("parquet", tributary_sources::parquet::build).sink("parquet", tributary_sinks::parquet::build);
    registry
}
