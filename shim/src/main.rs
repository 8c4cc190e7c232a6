//! `giva-shim`: the thin agent in each guest VM.

use clap::Parser;
use giva_runtime::LogFormat;

fn main() -> std::process::ExitCode {
    let cli = giva_shim::cli::Cli::parse();
    giva_runtime::telemetry::init(LogFormat::Text, "warn");
    giva_runtime::exit::run_async("giva-shim", giva_shim::cli::run(cli))
}
