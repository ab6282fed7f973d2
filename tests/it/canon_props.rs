//! Property tests for the canonicalizer: idempotent, meaning-preserving, never panics.
#![allow(clippy::unwrap_used)]

use opsgate::canon::{canonicalize, render_tokens, tokenize};
use proptest::prelude::*;

/// Shell-ish fragments, including the ones real LLM output uses.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9._/-]{0,8}",
        Just("docker".to_string()),
        Just("stop".to_string()),
        Just("\"$(docker inspect --format '{{.LogPath}}' clickhouse)\"".to_string()),
        Just("$LOG".to_string()),
        Just("\"$LOG\"".to_string()),
        Just("LOG=$(date +%s)".to_string()),
        Just("X='a b'".to_string()),
        Just("'{{.Names}}'".to_string()),
        Just("*.log".to_string()),
        Just("~/x".to_string()),
        Just("`uname -r`".to_string()),
        Just("2>&1".to_string()),
        Just(">".to_string()),
        Just(">>".to_string()),
        Just("&&".to_string()),
        Just("||".to_string()),
        Just(";".to_string()),
        Just("|".to_string()),
        Just("\\\"".to_string()),
        Just("it\\'s".to_string()),
        Just("$'x\\ty'".to_string()),
        Just("L$\"OG\"".to_string()),
        Just("$".to_string()),
        // What sh treats as word characters and a tokenizer might not.
        Just("\r".to_string()),
        Just("\r#".to_string()),
        Just("a\u{a0}#".to_string()),
        Just("\u{2003}".to_string()),
        Just("\u{3000}x".to_string()),
        Just("#".to_string()),
        Just("PATH=/a:~/b".to_string()),
        Just("<<EOF".to_string()),
        Just("sh -c 'docker stop web'".to_string()),
        Just("bash -lc \"systemctl restart x\"".to_string()),
        Just("sh -c".to_string()),
        Just("sudo sh -c 'kubectl -n a delete pod b".to_string()),
        Just("kubectl".to_string()),
        Just("systemctl".to_string()),
        Just("-n".to_string()),
        Just("<<-'E'".to_string()),
        // Reserved words, quoted and bare, and the separators around them.
        Just("if".to_string()),
        Just("then".to_string()),
        Just("\\fi".to_string()),
        Just("fi".to_string()),
        Just("\"else\"".to_string()),
        Just("{".to_string()),
        Just("'}'".to_string()),
        Just("}".to_string()),
        Just("!".to_string()),
        Just("'!'".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("&".to_string()),
        Just(";;".to_string()),
        Just("\n".to_string()),
        Just("for i in".to_string()),
        Just("do".to_string()),
        Just("done".to_string()),
        Just("case x in".to_string()),
        Just("esac".to_string()),
        "'[ -~]{0,6}'".prop_map(|s| s.replace('\'', "")),
        "\"[ a-z=:%]{0,6}\"",
        "[a-z]{1,3}\"[ a-z]{0,3}\"[a-z]{0,3}",
    ]
}

/// A here-document with a body of shell-looking lines, inside a command line.
fn heredoc() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("cat"),
            Just("sed 's/^#//'"),
            Just("sh"),
            Just("docker exec -i db psql")
        ],
        prop_oneof![Just("<<"), Just("<<-"), Just("2<<")],
        prop_oneof![Just("EOF"), Just("'EOF'"), Just("\"END\""), Just("\\EOF")],
        prop::collection::vec(
            prop_oneof![
                "[ \t]{0,2}[a-z#$'\"() |;&<>-]{0,12}",
                Just("\tindented".to_string()),
                Just("EOFX".to_string()),
                Just(" EOF".to_string()),
                Just("docker stop web".to_string()),
                Just("rm -rf /srv".to_string()),
            ],
            0..5,
        ),
        prop_oneof![
            Just(""),
            Just(" | sh"),
            Just(" && echo done"),
            Just("; echo x"),
            Just(" > out")
        ],
        prop_oneof![Just(""), Just("\necho after"), Just("\n")],
    )
        .prop_map(|(cmd, op, delim, lines, tail, after)| {
            let end = delim.trim_matches(['\'', '"', '\\']);
            let mut s = format!("{cmd} {op}{delim}{tail}\n");
            for l in lines {
                s.push_str(&l);
                s.push('\n');
            }
            if op.ends_with('-') {
                s.push('\t');
            }
            s.push_str(end);
            s.push_str(after);
            s
        })
}

fn command() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(fragment(), 1..10),
        prop::collection::vec(
            prop_oneof![Just(" "), Just("  "), Just("\t"), Just(" \n ")],
            10,
        ),
    )
        .prop_map(|(frags, seps)| {
            let mut s = String::new();
            for (i, f) in frags.iter().enumerate() {
                if i > 0 {
                    s.push_str(seps[i % seps.len()]);
                }
                s.push_str(f);
            }
            s
        })
}

