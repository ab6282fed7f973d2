//! Test harness: drives the real `opsgate` binary with a throw-away database.
#![allow(dead_code, clippy::unwrap_used)]

pub mod fake_slack;
pub mod fake_slack_socket;
pub mod fake_telegram;
pub mod need;
pub mod pg;

#[allow(unused_imports)]
pub use need::{is_root, missing_root, missing_tool, require};

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The real LLM output bundled from shared/samples (a byte-for-byte copy).
pub const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/vps-analytics");

pub fn sample(name: &str) -> String {
    let path = Path::new(SAMPLES).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A temporary directory with a database in it (a SQLite path), or a PostgreSQL
/// database by URL.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    /// Set for a PostgreSQL database.
    pub url: Option<String>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state").join("opsgate.db");
        Env { dir, db, url: None }
    }

    /// An environment whose database is a fresh PostgreSQL database, or `None` when
    /// PostgreSQL is not installed (the caller returns: see [`require`]).
    pub fn postgres() -> Option<Env> {
        let pg = pg::Pg::shared()?;
        let mut env = Env::new();
        env.url = Some(pg.fresh_db());
        Some(env)
    }

    /// An environment whose database is a fresh PostgreSQL database reached through
    /// PgBouncer in transaction mode (see [`pg::Bouncer`]), or `None` without them.
    pub fn pgbouncer() -> Option<Env> {
        let pg = pg::Pg::shared()?;
        let bouncer = pg::Bouncer::shared()?;
        let mut env = Env::new();
        env.url = Some(bouncer.through(&pg.fresh_db()));
        Some(env)
    }

    /// The `--db` value: the path or the URL.
    pub fn db_value(&self) -> String {
        match &self.url {
            Some(url) => url.clone(),
            None => self.db.display().to_string(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            stdin: None,
            envs: vec![
                ("OPSGATE_DB".into(), self.db_value()),
                // The spool of run outcomes stays in the test's directory.
                (
                    "XDG_STATE_HOME".into(),
                    self.state_home().display().to_string(),
                ),
                // No config file of this machine's user or host is discovered.
                (
                    "XDG_CONFIG_HOME".into(),
                    self.dir.path().join("xdg-config").display().to_string(),
                ),
                (
                    "OPSGATE_SYSTEM_CONFIG".into(),
                    self.dir
                        .path()
                        .join("etc/opsgate.toml")
                        .display()
                        .to_string(),
                ),
            ],
        }
    }

    /// The state directory the commands see (`XDG_STATE_HOME`): the spool is under it.
    pub fn state_home(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// This environment's spool of run outcomes.
    pub fn spool_dir(&self) -> PathBuf {
        self.state_home().join("opsgate").join("spool")
    }

    /// `opsgate ingest --source S` with `input` on stdin; panics unless it succeeds.
    pub fn ingest(&self, source: &str, input: &str) -> Output {
        self.cmd(&["ingest", "--source", source]).stdin(input).ok()
    }

    pub fn list_json(&self, extra: &[&str]) -> Vec<serde_json::Value> {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(extra);
        let out = self.cmd(&args).ok();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }

    /// The store, through its own API (default rules).
    pub fn store(&self) -> opsgate::store::Store {
        let location =
            opsgate::config::DbLocation::parse(std::ffi::OsStr::new(&self.db_value())).unwrap();
        opsgate::store::Store::open_at(&location, opsgate::config::Rules::default()).unwrap()
    }

    /// Runs one SQL statement on the database directly (tests of the schema itself);
    /// returns the error text if it failed.
    pub fn raw_sql(&self, sql: &str) -> Result<(), String> {
        match &self.url {
            Some(url) => postgres::Client::connect(url, postgres::NoTls)
                .unwrap()
                .batch_execute(sql)
                .map_err(|e| format!("{e:?}")),
            None => self.sql().execute_batch(sql).map_err(|e| e.to_string()),
        }
    }

    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }

    /// Every row of every table, as text: equal dumps mean an untouched database.
    /// The state of proposal `id` (SQLite).
    pub fn state_of(&self, id: i64) -> String {
        self.sql()
            .query_row("SELECT state FROM proposals WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }

    /// The audit rows of one action, oldest first: (proposal, actor, note).
    pub fn audit(&self, action: &str) -> Vec<(Option<i64>, String, Option<String>)> {
        let conn = self.sql();
        let mut stmt = conn
            .prepare(
                "SELECT proposal_id, actor, note FROM transitions WHERE action = ?1 ORDER BY id",
            )
            .unwrap();
        stmt.query_map([action], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    pub fn dump(&self) -> String {
        if !self.db.exists() {
            return "<no database>".into();
        }
        let conn = self.sql();
        let mut out = String::new();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            out.push_str(&format!("{t}: {}\n", rows.join("\n")));
        }
        out
    }
}

pub struct Run {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    envs: Vec<(String, String)>,
}

impl Run {
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Run {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.envs.push((k.into(), v.into()));
        self
    }

    /// Points the run at a fake Bot API with these operators.
    pub fn telegram(self, fake: &fake_telegram::Fake, operators: &str) -> Run {
        self.env("OPSGATE_TELEGRAM_TOKEN", fake_telegram::TOKEN)
            .env("OPSGATE_TELEGRAM_CHAT_ID", &fake_telegram::CHAT.to_string())
            .env("OPSGATE_TELEGRAM_OPERATORS", operators)
            .env("OPSGATE_TELEGRAM_API_URL", &fake.url)
            .env("OPSGATE_TELEGRAM_TIMEOUT", "2")
    }

    /// Points the run at a fake Slack Web API with these operators (Slack user ids).
    pub fn slack(self, fake: &fake_slack::FakeSlack, operators: &str) -> Run {
        self.env("OPSGATE_SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN)
            .env("OPSGATE_SLACK_APP_TOKEN", fake_slack::APP_TOKEN)
            .env("OPSGATE_SLACK_CHANNEL", fake_slack::CHANNEL)
            .env("OPSGATE_SLACK_OPERATORS", operators)
            .env("OPSGATE_SLACK_API_URL", &fake.url)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_opsgate"));
        cmd.args(&self.args)
            .env_remove("OPSGATE_NOW")
            .env_remove("OPSGATE_CONFIG")
            .env_remove("OPSGATE_TELEGRAM_TOKEN")
            .env_remove("OPSGATE_TELEGRAM_CHAT_ID")
            .env_remove("OPSGATE_TELEGRAM_OPERATORS")
            .env_remove("OPSGATE_TELEGRAM_API_URL")
            .env_remove("OPSGATE_SLACK_BOT_TOKEN")
            .env_remove("OPSGATE_SLACK_APP_TOKEN")
            .env_remove("OPSGATE_SLACK_CHANNEL")
            .env_remove("OPSGATE_SLACK_OPERATORS")
            .env_remove("OPSGATE_SLACK_API_URL");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn output(self) -> Output {
        self.run_to_end(None)
    }

    /// Like [`Run::output`] for a test whose point is that the run ends by itself: a run
    /// still going after [`WAIT_LIMIT`] is killed and the test fails.
    pub fn output_unless_hung(self) -> Output {
        self.run_to_end(Some(WAIT_LIMIT))
    }

    fn run_to_end(self, limit: Option<Duration>) -> Output {
        let desc = self.args.join(" ");
        let mut cmd = self.command();
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn opsgate");
        let input = self.stdin.unwrap_or_default();
        let mut stdin = child.stdin.take().unwrap();
        // The child may refuse early and close stdin: a broken pipe is fine.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let read_all = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = read_all(Box::new(child.stdout.take().unwrap()));
        let stderr = read_all(Box::new(child.stderr.take().unwrap()));
        let started = Instant::now();
        let status = match limit {
            None => child.wait().unwrap(),
            Some(limit) => loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break status;
                }
                if started.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("opsgate {desc} was still running after {limit:?}: killed");
                }
                std::thread::sleep(Duration::from_millis(5));
            },
        };
        writer.join().unwrap();
        Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }

    /// Runs and asserts exit code 0.
    pub fn ok(self) -> Output {
        let desc = self.args.join(" ");
        let out = self.output();
        assert_eq!(
            out.status.code(),
            Some(0),
            "opsgate {desc} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// Waits for `cond`, checking every 20 ms, for at most a generous deadline (60 s: the
/// machine may be loaded; a condition that holds returns at once). Panics naming `what`.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long [`wait_until`] and [`Run::output_unless_hung`] wait before they call it a hang.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One ops-bot cycle proposing `commands`, with ids that drift by `cycle`.
pub fn cycle(cycle: usize, commands: &[&str]) -> String {
    let items: Vec<serde_json::Value> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| {
            serde_json::json!({
                "id": format!("a3f{}c{}", 9 - (cycle % 10), i),
                "command": c,
                "reason": format!("cycle {cycle} says so"),
                "risk": "low",
            })
        })
        .collect();
    serde_json::json!({"summary": "s", "approval_needed": items}).to_string()
}
