//! Error kinds and exit codes, in one table. Imports nothing from the crate: each adapter
//! (the store, the Telegram adapter, the parser) maps its own errors to a [`Kind`] with a
//! classifier, and `main` asks [`kind_of`] with all of them.

use std::fmt;

/// What went wrong, as a caller (a script, cron, systemd) must react to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bug, or a failure with no better kind; also a request the remote refused for a
    /// reason retrying will not fix (Telegram's 400).
    Internal,
    /// The action no longer applies in the proposal's state (already decided, finished,
    /// superseded, expired) or needs a confirmation. Nothing changed.
    Conflict,
    /// The command line is wrong: an unknown option, a missing argument, a value out of
    /// its range.
    Usage,
    /// Bad input: no JSON, no proposal array, a limit exceeded, an invalid item under
    /// `--strict`. Nothing was written.
    BadInput,
    /// What the command line names does not exist: the proposal, or the SQLite file of
    /// a command that only reads or decides (it never creates one, and says which setting
    /// named the path).
    NotFound,
    /// A file could not be read or written: read-only filesystem, full disk, I/O error.
    Io,
    /// Temporary: the database is locked past the busy timeout or unreachable, Telegram
    /// is unreachable or rate-limited, another poller runs. Retry later; nothing was lost.
    Temporary,
    /// Permission denied on a file opsgate needs (the database, its directory).
    Permission,
    /// Configuration: a bad or missing setting, an unsafe token file, a database that is
    /// not opsgate's or has a newer schema.
    Config,
}

/// Every kind with its exit code and the line `--help` and the README print for it.
pub const TABLE: [(Kind, u8, &str); 9] = [
    (Kind::Internal, 1, "internal error, or Telegram refused a request"),
    (Kind::Conflict, 3, "the action no longer applies in the proposal's state (or needs --confirm)"),
    (Kind::Usage, 64, "usage error: an unknown option, a missing argument, a value out of range"),
    (Kind::BadInput, 65, "bad input; nothing written"),
    (Kind::NotFound, 66, "no such proposal, or no such database (a command that reads or decides never creates one; the message names the path and the setting that chose it)"),
    (Kind::Io, 74, "a file could not be read or written: read-only, disk full, I/O error"),
    (Kind::Temporary, 75, "temporary failure (database locked or down, Telegram unreachable or rate-limited, another poller); retry, nothing was lost"),
    (Kind::Permission, 77, "permission denied on the database or its directory (never reported as \"no proposals\" or \"does not exist\")"),
    (Kind::Config, 78, "configuration error (with the TOML file's line and reason), a path that is a file where a directory must be (or the reverse), or a database that is not opsgate's"),
];

/// Success.
pub const OK: u8 = 0;

/// What `run`'s exit code says when an approved command fails (help, man page, README).
pub const RUN_EXIT: &str = "`opsgate run` exits 0 when an approved command it started fails or times out: the failure is the command's, not opsgate's, and is recorded (state failed, its exit code and output in `opsgate show`, `exit_code` in `run --json`); run's own exit code is non-zero only when opsgate itself failed (e.g. 75: database locked)";

impl Kind {
    /// The exit code of this kind (see [`TABLE`]).
    pub fn code(self) -> u8 {
        TABLE
            .iter()
            .find(|(kind, _, _)| *kind == self)
            .map_or(1, |(_, code, _)| *code)
    }
}

/// An error with a kind. Put it anywhere in an `anyhow` chain; [`kind_of`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Builds an `anyhow` error of a kind.
pub fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Error::new(kind, message).into()
}

/// Maps one adapter's own error type to a kind, if the cause is one of its errors.
pub type Classifier = fn(&(dyn std::error::Error + 'static)) -> Option<Kind>;

/// File-system errors: permission denied is 77, a path whose directory is a file (or a
/// file that is a directory) is the configuration's fault (78), other I/O is 74.
pub fn classify_io(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    use std::io::ErrorKind as E;
    let io = cause.downcast_ref::<std::io::Error>()?;
    Some(match io.kind() {
        E::PermissionDenied => Kind::Permission,
        E::NotADirectory | E::IsADirectory => Kind::Config,
        _ => Kind::Io,
    })
}

/// The kind of an error chain: the first cause that is an [`Error`] or that a
/// classifier knows, else [`Kind::Internal`].
pub fn kind_of(err: &anyhow::Error, classifiers: &[Classifier]) -> Kind {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.kind;
        }
        if let Some(kind) = classifiers.iter().find_map(|classify| classify(cause)) {
            return kind;
        }
    }
    Kind::Internal
}
