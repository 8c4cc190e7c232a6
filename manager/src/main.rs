//! `giva-manager`: the central manager.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = giva_manager::cli::Cli::parse();
    giva_runtime::exit::run_async("giva-manager", giva_manager::cli::run(cli))
}
