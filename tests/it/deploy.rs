//! Issue #14, "works as pasted": the shipped deployment files run as they are. The
//! crontab's lines run under cron's bare environment and stay quiet; the systemd units
//! verify and carry the keys a service needs; README's quick start, followed as written
//! against a fake Bot API, ends with a completed command on its card.
//!
//! A temporary root stands in for the host: `/usr/local/bin` (opsgate, opsgate-cycle and a
//! fake `claude`), `/etc/opsgate` and `/var/lib/...` are substituted by directories in it;
//! nothing else in the files is changed.
//!
//! With the Debian package installed (`OPSGATE_DEB=/` after `dpkg -i`, or the directory
//! the .deb was unpacked into), the host's programs are the package's `/usr/bin/opsgate`
//! and `/usr/bin/opsgate-cycle`, and the crontab and example config the ones it installed
//! under `/usr/share/doc/opsgate/examples`.
#![allow(clippy::unwrap_used)]

use super::common;
use common::fake_telegram::{self, Fake};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const ALICE: u64 = 1001;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Where the Debian package is installed, when `OPSGATE_DEB` names it.
fn deb_root() -> Option<PathBuf> {
    std::env::var_os("OPSGATE_DEB")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where the package installs an example of the repository (`examples/...`).
const SHIPPED: [(&str, &str); 4] = [
    (
        "examples/deploy/crontab",
        "usr/share/doc/opsgate/examples/crontab",
    ),
    (
        "examples/opsgate.toml",
        "usr/share/doc/opsgate/examples/opsgate.toml",
    ),
    (
        "examples/prompt-template.md",
        "usr/share/doc/opsgate/examples/prompt-template.md",
    ),
    (
        "examples/deploy/sudoers",
        "usr/share/doc/opsgate/examples/sudoers",
    ),
];

/// A deployment file as the host has it: the installed package's copy when
/// `OPSGATE_DEB` is set, else the repository's.
fn shipped(rel: &str) -> PathBuf {
    match (deb_root(), SHIPPED.iter().find(|(r, _)| *r == rel)) {
        (Some(root), Some((_, installed))) => root.join(installed),
        _ => repo().join(rel),
    }
}

/// The text of a deployment file as the host has it ([`shipped`]).
fn read_shipped(rel: &str) -> String {
    let path = shipped(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// opsgate and opsgate-cycle: the package's, or this build's and the repository's.
fn programs() -> (PathBuf, PathBuf) {
    match deb_root() {
        Some(root) => (
            root.join("usr/bin/opsgate"),
            root.join("usr/bin/opsgate-cycle"),
        ),
        None => (
            PathBuf::from(env!("CARGO_BIN_EXE_opsgate")),
            repo().join("examples/deploy/opsgate-cycle"),
        ),
    }
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One job of a crontab: its schedule and its command, as cron hands it to `/bin/sh -c`.
#[derive(Debug, Clone)]
struct Job {
    schedule: String,
    command: String,
}

#[derive(Debug, Default)]
struct Crontab {
    vars: Vec<(String, String)>,
    jobs: Vec<Job>,
}

/// A user crontab as cron(8) reads it: `NAME=value` lines and five-field (or `@hourly`)
/// job lines; blank lines and comments are skipped.
fn parse_crontab(text: &str) -> Crontab {
    let mut tab = Crontab::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = if line.starts_with('@') { 1 } else { 5 };
        let first = line.split_whitespace().next().unwrap();
        let is_var = !line.starts_with('@')
            && !first.starts_with(|c: char| c.is_ascii_digit() || c == '*')
            && line.contains('=');
        if is_var {
            let (name, value) = line.split_once('=').unwrap();
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            tab.vars.push((name.trim().to_string(), value.to_string()));
            continue;
        }
        // The command starts after the schedule's fields, its own spacing kept.
        let mut rest = line;
        let mut schedule = Vec::new();
        for _ in 0..fields {
            rest = rest.trim_start();
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            schedule.push(&rest[..end]);
            rest = &rest[end..];
        }
        tab.jobs.push(Job {
            schedule: schedule.join(" "),
            command: rest.trim().to_string(),
        });
    }
    tab
}

/// A stand-in for the host under a temporary root.
struct Host {
    root: tempfile::TempDir,
    /// `/usr/local/bin`: opsgate, opsgate-cycle, the fake LLM CLI.
    bin: PathBuf,
    /// `/etc/opsgate`.
    etc: PathBuf,
}

impl Host {
    /// The LLM CLI (`claude`) saves its prompt and arguments and prints `answer`.
    fn new(answer: &str) -> Host {
        let root = tempfile::tempdir().unwrap();
        let bin = root.path().join("usr/local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        let (opsgate, cycle) = programs();
        std::os::unix::fs::symlink(opsgate, bin.join("opsgate")).unwrap();
        std::os::unix::fs::symlink(cycle, bin.join("opsgate-cycle")).unwrap();
        let r = root.path().display();
        std::fs::write(root.path().join("llm-answer"), answer).unwrap();
        write_script(
            &bin.join("claude"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" > '{r}/llm-args'\nenv > '{r}/llm-env'\ncat > '{r}/llm-prompt'\ncat '{r}/llm-answer'\n"
            ),
        );
        // sudo as configured (`sudo -n -H -u USER -- CMD`): records the user, resets the
        // environment as sudo's env_reset does, runs the command.
        write_script(
            &bin.join("sudo"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"$*\" > '{r}/sudo-args'\nwhile [ $# -gt 0 ]; do case \"$1\" in -n|-H) shift;; -u) shift 2;; --) shift; break;; *) break;; esac; done\nexec env -i PATH=\"$PATH\" HOME=/nonexistent \"$@\"\n"
            ),
        );
        let etc = root.path().join("etc/opsgate");
        Host { root, bin, etc }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    /// The host's paths in a line of a deployment file, moved under the root.
    fn subst(&self, text: &str) -> String {
        let r = self.path().display().to_string();
        text.replace("/usr/local/bin", &self.bin.display().to_string())
            .replace("/etc/opsgate", &self.etc.display().to_string())
            .replace("/var/lib", &format!("{r}/var/lib"))
    }

    /// Directories a job writes into under `/var/lib` exist on a host (the package or
    /// useradd made them); here they are made.
    fn make_var_dirs(&self, command: &str) {
        for (i, _) in command.match_indices("/var/lib/") {
            let path: String = command[i..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !"'\";&|<>)".contains(*c))
                .collect();
            if let Some(parent) = Path::new(&path).parent() {
                let dir = self.path().join(parent.strip_prefix("/").unwrap());
                std::fs::create_dir_all(dir).unwrap();
            }
        }
    }

    /// Runs one job as cron does: `/bin/sh -c` with only the crontab's variables.
    fn cron(&self, tab: &Crontab, job: &Job) -> Output {
        self.make_var_dirs(&job.command);
        let mut cmd = Command::new("env");
        cmd.arg("-i");
        for (name, value) in &tab.vars {
            cmd.arg(format!("{name}={}", self.subst(value)));
        }
        cmd.args(["/bin/sh", "-c", &self.subst(&job.command)])
            .current_dir(self.path())
            .stdin(Stdio::null());
        cmd.output().unwrap()
    }

    /// Runs every job whose schedule matches `pick`; each must succeed and print nothing.
    fn cron_jobs(&self, tab: &Crontab, pick: impl Fn(&Job) -> bool) -> usize {
        let mut ran = 0;
        for job in tab.jobs.iter().filter(|j| pick(j)) {
            let out = self.cron(tab, job);
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "cron job `{}` must succeed and print nothing (cron mails output):\n{}",
                job.command,
                show(&out)
            );
            ran += 1;
        }
        ran
    }

    fn db(&self) -> rusqlite::Connection {
        let path = self.path().join("var/lib/opsgate/opsgate.db");
        assert!(path.exists(), "no database at {}", path.display());
        rusqlite::Connection::open(path).unwrap()
    }

    fn llm_prompt(&self) -> String {
        std::fs::read_to_string(self.path().join("llm-prompt")).unwrap()
    }
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn every_minute(job: &Job) -> bool {
    job.schedule == "* * * * *"
}

/// What README step 4 asks for in opsgate.toml: `token_file` uncommented, `chat_id` and
/// `operators` set in `[telegram]`; `api_url` points at the fake Bot API.
fn configure(toml_text: &str, fake: &Fake) -> String {
    let mut done = BTreeMap::new();
    let mut section = "";
    let lines: Vec<String> = toml_text
        .lines()
        .map(|line| {
            if line.starts_with('[') {
                section = line.trim();
            }
            let key = line
                .trim_start()
                .strip_prefix("# ")
                .and_then(|l| l.split_once(" = "))
                .map(|(k, _)| k)
                .filter(|_| section == "[telegram]");
            let new = match key {
                Some("token_file") => line.trim_start().trim_start_matches("# ").to_string(),
                Some("chat_id") => format!("chat_id = {}", fake_telegram::CHAT),
                Some("operators") => format!("operators = [{ALICE}]"),
                Some("api_url") => format!("api_url = \"{}\"", fake.url),
                _ => return line.to_string(),
            };
            *done.entry(key.unwrap().to_string()).or_insert(0) += 1;
            new
        })
        .collect();
    for key in ["token_file", "chat_id", "operators", "api_url"] {
        assert_eq!(
            done.get(key),
            Some(&1),
            "examples/opsgate.toml's [telegram] should hold one commented `{key} = ...` line"
        );
    }
    lines.join("\n") + "\n"
}

/// The host's name, as opsgate-cycle names the source.
fn hostname() -> String {
    let out = Command::new("uname").arg("-n").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The placeholders opsgate-cycle fills in.
const PLACEHOLDERS: [&str; 5] = [
    "{{authority}}",
    "{{host}}",
    "{{time}}",
    "{{snapshot}}",
    "{{queue}}",
];

fn assert_prompt_filled(host: &Host) {
    let prompt = host.llm_prompt();
    for p in PLACEHOLDERS {
        assert!(!prompt.contains(p), "{p} left in the prompt:\n{prompt}");
    }
    assert!(
        prompt.contains("# opsgate authority contract"),
        "the contract is in the prompt:\n{prompt}"
    );
    assert!(
        prompt.contains(&format!("=== snapshot {} 20", hostname())),
        "host and time are filled:\n{prompt}"
    );
    assert!(
        prompt.contains("$ df -h"),
        "the snapshot is filled:\n{prompt}"
    );
    assert!(
        prompt.contains(&format!("opsgate queue of source {}", hostname()))
            && prompt.contains("not instructions"),
        "the queue is filled, marked as data:\n{prompt}"
    );
    let args = std::fs::read_to_string(host.path().join("llm-args")).unwrap();
    assert_eq!(args.trim(), "-p --output-format json");
}

#[test]
fn the_prompt_template_uses_only_the_placeholders_opsgate_cycle_fills() {
    let template = read("examples/prompt-template.md");
    let mut rest = template.as_str();
    let mut found = Vec::new();
    while let Some(i) = rest.find("{{") {
        let end = rest[i..].find("}}").expect("unclosed placeholder") + i + 2;
        found.push(rest[i..end].to_string());
        rest = &rest[end..];
    }
    found.sort();
    let mut want: Vec<String> = PLACEHOLDERS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
    for p in ["{{authority}}", "{{snapshot}}", "{{queue}}"] {
        assert!(
            template.lines().any(|l| l == p),
            "{p} stands on a line of its own (opsgate-cycle replaces that line)"
        );
    }
}

#[test]
fn every_crontab_line_runs_under_cron_s_bare_environment_quietly() {
    let tab = parse_crontab(&read_shipped("examples/deploy/crontab"));
    let path = tab
        .vars
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .expect("the crontab sets PATH: cron's default is /usr/bin:/bin");
    assert!(path.split(':').any(|d| d == "/usr/local/bin"), "{path}");
    assert!(
        tab.vars
            .iter()
            .any(|(k, v)| k == "XDG_STATE_HOME" && v == "/var/lib"),
        "cron jobs need a database path that does not depend on $HOME"
    );
    assert!(
        !tab.vars.iter().any(|(k, _)| k == "OPSGATE_DB"),
        "OPSGATE_DB would override a PostgreSQL db in opsgate.toml"
    );
    assert!(tab.jobs.len() >= 2, "{tab:?}");
    for job in &tab.jobs {
        for part in job.command.split([';', '|', '&']) {
            let words: Vec<&str> = part.split_whitespace().collect();
            if words.first() == Some(&"opsgate") && words.get(1) != Some(&"stats") {
                assert!(words.contains(&"-q"), "`{}` is not quiet", part.trim());
            }
        }
    }

    let host = Host::new(&read("examples/vps-analytics/cycle2.json"));
    let fake = Fake::start();
    std::fs::create_dir_all(&host.etc).unwrap();
    install_telegram(&host, &fake);
    std::fs::copy(
        shipped("examples/prompt-template.md"),
        host.etc.join("prompt.md"),
    )
    .unwrap();

    // The hourly cycle (and any other periodic line) first, then the per-minute line.
    let periodic = host.cron_jobs(&tab, |j| !every_minute(j));
    let minutely = host.cron_jobs(&tab, every_minute);
    assert!(periodic >= 1 && minutely >= 1, "{tab:?}");

    let conn = host.db();
    let (count, sources): (i64, String) = conn
        .query_row(
            "SELECT count(*), group_concat(DISTINCT source) FROM proposals",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(count, 6, "the six proposals of cycle2.json");
    assert_eq!(sources, hostname());
    assert!(fake.count("sendMessage") >= 1, "--notify sent the cards");
    assert_prompt_filled(&host);
    let approved: i64 = conn
        .query_row(
            "SELECT count(*) FROM proposals WHERE state <> 'pending'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(approved, 0, "nothing was approved, so nothing ran");
    // The model ran as its own user, without opsgate's variables.
    let sudo = std::fs::read_to_string(host.path().join("sudo-args")).unwrap();
    assert!(sudo.starts_with("-n -H -u opsgate-llm -- "), "{sudo}");
    let llm_env = std::fs::read_to_string(host.path().join("llm-env")).unwrap();
    assert!(!llm_env.contains("OPSGATE_"), "{llm_env}");
}

/// The token file (0600) and opsgate.toml configured for the fake Bot API.
fn install_telegram(host: &Host, fake: &Fake) {
    use std::os::unix::fs::PermissionsExt;
    let token = host.etc.join("telegram-token");
    std::fs::write(&token, format!("{}\n", fake_telegram::TOKEN)).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let toml = host.subst(&configure(&read_shipped("examples/opsgate.toml"), fake));
    std::fs::write(host.etc.join("opsgate.toml"), toml).unwrap();
}

/// A unit file's `[Section]` -> key -> values (a key may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        unit.entry(section.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    unit
}

fn one<'a>(unit: &'a Unit, file: &str, key: &str) -> &'a str {
    let values = unit
        .get("Service")
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{file}: no {key}= in [Service]"));
    values.last().unwrap()
}

/// A systemd time span (`660`, `11min`, `1h 30min`) in whole minutes.
fn minutes(value: &str) -> u64 {
    let mut secs = 0;
    let mut rest = value.trim();
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("{value}: not a time span"));
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        secs += n * match &rest[..unit_len] {
            "" | "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            other => panic!("{value}: unit {other:?} not handled here"),
        };
        rest = rest[unit_len..].trim_start();
    }
    secs / 60
}

const UNITS: [&str; 3] = [
    "opsgate-serve.service",
    "opsgate-ingest.service",
    "opsgate-ingest.timer",
];

#[test]
fn the_systemd_units_have_a_user_a_state_directory_and_stop_safely() {
    let units: BTreeMap<&str, Unit> = UNITS
        .iter()
        .map(|f| (*f, parse_unit(&read(&format!("examples/deploy/{f}")))))
        .collect();
    for file in ["opsgate-serve.service", "opsgate-ingest.service"] {
        let unit = &units[file];
        assert_eq!(one(unit, file, "User"), "opsgate");
        assert_eq!(one(unit, file, "Group"), "opsgate");
        assert_eq!(one(unit, file, "StateDirectory"), "opsgate");
        let env = &unit["Service"]["Environment"];
        assert!(
            env.iter().any(|e| e == "XDG_STATE_HOME=/var/lib"),
            "{file}: the database must live in the StateDirectory, not under $HOME: {env:?}"
        );
        assert!(
            !env.iter().any(|e| e.starts_with("OPSGATE_DB=")),
            "{file}: OPSGATE_DB would override a PostgreSQL db in opsgate.toml"
        );
        assert!(one(unit, file, "ExecStart").starts_with("/usr/local/bin/"));
    }

    let serve = &units["opsgate-serve.service"];
    let f = "opsgate-serve.service";
    assert!(one(serve, f, "ExecStart").contains(" serve --execute"));
    assert_eq!(
        one(serve, f, "KillMode"),
        "mixed",
        "SIGTERM to opsgate only: the command it waits for must not be killed with it"
    );
    assert!(
        one(serve, f, "RestartPreventExitStatus")
            .split_whitespace()
            .any(|s| s == "78"),
        "a configuration error (78) is not fixed by restarting"
    );
    assert!(
        minutes(one(serve, f, "TimeoutStopSec")) > 10,
        "longer than the default run_timeout (10m)"
    );
    let no_new_privs = serve["Service"].get("NoNewPrivileges");
    assert!(
        no_new_privs.is_none_or(|v| v.iter().all(|v| v == "no" || v == "false")),
        "NoNewPrivileges breaks sudo, which approved root commands need"
    );
    // systemd implies NoNewPrivileges=yes from these for a unit with User= (systemd.exec):
    // any of them breaks sudo just the same, in serve (approved root commands) and in
    // the cycle (the model dropped to its own user).
    for file in ["opsgate-serve.service", "opsgate-ingest.service"] {
        for implies in [
            "LockPersonality",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "SystemCallArchitectures",
            "SystemCallFilter",
            "PrivateDevices",
            "ProtectClock",
            "ProtectHostname",
            "ProtectKernelTunables",
            "ProtectKernelModules",
            "ProtectKernelLogs",
            "RestrictAddressFamilies",
            "RestrictNamespaces",
            "MemoryDenyWriteExecute",
            "NoNewPrivileges",
        ] {
            assert!(
                !units[file]["Service"].contains_key(implies),
                "{file}: {implies}= implies NoNewPrivileges=yes, which breaks sudo"
            );
        }
    }

    let ingest = &units["opsgate-ingest.service"];
    let f = "opsgate-ingest.service";
    assert_eq!(one(ingest, f, "Type"), "oneshot");
    assert!(one(ingest, f, "ExecStart").contains("opsgate-cycle"));
    let limit = one(ingest, f, "TimeoutStartSec");
    assert!(
        limit != "infinity" && minutes(limit) >= 1 && minutes(limit) < 60,
        "a hung LLM call must end before the next hourly cycle: {limit}"
    );
    assert!(units["opsgate-ingest.timer"].contains_key("Timer"));

    // The database is a default (XDG_STATE_HOME), never OPSGATE_DB: a PostgreSQL `db` in
    // opsgate.toml must win over what the deploy files set.
    let tab = parse_crontab(&read("examples/deploy/crontab"));
    assert!(!tab.vars.iter().any(|(k, _)| k == "OPSGATE_DB"));
    // The model runs as its own user; sudo is how the cycle gets there, so the ingest
    // unit must not forbid it.
    let env = &ingest["Service"]["Environment"];
    assert!(
        env.iter()
            .any(|e| e == "OPSGATE_CYCLE_LLM_USER=opsgate-llm"),
        "{env:?}"
    );
    assert!(!ingest["Service"].contains_key("NoNewPrivileges"));
}

#[test]
fn the_systemd_units_pass_systemd_analyze_verify() {
    if !common::require(
        "systemd-analyze",
        common::missing_tool("systemd-analyze", "--version"),
    ) {
        return;
    }
    // verify checks that ExecStart's program exists: the host's /usr/local/bin is the
    // temporary one.
    let host = Host::new("");
    let dir = host.path().join("units");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for f in UNITS {
        let path = dir.join(f);
        std::fs::write(&path, host.subst(&read(&format!("examples/deploy/{f}")))).unwrap();
        files.push(path);
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| UNITS.iter().any(|u| l.contains(u)) || l.contains(&*dir.to_string_lossy()))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{}",
        show(&out)
    );
}

/// README's quick start: the ```sh blocks of each numbered step, and its ```crontab block.
fn quick_start() -> (BTreeMap<u32, Vec<String>>, Vec<String>) {
    let readme = read("README.md");
    let start = readme
        .find("## Five minutes from cron to the first approved card")
        .expect("the quick start section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut steps: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut crontab = Vec::new();
    let mut step = 0;
    let mut block: Option<(String, Vec<String>)> = None;
    for line in section.lines() {
        if block.is_none() {
            if let Some((n, _)) = line.split_once(". ") {
                if let Ok(n) = n.parse::<u32>() {
                    step = n;
                }
            }
        }
        let trimmed = line.trim_start();
        match (&mut block, trimmed.strip_prefix("```")) {
            (None, Some(lang)) => block = Some((lang.to_string(), Vec::new())),
            (Some((lang, lines)), Some("")) => {
                match lang.as_str() {
                    "sh" => steps.entry(step).or_default().push(lines.join("\n")),
                    "crontab" => crontab = lines.clone(),
                    _ => {}
                }
                block = None;
            }
            (Some((_, lines)), _) => lines.push(trimmed.to_string()),
            (None, None) => {}
        }
    }
    (steps, crontab)
}

#[test]
fn the_readme_quick_start_as_written_ends_in_a_completed_command() {
    let (steps, shown_crontab) = quick_start();
    for n in [3, 4, 5] {
        assert!(steps.contains_key(&n), "step {n} has a ```sh block");
    }

    // The bot proposes one harmless command, in Claude Code's envelope.
    let answer = serde_json::json!({
        "type": "result", "subtype": "success", "is_error": false,
        "result": "```json\n{\"summary\": \"disk at 91%\", \"approval_needed\": [{\"id\": \"df-1\", \"command\": \"df -h /\", \"reason\": \"how full is the root filesystem\", \"risk\": \"low\"}]}\n```\n",
    });
    let host = Host::new(&answer.to_string());
    let fake = Fake::start();
    // useradd (step 1) made the home; `crontab` records what it would install.
    std::fs::create_dir_all(host.path().join("var/lib/opsgate")).unwrap();
    let tools = host.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let spool = host.path().join("crontab-opsgate");
    write_script(
        &tools.join("crontab"),
        &format!(
            "#!/bin/sh\n[ \"$1\" = -u ] && [ \"$2\" = opsgate ] || {{ echo \"crontab: expected -u opsgate\" >&2; exit 1; }}\ncp \"$3\" '{}'\n",
            spool.display()
        ),
    );

    // Steps 3 to 5, as pasted by root: the opsgate user is the test's own user, and the
    // token is pasted into step 3's `cat`.
    let (uid, gid) = (id("-u"), id("-g"));
    for (n, blocks) in steps.range(3..=5) {
        for block in blocks {
            let script = host
                .subst(block)
                .replace("-o opsgate", &format!("-o {uid}"))
                .replace("-g opsgate", &format!("-g {gid}"));
            let mut child = Command::new("/bin/sh")
                .args(["-e", "-x", "-c", &script])
                .current_dir(repo())
                .env_clear()
                .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{}\n", fake_telegram::TOKEN).as_bytes())
                .unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "step {n}:\n{script}\n{}", show(&out));
        }
        if *n == 4 {
            // Step 4's edit of opsgate.toml, by hand in real life.
            let path = host.etc.join("opsgate.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, host.subst(&configure(&text, &fake))).unwrap();
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&host.etc.join("telegram-token")), 0o600);
        assert_eq!(
            mode(&host.etc) & 0o007,
            0,
            "/etc/opsgate is not world-readable"
        );
    }

    // Step 5 installed the shipped crontab; README shows its lines as they are.
    let installed = std::fs::read_to_string(&spool).expect("step 5 installs a crontab");
    assert_eq!(installed, read("examples/deploy/crontab"));
    let file_lines: Vec<String> = installed
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut rest = file_lines.iter();
    assert!(!shown_crontab.is_empty(), "README step 5 shows the crontab");
    for line in &shown_crontab {
        assert!(
            rest.any(|l| l == line.trim()),
            "README's crontab line `{line}` is not in examples/deploy/crontab (in this order)"
        );
    }

    // Step 6: cron's hourly line sends the card, the operator taps Approve, and within a
    // minute (or two) the card says the command completed.
    let tab = parse_crontab(&installed);
    host.cron_jobs(&tab, |j| !every_minute(j));
    assert_prompt_filled(&host);
    let messages = fake.messages();
    assert_eq!(messages.len(), 1, "one card: {messages:?}");
    let message = *messages.keys().next().unwrap();
    let id: i64 = host
        .db()
        .query_row("SELECT id FROM proposals", [], |r| r.get(0))
        .unwrap();
    fake.tap(message, ALICE, "alice", &format!("a:{id}"));
    let mut text = String::new();
    for _ in 0..3 {
        host.cron_jobs(&tab, every_minute);
        text = fake.message(message).text;
        if text.contains("completed") {
            break;
        }
    }
    assert!(text.contains("completed"), "{text}");
    assert!(text.contains("exit 0"), "{text}");
    assert!(text.contains("@alice"), "{text}");
    let (state, code): (String, i64) = host
        .db()
        .query_row("SELECT state, exit_code FROM proposals", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((state.as_str(), code), ("completed", 0));

    // The next hourly cycle shows the model what became of its proposal: the queue in
    // its prompt says the command ran, with its exit code and output.
    host.cron_jobs(&tab, |j| !every_minute(j));
    assert_prompt_filled(&host);
    let prompt = host.llm_prompt();
    let queue = &prompt[prompt.find("opsgate queue of source").unwrap()..];
    assert!(queue.contains("In flight: none."), "{queue}");
    assert!(queue.contains(&format!("- #{id} completed")), "{queue}");
    assert!(queue.contains("exit code 0"), "{queue}");
    assert!(queue.contains("```\ndf -h /\n```"), "{queue}");
    assert!(
        queue.contains("stdout, last lines:\n```\nFilesystem"),
        "{queue}"
    );
}

/// The Debian package (`make deb`, then `dpkg -i`; `OPSGATE_DEB=/`): the programs, the
/// systemd units naming them in /usr/bin, the sysusers file, man pages, completions and
/// the examples are where README says; its opsgate is this version, its doctor runs, and
/// its crontab's lines run (every_crontab_line_runs_under_cron_s_bare_environment_quietly
/// and the quick start run through the package's programs under the same variable).
#[test]
fn the_debian_package_installs_its_programs_units_man_pages_and_completions() {
    let root = deb_root();
    if !common::require(
        "deb",
        root.is_none().then(|| {
            "OPSGATE_DEB is not set (make deb; dpkg -i target/debian/opsgate_*.deb; OPSGATE_DEB=/)"
                .to_string()
        }),
    ) {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let root = root.unwrap();
    let mode = |rel: &str| {
        let path = root.join(rel);
        let meta = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("the package installs {}: {e}", path.display()));
        meta.permissions().mode() & 0o777
    };
    for program in ["usr/bin/opsgate", "usr/bin/opsgate-cycle"] {
        assert_eq!(mode(program), 0o755, "{program}");
    }
    let units = root.join("usr/lib/systemd/system");
    for unit in [
        "opsgate-serve.service",
        "opsgate-ingest.service",
        "opsgate-ingest.timer",
    ] {
        assert_eq!(mode(&format!("usr/lib/systemd/system/{unit}")), 0o644);
        let text = std::fs::read_to_string(units.join(unit)).unwrap();
        assert!(
            !text.contains("/usr/local/bin"),
            "{unit} names /usr/local/bin"
        );
        if unit.ends_with(".service") {
            let parsed = parse_unit(&text);
            let exec = one(&parsed, unit, "ExecStart");
            let program = exec.split_whitespace().next().unwrap();
            assert!(program.starts_with("/usr/bin/"), "{unit}: {exec}");
            assert!(
                root.join(program.trim_start_matches('/')).exists(),
                "{unit} runs {program}, which the package installs"
            );
        }
    }
    let mut files = vec![
        "usr/lib/sysusers.d/opsgate.conf".to_string(),
        "usr/share/bash-completion/completions/opsgate".into(),
        "usr/share/zsh/vendor-completions/_opsgate".into(),
        "usr/share/fish/vendor_completions.d/opsgate.fish".into(),
        "usr/share/man/man1/opsgate.1.gz".into(),
    ];
    files.extend(SHIPPED.iter().map(|(_, installed)| installed.to_string()));
    let cli = opsgate::cli::command();
    files.extend(
        cli.get_subcommands()
            .map(|s| format!("usr/share/man/man1/opsgate-{}.1.gz", s.get_name())),
    );
    for file in &files {
        assert_eq!(mode(file), 0o644, "{file}");
    }
    // The examples are the repository's, byte for byte.
    for (rel, installed) in SHIPPED {
        assert_eq!(
            std::fs::read(root.join(installed)).unwrap(),
            std::fs::read(repo().join(rel)).unwrap(),
            "{installed}"
        );
    }
    let opsgate = root.join("usr/bin/opsgate");
    let out = Command::new(&opsgate).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")),
        "{}",
        show(&out)
    );
    // Its doctor, on a database of its own.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&opsgate)
        .arg("doctor")
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("OPSGATE_DB", dir.path().join("opsgate.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok    opsgate "),
        "{}",
        show(&out)
    );
    // Installed for real (`dpkg -i`): the postinst made the users and their directories.
    if root == Path::new("/") {
        for user in ["opsgate", "opsgate-llm"] {
            let out = Command::new("getent")
                .args(["passwd", user])
                .output()
                .unwrap();
            assert!(out.status.success(), "the package creates the user {user}");
        }
        let meta = std::fs::metadata("/var/lib/opsgate").unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // The opsgate user's doctor, with the crontab's environment.
        let out = Command::new("runuser")
            .args([
                "-u",
                "opsgate",
                "--",
                "env",
                "-i",
                "PATH=/usr/bin:/bin",
                "XDG_STATE_HOME=/var/lib",
            ])
            .args([opsgate.to_str().unwrap(), "doctor"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", show(&out));
    }
}
