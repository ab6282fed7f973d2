//! The outcome spool: a finished command's outcome, made durable on this host before the
//! database is asked to record it. One small JSON file per run in the state directory
//! (`$XDG_STATE_HOME/opsgate/spool`, see [`crate::config::spool_dir`]), written to a
//! temporary file, fsynced, renamed into place and the directory fsynced: once
//! [`Spool::write`] returns, a crash of the runner, of the host or of the database loses
//! nothing. A file is removed only after the database has the outcome
//! ([`crate::run::replay`]). Each file names the database it belongs to, so one state
//! directory serves several databases and a replay touches only its own. No SQL here.

use crate::config::DbLocation;
use crate::model::Outcome;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// One run's outcome, as the runner saw it end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spooled {
    /// The database it belongs to ([`db_key`]).
    pub db: String,
    pub proposal: i64,
    /// The claim: the runner's id and when it claimed (the proposal's `started_at`).
    pub runner: String,
    pub claimed_at: i64,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: i64,
    /// Already scrubbed of known secrets and cut to size.
    pub stdout_tail: String,
    pub stderr_tail: String,
    pub note: Option<String>,
    /// When the command ended (unix ms); the outcome is recorded as of then.
    pub ended_at: i64,
}

impl Spooled {
    pub fn outcome(&self) -> Outcome {
        Outcome {
            exit_code: self.exit_code,
            timed_out: self.timed_out,
            duration_ms: self.duration_ms,
            stdout_tail: self.stdout_tail.clone(),
            stderr_tail: self.stderr_tail.clone(),
            note: self.note.clone(),
        }
    }
}

/// How a spool file names its database: a SQLite file by its absolute path, a PostgreSQL
/// database by its URL without options and with the password masked (never written to
/// disk), so `sslmode=` spelled differently by two commands still names one database.
pub fn db_key(db: &DbLocation) -> String {
    match db {
        DbLocation::File(path) => std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.clone())
            .display()
            .to_string(),
        DbLocation::Postgres(url) => {
            let base = url.split_once('?').map_or(url.as_str(), |(b, _)| b);
            crate::config::mask_url(base)
        }
    }
}

/// What [`Spool::pending`] found: the outcomes of one database, and the files it could
/// not read (with why).
pub type Pending = (Vec<(PathBuf, Spooled)>, Vec<(PathBuf, String)>);

/// A spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// The lock a replay holds, so two processes of this host never replay one file at once.
pub struct ReplayLock {
    _lock: nix::fcntl::Flock<File>,
}

impl Spool {
    pub fn at(dir: PathBuf) -> Spool {
        Spool { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `outcome` durable: temp file, fsync, rename, fsync of the directory.
    /// Returns the file's path.
    pub fn write(&self, outcome: &Spooled) -> Result<PathBuf> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("creating the spool directory {}", self.dir.display()))?;
        let name = format!(
            "{}-{}-{}.json",
            outcome.proposal,
            std::process::id(),
            outcome.claimed_at
        );
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let body = serde_json::to_vec(outcome)?;
        let written = (|| -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            File::open(&self.dir)?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(anyhow::Error::new(e).context(format!(
                "writing the outcome to the spool {}",
                path.display()
            )));
        }
        Ok(path)
    }

    /// Removes a recorded outcome's file (already gone is fine).
    pub fn remove(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(anyhow::Error::new(e)
                .context(format!("removing the spooled outcome {}", path.display()))),
            _ => {
                if let Ok(d) = File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
        }
    }

    /// Every spooled outcome of database `db`, oldest file name first. A file that cannot
    /// be read or parsed is reported in the second list and left alone.
    pub fn pending(&self, db: &str) -> Pending {
        let (mut found, mut bad) = (Vec::new(), Vec::new());
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return (found, bad);
        };
        let mut paths: Vec<PathBuf> = dir
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.'))
            })
            .collect();
        paths.sort();
        for path in paths {
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Spooled>(&b).map_err(|e| e.to_string()))
            {
                Ok(s) if s.db == db => found.push((path, s)),
                Ok(_) => {}
                Err(e) => bad.push((path, e)),
            }
        }
        (found, bad)
    }

    /// Whether an outcome of `runner`'s claim on `proposal` waits here (a file name and
    /// content check; no lock).
    pub fn holds(&self, db: &str, proposal: i64, runner: &str) -> bool {
        self.pending(db)
            .0
            .iter()
            .any(|(_, s)| s.proposal == proposal && s.runner == runner)
    }

    /// Takes the replay lock, or `None` when another process of this host holds it (it
    /// replays; this one need not) or the spool does not exist yet.
    pub fn lock_for_replay(&self) -> Option<ReplayLock> {
        use nix::fcntl::{Flock, FlockArg};
        if !self.dir.is_dir() {
            return None;
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(".replay.lock"))
            .ok()?;
        Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .ok()
            .map(|lock| ReplayLock { _lock: lock })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample(db: &str, proposal: i64) -> Spooled {
        Spooled {
            db: db.into(),
            proposal,
            runner: "h:1:2".into(),
            claimed_at: 5,
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 7,
            stdout_tail: "out".into(),
            stderr_tail: String::new(),
            note: None,
            ended_at: 9,
        }
    }

    #[test]
    fn a_written_outcome_reads_back_for_its_database_only_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::at(dir.path().join("spool"));
        let path = spool.write(&sample("a.db", 3)).unwrap();
        spool.write(&sample("b.db", 4)).unwrap();
        let (found, bad) = spool.pending("a.db");
        assert!(bad.is_empty());
        assert_eq!(found, vec![(path.clone(), sample("a.db", 3))]);
        assert!(spool.holds("a.db", 3, "h:1:2") && !spool.holds("a.db", 4, "h:1:2"));
        spool.remove(&path).unwrap();
        spool.remove(&path).unwrap();
        assert!(spool.pending("a.db").0.is_empty());
        assert_eq!(spool.pending("b.db").0.len(), 1);
    }

    #[test]
    fn one_replay_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::at(dir.path().to_path_buf());
        let first = spool.lock_for_replay();
        assert!(first.is_some());
        assert!(spool.lock_for_replay().is_none());
        drop(first);
        assert!(spool.lock_for_replay().is_some());
    }
}
