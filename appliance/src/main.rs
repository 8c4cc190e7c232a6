//! `giva`: the appliance daemon and the local scan and database tools.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = giva_appliance::cli::Cli::parse();
    giva_runtime::exit::run("giva", || giva_appliance::cli::run(cli))
}
