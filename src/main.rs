//! opsgate: thin entry point. Parses arguments, runs, maps errors to exit codes.

use clap::Parser;

fn main() {
    let cli = opsgate::cli::Cli::parse();
    match opsgate::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("opsgate: error: {err:#}");
            std::process::exit(opsgate::exit::code_for(&err));
        }
    }
}