/// A command line from known families and words, to wrap in nested shells.
fn family_line() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("docker stop"),
            Just("systemctl restart"),
            Just("kubectl -n shop delete pod"),
            Just("kubectl rollout undo deploy/"),
            Just("service x"),
            Just("crictl rm"),
            Just("journalctl --vacuum-size=1G"),
        ],
        "[a-z]{1,6}",
    )
        .prop_map(|(head, target)| format!("{head} {target}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn canonicalizing_twice_changes_nothing(cmd in command()) {
        let once = canonicalize(&cmd);
        let twice = canonicalize(&once.canonical);
        prop_assert_eq!(&once.canonical, &twice.canonical);
        prop_assert_eq!(&once.cmd_hash, &twice.cmd_hash);
        prop_assert_eq!(&once.logical_keys, &twice.logical_keys);
        // The canonical form of a command sh accepts is one sh accepts: an opaque text
        // is identified by its bytes, which would then be the canonical form's.
        prop_assert_eq!(once.fallback.is_some(), twice.fallback.is_some(), "{:?}", once.canonical);
    }

    #[test]
    fn the_canonical_form_tokenizes_back_to_the_same_words(cmd in command()) {
        if let Ok(tokens) = tokenize(&cmd) {
            let canonical = render_tokens(&tokens);
            let again = tokenize(&canonical).unwrap();
            prop_assert_eq!(tokens, again, "canonical: {}", canonical);
        }
    }

    #[test]
    fn heredoc_bodies_tokenize_back_word_for_word(cmd in heredoc()) {
        let once = canonicalize(&cmd);
        prop_assert_eq!(&canonicalize(&once.canonical).canonical, &once.canonical);
        if let Ok(tokens) = tokenize(&cmd) {
            let canonical = render_tokens(&tokens);
            let again = tokenize(&canonical);
            prop_assert_eq!(Ok(tokens), again, "canonical: {:?}", canonical);
            // A body never yields keys: only the command line does.
            prop_assert!(once.logical_keys.iter().all(|k| !k.contains("web") || cmd.lines().next().unwrap_or("").contains("web")));
        }
    }

    #[test]
    fn nested_shells_yield_their_inner_keys_to_a_bounded_depth(line in family_line(), depth in 1usize..5, shell in prop_oneof![Just("sh -c"), Just("bash -lc"), Just("sudo sh -c")]) {
        // Wrap `line` in `depth` nested shells, quoting each level for the next.
        let mut wrapped = line.clone();
        for _ in 0..depth {
            wrapped = format!("{shell} '{}'", wrapped.replace('\'', "'\\''"));
        }
        // Under sudo the line runs as root: a per-user target (kubectl's kubeconfig) says so.
        let inner = match shell.strip_suffix("sh -c") {
            Some("sudo ") => canonicalize(&format!("sudo {line}")),
            _ => canonicalize(&line),
        };
        let outer = canonicalize(&wrapped);
        prop_assert_eq!(&canonicalize(&outer.canonical).canonical, &outer.canonical);
        if depth <= 2 {
            prop_assert_eq!(&outer.logical_keys, &inner.logical_keys, "{}", wrapped);
        } else {
            prop_assert!(outer.logical_keys.is_empty(), "{}", wrapped);
        }
        // Cut anywhere, it never panics.
        for cut in [wrapped.len() / 3, wrapped.len() / 2, wrapped.len() - 1] {
            if wrapped.is_char_boundary(cut) {
                let _ = canonicalize(&wrapped[..cut]);
            }
        }
    }

    #[test]
    fn arbitrary_text_never_panics_and_stays_idempotent(cmd in "\\PC{0,60}") {
        let once = canonicalize(&cmd);
        prop_assert_eq!(once.cmd_hash.len(), 12);
        prop_assert_eq!(canonicalize(&once.canonical).canonical, once.canonical);
    }

    #[test]
    fn extra_spaces_between_words_never_change_the_hash(words in prop::collection::vec("[a-z0-9_./:-]{1,8}", 1..8), gaps in prop::collection::vec(1usize..4, 8)) {
        let single = words.join(" ");
        let mut spaced = String::new();
        for (i, w) in words.iter().enumerate() {
            if i > 0 { spaced.push_str(&" ".repeat(gaps[i % gaps.len()])); }
            spaced.push_str(w);
        }
        let (one, other) = (canonicalize(&single), canonicalize(&spaced));
        // A line sh rejects (`do -`, `in a`: a reserved word where a command starts) is
        // opaque, identified by its exact bytes, spaces included: the property is about
        // the commands sh runs. Whether a line is opaque never depends on the spacing.
        prop_assert_eq!(one.fallback.is_some(), other.fallback.is_some(), "{:?}", single);
        if one.fallback.is_none() {
            prop_assert_eq!(one.cmd_hash, other.cmd_hash);
        }
    }
}

