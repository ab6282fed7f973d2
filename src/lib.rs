//! opsgate: LLM ops-bot proposals -> one deduplicated, operator-approved action each.
//!
//! The flow reads one way, each layer importing only those below it (ARCHITECTURE.md):
//! `main -> cmd -> {decisions, run} -> notify -> {store, parse, canon} -> {model,
//! lifecycle} -> {error, time, text, process, policy, config}`. The pipeline, one module
//! per stage: [`parse`] (LLM text -> items), [`canon`] (command -> `cmd_hash` + logical
//! keys), [`store`] (the lifecycle in SQLite or PostgreSQL, the only SQL), [`notify`] (cards; each chat channel's
//! folder holds its async code), [`decisions`] (button presses -> lifecycle
//! changes), [`run`] (executes what was approved).

pub mod canon;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod decisions;
pub mod error;
pub mod lifecycle;
pub mod mask;
pub mod model;
pub mod notify;
pub mod parse;
pub mod policy;
pub mod process;
pub mod redact;
pub mod run;
pub mod store;
pub mod text;
pub mod time;

#[cfg(test)]
mod layers {
    //! ARCHITECTURE.md's layer diagram stays true: every `crate::` path in `src/` names a
    //! module of the importer's own layer or a lower one, and no two modules import each
    //! other through a cycle.

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The diagram's layers, top first: `main`, then each `└ a, b, c   what they do` line.
    fn diagram() -> Vec<Vec<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
        let block = doc
            .split("## Layers")
            .nth(1)
            .and_then(|s| s.split("```").nth(1))
            .expect("ARCHITECTURE.md has the layer diagram");
        block
            .lines()
            .map(|l| l.trim_start().trim_start_matches('└').trim())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let names = l.split("  ").next().unwrap_or(l);
                names
                    .split(',')
                    .map(|n| n.trim().trim_end_matches("/*").to_string())
                    .collect()
            })
            .collect()
    }

    /// The top-level modules each file of `src/` names through `crate::`, outside comments.
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let src = stack[0].clone();
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let rel = path.strip_prefix(&src).expect("under src");
                let first = rel.components().next().expect("a component");
                let module = first
                    .as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string();
                if module == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("a source file");
                let code: String = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let used = out.entry(module).or_default();
                for (i, _) in code.match_indices("crate::") {
                    let rest = &code[i + "crate::".len()..];
                    if let Some(group) = rest.strip_prefix('{') {
                        let group = &group[..group.find('}').unwrap_or(group.len())];
                        for part in group.split(',') {
                            let name: String = part
                                .trim()
                                .chars()
                                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                                .collect();
                            if !name.is_empty() {
                                used.insert(name);
                            }
                        }
                    } else {
                        let name: String = rest
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        used.insert(name);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn imports_follow_the_layer_diagram_and_never_cycle() {
        let layers = diagram();
        let layer_of: BTreeMap<&str, usize> = layers
            .iter()
            .enumerate()
            .flat_map(|(n, names)| names.iter().map(move |m| (m.as_str(), n)))
            .collect();
        let imports = imports();
        let mut wrong = Vec::new();
        for (module, used) in &imports {
            let Some(&mine) = layer_of.get(module.as_str()) else {
                wrong.push(format!(
                    "{module} is not in ARCHITECTURE.md's layer diagram"
                ));
                continue;
            };
            for target in used.iter().filter(|t| *t != module) {
                match layer_of.get(target.as_str()) {
                    Some(&theirs) if theirs < mine => {
                        wrong.push(format!("{module} imports {target}, a higher layer"))
                    }
                    Some(_) => {}
                    None => wrong.push(format!("{module} imports {target}, not in the diagram")),
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        // No cycle: repeatedly drop modules that import nothing left.
        let mut left: BTreeMap<&str, BTreeSet<&str>> = imports
            .iter()
            .map(|(m, u)| {
                (
                    m.as_str(),
                    u.iter().map(String::as_str).filter(|t| t != m).collect(),
                )
            })
            .collect();
        loop {
            let leaves: Vec<&str> = left
                .iter()
                .filter(|(_, u)| u.iter().all(|t| !left.contains_key(t)))
                .map(|(m, _)| *m)
                .collect();
            if leaves.is_empty() {
                break;
            }
            for m in leaves {
                left.remove(m);
            }
        }
        assert!(
            left.is_empty(),
            "modules importing each other in a cycle: {left:?}"
        );
    }
}
