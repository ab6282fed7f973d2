//! opsgate: thin entry point. Parses arguments, runs, maps errors to exit codes.

use opsgate::error::{self, Kind};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match opsgate::cli::parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is a usage error.
            let code = if e.use_stderr() {
                Kind::Usage.code()
            } else {
                error::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match opsgate::cmd::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("opsgate: error: {err:#}");
            ExitCode::from(error::kind_of(&err, opsgate::cmd::CLASSIFIERS).code())
        }
    }
}
