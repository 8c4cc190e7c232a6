//! `bench`: giva's measurements. Runs go to `bench/results/history/<date>/`
//! and `bench/results/LATEST.md` is regenerated from the newest of each.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = giva_bench::cli::Cli::parse();
    giva_runtime::exit::run("bench", || giva_bench::cli::run(cli).map(|()| 0))
}
