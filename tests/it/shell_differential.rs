//! Differential test against the shell that runs approved commands: whenever two
//! commands get the same cmd_hash, running each under `/bin/sh` must do the same thing.
//!
//! The corpus is every command in the real LLM samples, the example inputs, the fuzz
//! seeds and the card-contract findings, plus spelling mutations of each (blanks, quotes,
//! newlines, carriage returns, Unicode spaces, comments). Each command runs in a chroot
//! holding only dash and shims that print their name, arguments and stdin, as an
//! unprivileged user, in a fresh directory; what it prints, its exit code and the files
//! it leaves are compared within each cmd_hash group. Needs root for chroot (as on CI);
//! without it the test says SKIPPED (and fails under `OPSGATE_REQUIRE_ALL=1`).
#![allow(clippy::unwrap_used)]

use super::common;
use opsgate::canon::canonicalize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHIMS: &[&str] = &[
    "docker",
    "docker-compose",
    "podman",
    "systemctl",
    "service",
    "journalctl",
    "kubectl",
    "k3s",
    "crictl",
    "nerdctl",
    "sudo",
    "env",
    "nohup",
    "timeout",
    "nice",
    "ionice",
    "stdbuf",
    "rm",
    "ls",
    "cat",
    "sed",
    "awk",
    "find",
    "truncate",
    "du",
    "df",
    "grep",
    "head",
    "tail",
    "sort",
    "uniq",
    "xargs",
    "date",
    "sleep",
    "mkdir",
    "cp",
    "mv",
    "chmod",
    "chown",
    "ps",
    "curl",
    "wc",
    "tee",
    "touch",
    "cut",
    "tr",
    "tar",
    "gzip",
    "ln",
    "mount",
    "umount",
    "free",
    "uptime",
    "ss",
    "netstat",
    "ip",
    "apt-get",
    "apt",
    "fstrim",
    "logrotate",
    "setsid",
    "bash",
    "psql",
    "mysql",
    "redis-cli",
    "clickhouse-client",
    "nginx",
    "id",
    "whoami",
];

/// Prints its name, its arguments and its stdin, in one write: a shell reading this
/// output as a script has all of it at once, so nothing races for the rest of the pipe.
const SHIM: &str = r#"#!/bin/sh
out="${0##*/}"
for a in "$@"; do out="$out [$a]"; done
nl='
'
while IFS= read -r l || [ -n "$l" ]; do out="$out$nl<$l"; done
printf '%s\n' "$out"
"#;

/// A directory with dash, the libraries it needs, and the shims.
struct Template {
    dir: tempfile::TempDir,
}

impl Template {
    fn build() -> Template {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::copy("/bin/dash", root.join("bin/sh")).unwrap();
        let ldd = Command::new("ldd").arg("/bin/dash").output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x..)" or "/lib64/ld-linux... (0x..)"
            let path = line
                .split_whitespace()
                .find(|w| w.starts_with('/'))
                .map(PathBuf::from);
            if let Some(path) = path {
                let dest = root.join(path.strip_prefix("/").unwrap());
                std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
                std::fs::copy(&path, &dest).unwrap();
            }
        }
        for name in SHIMS {
            let p = root.join("bin").join(name);
            std::fs::write(&p, SHIM).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Template { dir }
    }

    /// A fresh sandbox root: the template's directories hard-linked, the root itself
    /// writable by the unprivileged user the command runs as.
    fn fresh(&self, into: &Path) {
        link_tree(self.dir.path(), into);
        std::os::unix::fs::chown(into, Some(65534), Some(65534)).unwrap();
    }
}

fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            link_tree(&entry.path(), &target);
        } else {
            std::fs::hard_link(entry.path(), &target).unwrap();
        }
    }
}

/// What a command did.
#[derive(Debug, PartialEq, Eq)]
struct Observed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    files: BTreeMap<String, String>,
}

