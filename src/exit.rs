//! Exit codes, in one place. sysexits where they fit; every failure path maps here.

use std::fmt;

/// Success.
pub const OK: i32 = 0;
/// An unexpected internal failure (a bug, or an error with no better code).
pub const FAILURE: i32 = 1;
/// Command-line usage error: an unknown option, a value out of its range, a missing
/// argument (sysexits EX_USAGE; clap's own errors are mapped to it too).
pub const USAGE: i32 = 64;
/// The operator's action does not apply in the proposal's current state (already
/// decided, finished, or superseded). Nothing changed.
pub const CONFLICT: i32 = 3;
/// Bad input: no JSON, no proposal array, a limit exceeded, an invalid item under
/// `--strict`. Nothing was written.
pub const DATAERR: i32 = 65;
/// The proposal named on the command line does not exist.
pub const NOINPUT: i32 = 66;
/// The database could not be written: read-only file, full disk, I/O error.
pub const IOERR: i32 = 74;
/// Temporary failure: database locked past the busy timeout, Telegram unreachable or
/// rate-limited. Retry later; nothing was lost.
pub const TEMPFAIL: i32 = 75;
/// Configuration error: bad or missing setting, unsafe token file, a database file that is
/// not opsgate's or has a newer schema.
pub const CONFIG: i32 = 78;

/// An error that knows its exit code. Put it anywhere in an `anyhow` chain; `main` finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for an error chain: an explicit [`Failure`], else a classified SQLite
/// error, else [`FAILURE`].
pub fn code_for(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<crate::notify::telegram::TgError>() {
            use crate::notify::telegram::TgError as T;
            return match e {
                T::Config(_) => CONFIG,
                T::Refused(_) => FAILURE,
                _ => TEMPFAIL,
            };
        }
        if cause.downcast_ref::<crate::parse::ParseError>().is_some() {
            return DATAERR;
        }
        if let Some(rusqlite::Error::SqliteFailure(e, _)) = cause.downcast_ref::<rusqlite::Error>()
        {
            use rusqlite::ErrorCode as C;
            return match e.code {
                C::DatabaseBusy | C::DatabaseLocked => TEMPFAIL,
                C::ReadOnly | C::DiskFull | C::SystemIoFailure | C::CannotOpen => IOERR,
                C::NotADatabase => CONFIG,
                _ => FAILURE,
            };
        }
    }
    FAILURE
}
