//! A throw-away PostgreSQL cluster for tests: `initdb` into a temp directory (as the
//! `postgres` user when the tests run as root: the server refuses root), started on a
//! free 127.0.0.1 port, stopped when the test process ends (a watchdog process stops it
//! and removes the directory). Without PostgreSQL installed, tests that need it print
//! SKIPPED, unless `OPSGATE_REQUIRE_PG=1` or `OPSGATE_REQUIRE_ALL=1` (set by CI), where
//! they fail (the rule is [`super::need::require`]'s).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

pub struct Pg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// Extra server options (`-c name=value ...`).
    extra: String,
}

static SHARED: OnceLock<Result<Pg, String>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The PostgreSQL binaries: `pg_config --bindir`, else the newest /usr/lib/postgresql/*.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

use super::need::is_root;

/// Runs a PostgreSQL program as the user that owns the cluster.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// Runs `cleanup` (sh) in a detached process once this test process has ended, however
/// it ends: throw-away servers never outlive their tests.
fn when_this_process_ends(cleanup: &str) {
    use std::os::unix::process::CommandExt;
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}",
        pid = std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `None`, after [`super::need::require`] said SKIPPED (or failed the test under CI).
fn unavailable<T>(why: &str) -> Option<T> {
    super::need::require(
        "pg",
        Some(format!(
            "no PostgreSQL: {why} (install the postgresql package)"
        )),
    );
    None
}

impl Pg {
    /// A new cluster of its own (for tests that stop and restart it).
    pub fn start_new() -> Option<Pg> {
        Pg::start_new_with("", |_| {})
    }

    /// A new cluster with extra server options; `prepare` runs on the data directory
    /// before the first start (as root: files it writes are handed to postgres).
    pub fn start_new_with(extra: &str, prepare: impl FnOnce(&Path)) -> Option<Pg> {
        match Pg::try_start(extra, prepare) {
            Ok(pg) => Some(pg),
            Err(why) => unavailable(&why),
        }
    }

    fn try_start(extra: &str, prepare: impl FnOnce(&Path)) -> Result<Pg, String> {
        let Some(bin) = bin_dir() else {
            return Err("no initdb found".into());
        };
        let dir = std::env::temp_dir().join(format!(
            "opsgate-pg-{}-{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("cannot hand a directory to the postgres user".into());
            }
        }
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-A", "trust", "-U", "opsgate", "--no-sync", "-E", "UTF8"])
            .output()
            .unwrap();
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let pg = Pg {
            port: free_port(),
            dir,
            bin,
            extra: extra.to_string(),
        };
        prepare(&pg.dir.join("data"));
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.join("data"))
                .status();
        }
        pg.start();
        pg.watchdog();
        Ok(pg)
    }

    /// The cluster shared by a test binary's tests (each test that finds none says so).
    pub fn shared() -> Option<&'static Pg> {
        match SHARED.get_or_init(|| Pg::try_start("", |_| {})) {
            Ok(pg) => Some(pg),
            Err(why) => unavailable(why),
        }
    }

    pub fn start(&self) {
        let options = format!(
            "-c port={} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=300 {}",
            self.port,
            self.dir.display(),
            self.extra
        );
        let out = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-o", &options, "-w", "start"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    /// Stops the server at once, as a crash would (`-m immediate`).
    pub fn stop_now(&self) {
        let out = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server and removes its directory once this test process has ended.
    fn watchdog(&self) {
        when_this_process_ends(&format!(
            "{stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
            stop = if is_root() {
                format!(
                    "runuser -u postgres -- {}",
                    self.bin.join("pg_ctl").display()
                )
            } else {
                self.bin.join("pg_ctl").display().to_string()
            },
            data = self.dir.join("data").display(),
            dir = self.dir.display(),
        ));
    }

    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://opsgate@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// A fresh, empty database on this cluster; returns its URL.
    pub fn fresh_db(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        );
        let mut client = self.client("postgres");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        self.url(&name)
    }

    pub fn client(&self, database: &str) -> postgres::Client {
        postgres::Client::connect(&self.url(database), postgres::NoTls).unwrap()
    }

    /// A client on the database a URL of [`Pg::fresh_db`] names.
    pub fn client_for(&self, url: &str) -> postgres::Client {
        postgres::Client::connect(url, postgres::NoTls).unwrap()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A PgBouncer (the distribution's package) in transaction mode in front of a cluster,
/// with the package's defaults otherwise: no `ignore_startup_parameters`, no prepared
/// statement support (1.18), a small pool so server connections are shared between
/// clients. Started on a free 127.0.0.1 port, stopped when the test process ends.
pub struct Bouncer {
    pub port: u16,
    dir: PathBuf,
}

static SHARED_BOUNCER: OnceLock<Result<Bouncer, String>> = OnceLock::new();

fn pgbouncer_bin() -> Option<PathBuf> {
    ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Bouncer {
    /// The pooler in front of [`Pg::shared`], shared by a test binary's tests; `None`
    /// (SKIPPED, or a failure under CI) without PostgreSQL or pgbouncer.
    pub fn shared() -> Option<&'static Bouncer> {
        let pg = Pg::shared()?;
        match SHARED_BOUNCER.get_or_init(|| {
            Bouncer::try_start(pg, &[], "default_pool_size = 4\nmax_client_conn = 500\n")
        }) {
            Ok(b) => Some(b),
            Err(why) => {
                super::need::require("pgbouncer", Some(why.clone()));
                None
            }
        }
    }

    /// A pooler of its own in front of `pg` (the fleet bench's): `users` are let in
    /// besides `opsgate` (pgbouncer's `trust` still needs each name in its auth file), and
    /// `settings` are `[pgbouncer]` lines (pool and client limits) in place of the shared
    /// pooler's small pool, last in the file (so they may open a section, such as a
    /// `[databases]` entry with a pool size of its own).
    pub fn start_for(pg: &Pg, users: &[String], settings: &str) -> Option<Bouncer> {
        match Bouncer::try_start(pg, users, settings) {
            Ok(b) => Some(b),
            Err(why) => {
                super::need::require("pgbouncer", Some(why));
                None
            }
        }
    }

    fn try_start(pg: &Pg, users: &[String], settings: &str) -> Result<Bouncer, String> {
        let Some(bin) = pgbouncer_bin() else {
            return Err("no pgbouncer (install the pgbouncer package)".into());
        };
        let dir = std::env::temp_dir().join(format!(
            "opsgate-pgbouncer-{}-{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let ini = dir.join("pgbouncer.ini");
        let userlist: String = std::iter::once("opsgate")
            .chain(users.iter().map(String::as_str))
            .map(|u| format!("\"{u}\" \"\"\n"))
            .collect();
        std::fs::write(dir.join("userlist.txt"), userlist).unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = transaction\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n{settings}",
                pg = pg.port,
                dir = dir.display()
            ),
        )
        .unwrap();
        if is_root() {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
        }
        let out = as_owner(&bin)
            .arg("-d")
            .arg(&ini)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("starting pgbouncer: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pgbouncer did not start: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
            ));
        }
        let bouncer = Bouncer { port, dir };
        bouncer.watchdog();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err("pgbouncer does not listen".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    /// Stops pgbouncer and removes its directory once this test process has ended.
    fn watchdog(&self) {
        when_this_process_ends(&format!(
            "kill $(cat {dir}/pgbouncer.pid) 2>/dev/null; sleep 1; rm -rf {dir}",
            dir = self.dir.display(),
        ));
    }

    /// A URL of the cluster behind (from [`Pg::fresh_db`]) rewritten to go through the
    /// pooler.
    pub fn through(&self, url: &str) -> String {
        let (head, tail) = url.split_once("@127.0.0.1:").unwrap();
        let rest = &tail[tail.find('/').unwrap()..];
        format!("{head}@127.0.0.1:{}{rest}", self.port)
    }

    /// The pooler's log (what it refused, which clients it closed).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}