fn observe(template: &Template, scratch: &Path, n: usize, command: &str) -> Observed {
    let root = scratch.join(format!("run{n}"));
    template.fresh(&root);
    // An absolute path: the command's own PATH is the sandbox's.
    let chroot = ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap();
    let mut child = Command::new(chroot)
        .arg("--userspec=65534:65534")
        .arg(&root)
        .args(["/bin/sh", "-c", command])
        .env_clear()
        .env("PATH", "/bin")
        .env("HOME", "/")
        .env("LANG", "C")
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = child.wait_with_output().unwrap();
    // dash names the line of an error (a newline and a `;` are the same separator) and
    // the token a syntax error stopped at (a newline or the end of the text): a syntax
    // error is the same behaviour either way.
    let line_numbers = regex::Regex::new(r"(?m)^(/bin/)?sh: \d+: ").unwrap();
    let syntax = regex::Regex::new(r"(?m)Syntax error: .*$").unwrap();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["bin", "lib", "lib64", "usr"].contains(&name.as_str()) {
            continue;
        }
        let content = std::fs::read(entry.path()).unwrap_or_default();
        files.insert(name, String::from_utf8_lossy(&content).into_owned());
    }
    Observed {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: syntax
            .replace_all(
                &line_numbers.replace_all(&String::from_utf8_lossy(&out.stderr), "sh: N: "),
                "Syntax error",
            )
            .into_owned(),
        files,
    }
}

/// Every command in the samples, the example inputs, the fuzz seeds and the findings.
fn corpus() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut commands = BTreeSet::new();
    let mut inputs: Vec<PathBuf> = Vec::new();
    for dir in [
        "examples/vps-analytics",
        "examples/llm-output",
        "fuzz/seeds/parse",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            inputs.push(e.unwrap().path());
        }
    }
    for path in inputs {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if let Ok(parsed) = opsgate::parse::parse_text(&text, &Default::default()) {
            commands.extend(parsed.items.into_iter().map(|i| i.command));
        }
    }
    for e in std::fs::read_dir(root.join("fuzz/seeds/canon")).unwrap() {
        if let Ok(text) = std::fs::read_to_string(e.unwrap().path()) {
            commands.insert(text);
        }
    }
    for finding in [
        "df -h /tmp\u{a0}# ; rm -rf X",
        "echo ok\r# ; echo INJECTED",
        "sed 's/^#//' <<EOF | sh\n#echo one\n  echo   'two  three'\nEOF",
        "sed 's/^#//' <<EOF | sh\n#echo four\nEOF\necho after",
        "cat <<-EOF\n\tindented\n\t\tmore\n\tEOF",
        "cat <<'EOF'\n$HOME `x` \\$y\nEOF",
        "cat <<EOF; cat <<'B' && echo x\na $HOME\nEOF\nb\nB\necho done",
        "PATH=/a:~/bin:~ sh -c 'echo $PATH'",
        "X=~/a:~/b; echo $X",
        "echo 'oops   here",
        "echo $'a\\tb'",
        "echo $\"x\"",
        "echo \"a$'b\"",
        "echo $(echo a # )\n)",
        "docker -H ssh://prod-db restart postgres",
        "docker compose -p shop stop web",
    ] {
        commands.insert(finding.to_string());
    }
    commands.extend(reserved_and_separators());
    commands
}