/// A valid sh program, written once with `;` and once with newlines wherever sh allows
/// one: both spellings are one command.
#[derive(Debug, Clone)]
enum Sh {
    Simple(String),
    Brace(Vec<Sh>),
    Subshell(Vec<Sh>),
    If(Vec<Sh>, Vec<Sh>, Option<Vec<Sh>>),
    While(Vec<Sh>, Vec<Sh>),
    For(Vec<Sh>),
    Case(Vec<Sh>),
    And(Box<Sh>, Box<Sh>),
    Not(Box<Sh>),
    Function(Vec<Sh>),
}

fn sh() -> impl Strategy<Value = Sh> {
    let leaf = prop_oneof![
        Just("echo a"),
        Just("docker stop web"),
        Just("echo 'fi' \"then\" \\done"),
        Just("X=1 true"),
        Just("cat > /tmp/x"),
        Just("ls $HOME | wc -l"),
        Just("sleep 1 &"),
    ]
    .prop_map(|s| Sh::Simple(s.to_string()));
    leaf.prop_recursive(3, 24, 3, |inner| {
        let list = prop::collection::vec(inner.clone(), 1..3);
        prop_oneof![
            list.clone().prop_map(Sh::Brace),
            list.clone().prop_map(Sh::Subshell),
            (list.clone(), list.clone(), prop::option::of(list.clone()))
                .prop_map(|(a, b, c)| Sh::If(a, b, c)),
            (list.clone(), list.clone()).prop_map(|(a, b)| Sh::While(a, b)),
            list.clone().prop_map(Sh::For),
            list.clone().prop_map(Sh::Case),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Sh::And(Box::new(a), Box::new(b))),
            inner.clone().prop_map(|a| Sh::Not(Box::new(a))),
            list.prop_map(Sh::Function),
        ]
    })
}

/// Writes `cmd` on one line (`lines` false) or over many.
fn write_sh(cmd: &Sh, lines: bool) -> String {
    let list = |cmds: &[Sh]| {
        let parts: Vec<String> = cmds.iter().map(|c| write_sh(c, lines)).collect();
        // `&` already ends a command: no `;` after it.
        let mut out = String::new();
        for (i, p) in parts.iter().enumerate() {
            out.push_str(p);
            if i + 1 < parts.len() {
                out.push_str(match (p.ends_with('&'), lines) {
                    (true, false) => " ",
                    (_, true) => "\n",
                    (false, false) => "; ",
                });
            }
        }
        out
    };
    // The end of a list before a reserved word: `;` or a newline (after `&`, nothing).
    let end = |cmds: &[Sh]| {
        let l = list(cmds);
        if lines {
            format!("{l}\n")
        } else if l.ends_with('&') {
            format!("{l} ")
        } else {
            format!("{l}; ")
        }
    };
    let nl = if lines { "\n" } else { " " };
    match cmd {
        Sh::Simple(s) => s.clone(),
        Sh::Brace(l) => format!("{{{nl}{}}}", end(l)),
        Sh::Subshell(l) => {
            if lines {
                format!("(\n{}\n)", list(l))
            } else {
                format!("({})", list(l))
            }
        }
        Sh::If(a, b, c) => {
            let mut s = format!("if {}then{nl}{}", end(a), end(b));
            if let Some(c) = c {
                s.push_str(&format!("else{nl}{}", end(c)));
            }
            s.push_str("fi");
            s
        }
        Sh::While(a, b) => format!("while {}do{nl}{}done", end(a), end(b)),
        Sh::For(l) => {
            let head = if lines {
                "for i in a 'b c'\ndo\n"
            } else {
                "for i in a 'b c'; do "
            };
            format!("{head}{}done", end(l))
        }
        Sh::Case(l) => {
            if lines {
                format!("case $1 in\na|'b')\n{}\n;;\n*) ;;\nesac", list(l))
            } else {
                format!("case $1 in a|'b') {};; *) ;; esac", list(l))
            }
        }
        Sh::And(a, b) => {
            let a = write_sh(a, lines);
            let b = write_sh(b, lines);
            // `sleep 1 &` cannot be the left of `&&`.
            let a = a.trim_end_matches('&').trim_end().to_string();
            format!("{a} &&{nl}{b}")
        }
        Sh::Not(a) => {
            let a = write_sh(a, lines);
            if a.starts_with('!') {
                a
            } else {
                format!("! {a}")
            }
        }
        Sh::Function(l) => format!("f(){nl}{{{nl}{}}}", end(l)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn a_valid_program_on_one_line_or_many_is_one_valid_command(program in sh()) {
        let one = write_sh(&program, false);
        let many = write_sh(&program, true);
        let a = canonicalize(&one);
        let b = canonicalize(&many);
        prop_assert!(a.fallback.is_none(), "{:?}: {:?}", one, a.fallback);
        prop_assert!(b.fallback.is_none(), "{:?}: {:?}", many, b.fallback);
        prop_assert_eq!(&a.canonical, &b.canonical, "{:?} vs {:?}", one, many);
        let again = canonicalize(&a.canonical);
        prop_assert!(again.fallback.is_none(), "{:?}", a.canonical);
        prop_assert_eq!(&again.canonical, &a.canonical);
        prop_assert_eq!(&again.logical_keys, &a.logical_keys);
    }
}
