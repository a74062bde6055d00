//! `tributary`: run machine-learning models on event streams. See `tributary --help`.

use std::process::ExitCode;

use clap::Parser;

/// The process allocator (feature `mimalloc`, on by default), set here by the binary rather
/// than by the library it links. Decoding and encoding JSON allocate for every record: against
/// glibc's malloc, mimalloc gives about 1.6x the records per CPU-second at batch 1,000 for about
/// 3 MB more peak RSS (BENCHMARKS.md). It is built not to ask for transparent huge pages
/// (`no_thp`), which otherwise added about 12 MB of RSS here (a kernel with THP set to `always`
/// uses them anyway). ONNX Runtime keeps the C library's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tributary::cli::main(tributary::cli::Cli::parse()).await
}