/// Issue 18, finding 5: quoted reserved words and separator edge cases, each with the
/// spellings that must (or must not) share its hash. Each is also mutated below.
fn reserved_and_separators() -> Vec<String> {
    let mut commands: Vec<String> = [
        "if false; then echo yes; else echo no; fi",
        "if false; then echo yes; \"else\" echo no; fi",
        "if false; then echo yes; 'else' echo no; fi",
        "if false; then echo yes; \\else echo no; fi",
        "if true; then echo a; fi",
        "if true; then echo a; \\fi",
        "if true; then echo a; 'fi'; fi",
        "if true; 'then' echo a; fi",
        "while false; do echo a; done; echo b",
        "while false; \"do\" echo a; done; echo b",
        "for i in a b; do echo $i; done",
        "for 'i' in a b; do echo $i; done",
        "for \\i in a b; do echo $i; done",
        "for i in a b; do echo $i; 'done'",
        "for i\ndo echo $i; done",
        "for i; do echo $i; done",
        "for i\nin a b\ndo\necho $i\ndone",
        "case a in a) echo a;; esac",
        "case a in a) echo a;; 'esac'",
        "case a\nin\na)\necho a\n;;\nesac",
        "case a in (a) echo a;; *) echo b;; esac",
        "case a in a) ;; esac",
        // A background job's output races the rest: each waits for it.
        "echo a & ;",
        "echo a & wait; echo b",
        "echo a &\nwait; echo b",
        "echo a ;; echo b",
        "echo a; ;",
        "echo a;",
        "; echo a",
        "echo a\n;",
        "echo a\n\n",
        "\n\necho a",
        "{\necho a\n}",
        "{ echo a; }",
        "{ ;echo a; }",
        "{ echo a }",
        "'{' echo a; }",
        "{ echo a; '}'",
        "{ echo a; } }",
        "! echo a",
        "'!' echo a",
        "\\! echo a",
        "! ! echo a",
        "echo a | ! echo b",
        "( ;echo a)",
        "(echo a)",
        "(\necho a\n)",
        "(echo a;)",
        "( )",
        "f() { echo f; }; f",
        "f()\n{\necho f\n}\nf",
        "'f'() { echo f; }; f",
        "f() echo g; f",
        "X=1 if true; then echo y; fi",
        "echo a &&\n\necho b",
        "echo a && echo b",
        "echo a\n)",
        "echo a\necho b )",
        "alias ls=echo\nls x",
        "alias ls=echo; ls x",
        "alias ls=echo\n\\ls x",
        "echo \"done\"",
        "echo done",
        "echo a >",
        "echo a 10>f; cat f",
        "echo a |& cat",
        "echo a &> f; wait; cat f",
        "time echo a",
        "\"time\" echo a",
        // Issue 24: optional separators, redirections among words, line continuations,
        // `${NAME}`.
        "(echo a;)",
        "(echo a;\n)",
        "{ if true; then echo a; fi }",
        "{ if true; then echo a; fi; }",
        "if { true; } then echo a; fi",
        "for i do echo $i; done",
        "case a in a) echo a; esac",
        "case a in a) echo a\nesac",
        "case a in a) echo a; ;; esac",
        "case a in a) esac",
        "case a in (a) echo a;; esac",
        "case esac in (esac) echo a;; esac",
        "case esac in esac) echo a;; esac",
        "{ echo a & }; wait; echo b",
        "echo a >f b; cat f",
        "echo a b >f; cat f",
        ">f echo a b; cat f",
        "echo >f a 2>&1 b; cat f",
        "echo a >f 2>&1; cat f",
        "echo a 2>&1 >f; cat f",
        "ls nothing >f 2>&1; cat f",
        "ls nothing 2>&1 >f; cat f",
        "cat <<EOF a\nx\nEOF",
        "cat a <<EOF\nx\nEOF",
        "X=1 >f echo a; cat f",
        "X=1 echo a >f; cat f",
        ">f if true; then echo a; fi",
        "b=1; echo a\\\n$b",
        "b=1; echo a$b",
        "HOME=x; echo $HO\\\nME",
        "echo $\\\n(echo x)",
        "b=1; echo ${b} ${b}.txt ${b}c",
        "b=1; echo $b $b.txt $bc",
        "set -- a b; echo ${1} ${@} ${1}0",
        "set -- a b; echo $1 $@ $10",
        // Issue 24, part 2: commands inside `$(..)` and backticks, `${NAME}` inside double
        // quotes, a subshell that is all of another.
        "echo $(echo  a   b)",
        "echo $(echo a b)",
        "echo $( echo a b; )",
        "echo `echo a b`",
        "echo `echo  a   b`",
        "echo $(echo a\necho b)",
        "echo $(echo a; echo b)",
        "echo `echo a; echo b`",
        "echo \"$(echo 'a  b')\"",
        "echo \"`echo \\\"a  b\\\"`\"",
        "echo \"$(echo \"a  b\")\"",
        "echo `echo \\\"a\\\"`",
        "echo $(echo \"a\")",
        "echo `echo \\`echo x\\``",
        "echo $(echo $(echo x))",
        "echo `echo \\$HOME`",
        "echo `echo \\\\$HOME`",
        "echo $(echo $HOME)",
        "echo $(echo \\$HOME)",
        "echo `echo 'a\\\nb'`",
        "echo $(echo 'a\\\nb')",
        "echo $(echo a # c\n)",
        "echo $(echo a >f b); cat f",
        "echo $(echo a b >f); cat f",
        "echo $( (echo a) )",
        "echo `(echo a)`",
        "echo $((1+2)) $(( 1 + 2 ))",
        "echo $(case a in (a) echo x;; esac)",
        "b=1; echo \"${b}\" \"${b}.txt\" \"${b}c\"",
        "b=1; echo \"$b\" \"$b.txt\" \"$bc\"",
        "set -- a b; echo \"${1}\" \"${10}\" \"${@}\"",
        "set -- a b; echo \"$1\" \"$10\" \"$@\"",
        "( (echo a) )",
        "((echo a))",
        "(echo a)",
        "( ( (echo a) ) ) >f; cat f",
        "(echo a) >f; cat f",
        "( (echo a) >f ); cat f",
        "( (echo a); )",
        "( (exit 3) ); echo $?",
        "(exit 3); echo $?",
        "( (echo a) & wait )",
    ]
    .into_iter()
    .map(str::to_string)
    .collect();
    // Each reserved word quoted three ways where sh would read it as one.
    for word in [
        "if", "then", "fi", "do", "done", "{", "}", "!", "in", "case", "esac",
    ] {
        for quoted in [
            format!("'{word}'"),
            format!("\"{word}\""),
            format!("\\{word}"),
        ] {
            commands.push(format!("{quoted} echo x; echo y"));
            commands.push(format!("echo y; {quoted}"));
        }
        commands.push(format!("{word} echo x; echo y"));
    }
    commands
}

