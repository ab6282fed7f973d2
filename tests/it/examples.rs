//! Every example input ingests cleanly, so the examples never rot.
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use std::path::Path;

fn inputs() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples/llm-output", "examples/vps-analytics"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap() != "prompt.txt" {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_input_ingests_with_no_invalid_items() {
    let files = inputs();
    assert!(files.len() >= 12, "{files:?}");
    for path in files {
        let env = Env::new();
        let input = std::fs::read_to_string(&path).unwrap();
        let out = env
            .cmd(&["ingest", "--json", "--strict"])
            .stdin(input)
            .output();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            stderr(&out)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["invalid"], 0, "{}", path.display());
        let quiet = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("quiet");
        assert_eq!(
            v["proposals"].as_u64().unwrap() == 0,
            quiet,
            "{}",
            path.display()
        );
    }
}

#[test]
fn every_envelope_yields_the_same_proposals() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/llm-output");
    let mut seen = None;
    for path in inputs().into_iter().filter(|p| p.starts_with(&dir)) {
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("quiet")
        {
            continue;
        }
        let env = Env::new();
        env.ingest("h", &std::fs::read_to_string(&path).unwrap());
        let hashes: Vec<String> = env
            .list_json(&[])
            .iter()
            .map(|p| p["cmd_hash"].as_str().unwrap().to_string())
            .collect();
        match &seen {
            None => seen = Some(hashes),
            Some(first) => assert_eq!(first, &hashes, "{}", path.display()),
        }
    }
}

#[test]
fn the_example_config_loads_and_its_deny_list_blocks_what_it_says() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/opsgate.toml");
    let env = Env::new();
    let input = cycle(
        0,
        &[
            "rm -rf /",
            "mkfs.ext4 /dev/sdb1",
            "dd if=/dev/zero of=/dev/sda bs=1M",
            "docker system prune -af --volumes",
            "docker restart web",
            "rm -rf /tmp/cache",
        ],
    );
    let out = env
        .cmd(&["ingest", "--json"])
        .env("OPSGATE_CONFIG", config)
        .stdin(input)
        .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["denied"], 4, "{v}");
    assert_eq!(v["new"], 2);
}
