//! The one rule for tests that need something of their environment (a tool, root, a
//! server): SKIPPED when it is missing, a failure when CI asks for everything. Its own
//! file so that the benches, which include `pg.rs`, share it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// The one rule for a test that needs something of its environment (a tool, root, a
/// server, files beside the checkout): `missing` says what is not there. Without it the
/// test may go on (`true`). With it, the test prints `SKIPPED: <test>: <why>` and returns
/// (`false`), unless CI asks for everything (`OPSGATE_REQUIRE_ALL=1`) or for this need
/// (`OPSGATE_REQUIRE_<NEED>=1`, e.g. `OPSGATE_REQUIRE_PG=1`): then the test fails.
/// `OPSGATE_SKIP_LOG` names a file each skip is appended to, for a summary.
pub fn require(need: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else { return true };
    let var = format!(
        "OPSGATE_REQUIRE_{}",
        need.to_ascii_uppercase().replace('-', "_")
    );
    let forced = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    if forced("OPSGATE_REQUIRE_ALL") || forced(&var) {
        panic!("{need} is required (OPSGATE_REQUIRE_ALL=1 or {var}=1) but {why}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    eprintln!("SKIPPED: {test}: {why}");
    if let Some(log) = std::env::var_os("OPSGATE_SKIP_LOG") {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = writeln!(f, "SKIPPED: {test}: {why}");
        }
    }
    false
}

/// `None` when `program` runs (`program arg`), else why not.
pub fn missing_tool(program: &str, arg: &str) -> Option<String> {
    let ran = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!ran).then(|| format!("no working `{program}` (install it)"))
}

/// `None` when the tests run as root, else why they need it.
pub fn missing_root(for_what: &str) -> Option<String> {
    (!is_root()).then(|| format!("needs root ({for_what})"))
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
