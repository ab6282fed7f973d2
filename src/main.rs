//! opsgate: thin entry point. Parses arguments, runs, maps errors to exit codes.

use clap::Parser;

fn main() {
    let cli = match opsgate::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is a usage error.
            let code = if e.use_stderr() {
                opsgate::exit::USAGE
            } else {
                opsgate::exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    match opsgate::app::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("opsgate: error: {err:#}");
            std::process::exit(opsgate::exit::code_for(&err));
        }
    }
}