/// Spelling mutations: some keep the meaning (and must keep the hash), some change it
/// (and must change the hash, or behave the same).
fn mutations(c: &str) -> Vec<String> {
    vec![
        c.replace(' ', "  "),
        c.replace(' ', "\t"),
        format!("  {c}\n"),
        c.replace('\'', "\""),
        c.replace('"', "'"),
        c.replace('\'', ""),
        c.replace("; ", "\n"),
        c.replace('\n', " ; "),
        c.replace(" #", "\r#"),
        format!("{c}\r"),
        c.replacen(' ', "\u{a0}", 1),
        format!("{c} # a comment"),
        format!("{c}\n# a comment"),
        c.replace("&&", " && "),
        c.replace(" | ", "|"),
        c.replace('\t', "        "),
        // Newlines where sh skips them, and where they end a command.
        c.replace("; ", " ;\n"),
        c.replace("{ ", "{\n"),
        c.replace("then ", "then\n"),
        c.replace(";; ", "\n;;\n"),
        c.replace('\n', "\n\n"),
        quote_word(c, 0, '\''),
        quote_word(c, 1, '"'),
        quote_word(c, 2, '\\'),
        quote_word(c, 1, '\''),
    ]
}

/// The `n`th plain word (letters, digits, `./_-`) quoted in another style: `'word'`,
/// `"word"`, or with its second letter backslash-escaped.
fn quote_word(c: &str, n: usize, style: char) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "./_-".contains(ch))
    };
    let mut seen = 0;
    let words: Vec<String> = c
        .split(' ')
        .map(|w| {
            if !plain(w) {
                return w.to_string();
            }
            seen += 1;
            if seen - 1 != n {
                return w.to_string();
            }
            match style {
                '\\' if w.len() > 1 => format!("{}\\{}", &w[..1], &w[1..]),
                '\\' => w.to_string(),
                q => format!("{q}{w}{q}"),
            }
        })
        .collect();
    words.join(" ")
}

#[test]
fn commands_with_one_cmd_hash_behave_the_same_under_sh() {
    let missing = common::missing_root("chroot").or_else(|| {
        (!Path::new("/bin/dash").exists()).then(|| "no /bin/dash (install dash)".to_string())
    });
    if !common::require("root", missing) {
        return;
    }
    let template = Template::build();
    let scratch = tempfile::tempdir().unwrap();
    let mut all = BTreeSet::new();
    for c in corpus() {
        for m in mutations(&c) {
            // Two mutations on top of each other, too.
            all.extend(mutations(&m).into_iter().step_by(3));
            all.insert(m);
        }
        all.insert(c);
    }
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in &all {
        if c.contains('\0') || c.trim().is_empty() {
            continue;
        }
        groups
            .entry(canonicalize(c).cmd_hash)
            .or_default()
            .push(c.clone());
    }
    let shared: Vec<&Vec<String>> = groups.values().filter(|g| g.len() > 1).collect();
    let mut runs = 0;
    for group in &shared {
        let first = observe(&template, scratch.path(), runs, &group[0]);
        runs += 1;
        for other in &group[1..] {
            let seen = observe(&template, scratch.path(), runs, other);
            runs += 1;
            assert_eq!(
                first, seen,
                "same cmd_hash, different behaviour under sh:\n  {:?}\n  {:?}",
                group[0], other
            );
        }
    }
    eprintln!(
        "{} commands, {} cmd_hash groups of two or more, {runs} runs under sh: all equal",
        all.len(),
        shared.len()
    );
    assert!(shared.len() > 50, "the corpus must exercise shared hashes");
}
