//! Trust in the canonical form: two commands share a cmd_hash only if sh runs them the
//! same, because a rejected command absorbs its repeats (same cmd_hash) for a cooldown.
//! One regression test per collision found by adversarial testing against dash (issue 18,
//! finding 5): quoted reserved words, separators dropped or invented, syntax errors, and
//! the one-time re-hash of in-flight proposals when the canonical form changes.
#![allow(clippy::unwrap_used)]

use opsgate::canon::{canonicalize, hash_text, CANON_VERSION};

use super::common;

fn hash(command: &str) -> String {
    canonicalize(command).cmd_hash
}

/// Every command of `differ` has a cmd_hash of its own.
fn assert_all_differ(differ: &[&str]) {
    for (i, a) in differ.iter().enumerate() {
        for b in &differ[i + 1..] {
            assert_ne!(hash(a), hash(b), "{a:?} and {b:?} share a cmd_hash");
        }
    }
}

/// Canonicalizing `command` is idempotent, and the canonical form of a command sh
/// accepts is one sh accepts (never opaque: an opaque text's hash is its bytes').
fn assert_stable(command: &str) {
    let once = canonicalize(command);
    let twice = canonicalize(&once.canonical);
    assert_eq!(once.canonical, twice.canonical, "{command:?}");
    assert_eq!(once.cmd_hash, twice.cmd_hash, "{command:?}");
    assert_eq!(once.logical_keys, twice.logical_keys, "{command:?}");
    assert_eq!(
        once.fallback.is_some(),
        twice.fallback.is_some(),
        "{command:?} -> {:?}",
        once.canonical
    );
}

#[test]
fn a_quoted_else_is_a_command_name_not_the_else_branch() {
    // dash prints `no` for the bare `else`, nothing for the quoted one (a command named
    // `else` inside the then-branch that never runs).
    let bare = "if false; then echo yes; else echo no; fi";
    let quoted = "if false; then echo yes; \"else\" echo no; fi";
    assert_ne!(hash(bare), hash(quoted));
    assert_eq!(
        canonicalize(quoted).canonical,
        "if false ; then echo yes ; 'else' echo no ; fi"
    );
    // Every way of quoting it is one command.
    for spelling in ["'else'", "\\else", "e\"ls\"e", "el\\se", "\"else\""] {
        let c = quoted.replace("\"else\"", spelling);
        assert_eq!(hash(&c), hash(quoted), "{c:?}");
        assert_stable(&c);
    }
    assert_stable(bare);
}

#[test]
fn quoted_or_escaped_reserved_words_keep_their_quotes() {
    for (bare, quoted) in [
        ("if true; then echo a; fi", "if true; then echo a; \\fi"),
        ("if true; then echo a; fi", "if true; 'then' echo a; fi"),
        (
            "while false; do echo a; done",
            "while false; \"do\" echo a; done",
        ),
        (
            "for i in a; do echo $i; done",
            "for i in a; do echo $i; 'done'",
        ),
        ("{ echo a; }", "'{' echo a; }"),
        ("{ echo a; }", "{ echo a; '}'"),
        ("! echo a", "'!' echo a"),
        ("! echo a", "\\! echo a"),
        ("case a in a) echo a;; esac", "case a in a) echo a;; 'esac'"),
        ("time echo a", "\"time\" echo a"),
    ] {
        assert_ne!(hash(bare), hash(quoted), "{bare:?} vs {quoted:?}");
        assert_stable(bare);
        assert_stable(quoted);
    }
    // Where the word is an argument quoting it still keeps the quotes: one rule, exact.
    assert_eq!(canonicalize("echo \"done\"").canonical, "echo 'done'");
    assert_eq!(hash("echo \"done\""), hash("echo \\done"));
}

#[test]
fn a_separator_after_background_is_a_syntax_error_not_the_same_command() {
    // `echo a & ;` is a syntax error in dash; it hashed like `echo a &`.
    let c = canonicalize("echo a & ;");
    assert!(c.fallback.is_some(), "{c:?}");
    assert_ne!(c.cmd_hash, hash("echo a &"));
    assert_all_differ(&["echo a & ;", "echo a &", "echo a; ;", "echo a;", "; echo a"]);
    assert_eq!(hash("echo a;"), hash("echo a"));
}

#[test]
fn a_quoted_for_variable_is_a_syntax_error_not_the_same_loop() {
    // dash: "Bad for loop variable".
    let quoted = "for 'i' in a b; do echo $i; done";
    assert!(canonicalize(quoted).fallback.is_some());
    assert_all_differ(&[
        quoted,
        "for i in a b; do echo $i; done",
        "for \\i in a b; do echo $i; done",
    ]);
}

#[test]
fn a_newline_after_an_open_brace_is_no_semicolon() {
    // `{` + newline is valid; `{ ;` is a syntax error. The first rendered as the second.
    let valid = "{\necho a\n}";
    let c = canonicalize(valid);
    assert!(c.fallback.is_none());
    assert_eq!(c.canonical, "{ echo a ; }");
    assert_eq!(c.cmd_hash, hash("{ echo a; }"));
    assert!(canonicalize("{ ; echo a ; }").fallback.is_some());
    assert_ne!(c.cmd_hash, hash("{ ; echo a ; }"));
    assert_stable(valid);
    // The same for every place sh skips newlines.
    for (multi, one) in [
        (
            "if true\nthen\necho a\nelse\necho b\nfi",
            "if true; then echo a; else echo b; fi",
        ),
        (
            "while false\ndo\necho a\ndone",
            "while false; do echo a; done",
        ),
        (
            "for i\nin a b\ndo\necho $i\ndone",
            "for i in a b; do echo $i; done",
        ),
        (
            "case a\nin\na)\necho a\n;;\nesac",
            "case a in a) echo a;; esac",
        ),
        ("f()\n{\necho a\n}", "f() { echo a; }"),
        ("(\necho a\n)", "(echo a)"),
        ("echo a &&\n\necho b", "echo a && echo b"),
    ] {
        assert_eq!(hash(multi), hash(one), "{multi:?}");
        assert!(canonicalize(multi).fallback.is_none(), "{multi:?}");
        assert_stable(multi);
    }
    // `for i<newline>do` keeps the `;` it always had.
    assert_eq!(
        canonicalize("for i\ndo echo $i; done").canonical,
        "for i ; do echo $i ; done"
    );
}

#[test]
fn syntax_errors_are_opaque_and_never_share_a_valid_hash() {
    for (invalid, valid) in [
        ("( ; echo a)", "(echo a)"),
        ("echo ok ;; echo", "echo ok ; echo"),
        ("'f'() { echo a; }", "f() { echo a; }"),
        ("{ echo a }", "{ echo a; }"),
        ("if true; then fi", "if true; then :; fi"),
        ("echo a | ! echo b", "echo a | echo b"),
        ("! ! echo a", "! echo a"),
        (
            "X=1 if true; then echo y; fi",
            "X=1; if true; then echo y; fi",
        ),
        ("{ }", "{ :; }"),
        ("echo a\n)", "echo a"),
        ("echo a >", "echo a > f"),
        ("echo a |& cat", "echo a | cat"),
    ] {
        let c = canonicalize(invalid);
        assert!(c.fallback.is_some(), "{invalid:?} should be opaque");
        assert_eq!(c.canonical, invalid);
        assert!(c.logical_keys.is_empty());
        assert_ne!(c.cmd_hash, hash(valid), "{invalid:?}");
        assert!(canonicalize(valid).fallback.is_none(), "{valid:?}");
    }
}

#[test]
fn deeply_nested_compound_commands_are_opaque_not_a_crash() {
    let deep = format!("{}echo a{}", "( ".repeat(50_000), " )".repeat(50_000));
    assert!(canonicalize(&deep).fallback.is_some());
    let deep = format!("{}echo a{}", "{ ".repeat(50_000), "; }".repeat(50_000));
    assert!(canonicalize(&deep).fallback.is_some());
    let fine = format!("{}echo a{}", "( ".repeat(99), " )".repeat(99));
    assert!(canonicalize(&fine).fallback.is_none());
}

#[test]
fn a_multi_digit_descriptor_is_opaque() {
    // dash reads `10>f` as the word `10` and `>f`; the tokenizer as one redirection.
    let c = canonicalize("echo a 10>f");
    assert!(c.fallback.is_some());
    assert_ne!(c.cmd_hash, hash("echo a 10> f"));
}

#[test]
fn an_alias_defined_before_a_later_line_makes_the_command_opaque() {
    // dash reads a line whole before it runs it: `ls` on the next line runs the alias,
    // on the same line it does not, and `\ls` never does.
    let next_line = "alias ls=echo\nls x";
    let same_line = "alias ls=echo; ls x";
    let escaped = "alias ls=echo\n\\ls x";
    assert_all_differ(&[next_line, same_line, escaped]);
    for c in [
        next_line,
        same_line,
        escaped,
        "eval \"$X\"\nls",
        "$CMD; ls",
        ". ./env\nls",
    ] {
        assert!(canonicalize(c).fallback.is_some(), "{c:?}");
    }
    // Nothing after it, or only a lookup: nothing an alias could change.
    for c in [
        "alias ll='ls -l'",
        "command -v docker >/dev/null && docker stop web; ls",
    ] {
        assert!(canonicalize(c).fallback.is_none(), "{c:?}");
    }
}

#[test]
fn keys_are_read_inside_compound_commands() {
    let multi = "if docker ps | grep -q web; then\n  docker stop web\nfi";
    assert_eq!(canonicalize(multi).logical_keys, ["stop:web"]);
    // On one line too (it had no key: `then docker stop web` was one simple command).
    assert_eq!(
        canonicalize("if docker ps | grep -q web; then docker stop web; fi").logical_keys,
        ["stop:web"]
    );
    assert_eq!(
        canonicalize("while true; do docker restart web; done").logical_keys,
        ["restart:web"]
    );
    assert_eq!(
        canonicalize("{ docker stop web; }").logical_keys,
        ["stop:web"]
    );
    assert_eq!(canonicalize("! docker stop web").logical_keys, ["stop:web"]);
    // A quoted reserved word is a command name, as before.
    assert!(canonicalize("'{' docker stop web").logical_keys.is_empty());
}

#[test]
fn the_hash_command_shows_a_quoted_reserved_word_quoted() {
    let env = common::Env::new();
    let out = env
        .cmd(&[
            "hash",
            "--json",
            "if false; then echo yes; \"else\" echo no; fi",
        ])
        .ok();
    let v: serde_json::Value = serde_json::from_str(common::stdout(&out).trim()).unwrap();
    assert_eq!(
        v["canonical"],
        "if false ; then echo yes ; 'else' echo no ; fi"
    );
    let out = env.cmd(&["hash", "--json", "echo a & ;"]).ok();
    let v: serde_json::Value = serde_json::from_str(common::stdout(&out).trim()).unwrap();
    assert_eq!(v["canonical"], "echo a & ;");
    assert_eq!(v["cmd_hash"], hash_text("echo a & ;"));
}

#[test]
fn in_flight_proposals_hashed_by_an_older_canonical_form_are_rehashed_once() {
    rehash_story(&common::Env::new());
}

#[test]
fn in_flight_proposals_are_rehashed_once_on_postgresql() {
    let Some(env) = common::Env::postgres() else {
        return;
    };
    rehash_story(&env);
}

/// Three in-flight proposals stored by the canonical form before 2; the next open
/// re-hashes them once.
fn rehash_story(env: &common::Env) {
    env.ingest(
        "h",
        &common::cycle(0, &["{ echo a; }", "{ echo b; }", "echo \"done\""]),
    );
    // `{`+newline was read as `{ ;`, a quoted `done` was bare. Proposal 2 is now
    // `{<newline>echo a<newline>}`: a command of its own then, proposal 1's now.
    let old_brace = hash_text("{ ; echo a ; }");
    let old_done = hash_text("echo done");
    env.raw_sql(&format!(
        "UPDATE proposals SET command = '{{\necho a\n}}', cmd_hash = '{old_brace}',
                canonical = '{{ ; echo a ; }}' WHERE id = 2;
         UPDATE proposals SET cmd_hash = '{old_done}', canonical = 'echo done' WHERE id = 3;
         INSERT INTO meta (key, value) VALUES ('canon_version', '1')
           ON CONFLICT (key) DO UPDATE SET value = '1';"
    ))
    .unwrap();
    let list = env.list_json(&[]);
    let by_id = |id: i64| list.iter().find(|p| p["id"] == id).unwrap().clone();
    assert_eq!(by_id(1)["cmd_hash"], hash("{ echo a; }"));
    // The collision: proposal 2 keeps its old identity, still decidable.
    assert_eq!(hash("{\necho a\n}"), hash("{ echo a; }"));
    assert_eq!(by_id(2)["cmd_hash"], old_brace.as_str());
    assert_eq!(by_id(2)["state"], "pending");
    assert_eq!(by_id(3)["cmd_hash"], hash("echo \"done\""));
    assert_ne!(by_id(3)["cmd_hash"], old_done.as_str());
    assert_eq!(by_id(3)["canonical"], "echo 'done'");
    assert_eq!(env.store().canon_version().unwrap(), CANON_VERSION);
    if env.url.is_none() {
        // The audit says what changed, and why proposal 2 did not.
        let audit = env.audit("rehash");
        assert_eq!(audit.len(), 2, "{audit:?}");
        assert_eq!(audit[0].0, Some(2));
        assert!(audit[0].2.as_deref().unwrap().contains("kept"), "{audit:?}");
        assert_eq!(audit[1].0, Some(3));
    }
    // Once: a second open changes nothing.
    let before = env.list_json(&[]);
    let dump = env.dump();
    assert_eq!(env.list_json(&[]), before);
    assert_eq!(env.dump(), dump);
    // A new sighting of either spelling joins proposal 1.
    env.ingest("h", &common::cycle(1, &["{\necho a\n}", "{ echo a;}"]));
    let list = env.list_json(&[]);
    assert_eq!(list.len(), 3, "{list:?}");
    let one = list.iter().find(|p| p["id"] == 1).unwrap();
    assert_eq!(one["seen_count"], 3, "{one:?}");
}

/// Issue 24: spellings sh's grammar leaves to the writer share one cmd_hash; each class
/// with a near miss that must not.
fn assert_same(pairs: &[(&str, &str)]) {
    for (a, b) in pairs {
        assert_eq!(hash(a), hash(b), "{a:?} and {b:?}");
        assert!(canonicalize(a).fallback.is_none(), "{a:?}");
        assert_stable(a);
        assert_stable(b);
    }
}

#[test]
fn an_optional_separator_is_no_new_command() {
    assert_same(&[
        ("(echo a;)", "(echo a)"),
        ("(echo a;\n)", "(echo a)"),
        (
            "{ if true; then echo a; fi }",
            "{ if true; then echo a; fi; }",
        ),
        ("{ { echo a; } }", "{ { echo a; }; }"),
        (
            "if { true; } then echo a; fi",
            "if { true; }; then echo a; fi",
        ),
        ("for i do echo $i; done", "for i; do echo $i; done"),
        ("for i do echo $i; done", "for i\ndo echo $i; done"),
        ("case a in a) echo a;; esac", "case a in a) echo a; esac"),
        ("case a in a) echo a;; esac", "case a in a) echo a\nesac"),
        ("case a in a) echo a;; esac", "case a in a) echo a; ;; esac"),
        ("case a in a) ;; esac", "case a in a) esac"),
        ("case a in (a) echo a;; esac", "case a in a) echo a;; esac"),
        (
            "case a in (a|b) echo a;; (*) echo b;; esac",
            "case a in a|b) echo a;; *) echo b; esac",
        ),
    ]);
    // `&` is meaning, and `esac` is a pattern only after `(`.
    assert_all_differ(&["{ echo a & }", "{ echo a; }"]);
    assert_ne!(
        hash("case esac in (esac) echo a;; esac"),
        hash("case esac in esac) echo a;; esac")
    );
    assert_stable("case esac in (esac) echo a;; esac");
}

#[test]
fn a_redirection_among_the_words_is_the_same_command() {
    assert_same(&[
        ("echo a >f b", "echo a b >f"),
        (">f echo a b", "echo a b >f"),
        ("echo >f a 2>&1 b", "echo a b >f 2>&1"),
        ("cat <<EOF a\nx\nEOF", "cat a <<EOF\nx\nEOF"),
        ("X=1 >f echo a", "X=1 echo a >f"),
        ("{ echo a; } >f", "{ echo a; } > f"),
    ]);
    // The order of redirections among themselves is meaning.
    assert_all_differ(&[
        "echo a >f 2>&1",
        "echo a 2>&1 >f",
        "echo a >f >g",
        "echo a >g >f",
    ]);
    // `>f if` runs a command named `if`; `if >f` would not parse the same.
    assert_ne!(hash(">f if x"), hash("if x >f"));
    assert_stable(">f if x");
    // bash's `&>` is `&` then `>` to sh: nothing moves across it.
    assert_ne!(hash("echo a &> f b"), hash("echo a b &> f"));
}

#[test]
fn a_line_continuation_inside_a_word_with_an_expansion_is_nothing() {
    assert_same(&[
        ("echo a\\\n$b", "echo a$b"),
        ("echo $HO\\\nME", "echo $HOME"),
        ("echo \"$a\"\\\nb", "echo \"$a\"b"),
    ]);
    // After a lone `$` it stays: `$\<newline>(x)` is a command substitution to sh.
    assert_ne!(hash("echo $\\\n(x)"), hash("echo $ (x)"));
}

#[test]
fn braces_around_a_name_nothing_continues_are_no_new_command() {
    assert_same(&[
        ("echo ${b}", "echo $b"),
        ("echo ${b}.txt", "echo $b.txt"),
        ("echo ${1} ${@}", "echo $1 $@"),
    ]);
    assert_all_differ(&["echo ${b}c", "echo $bc"]);
    assert_all_differ(&["echo ${1}0", "echo $10"]);
    assert_all_differ(&["echo ${b}\\\nc", "echo $b\\\nc"]);
}

/// Issue 24, part 2: what sh reads as a command inside `$(..)`, backticks and `${..}` is
/// canonicalized where that is exact; arithmetic and `${..}` with an operator stay verbatim.
#[test]
fn a_command_substitution_is_canonicalized_as_a_command() {
    assert_same(&[
        ("echo $(foo  bar)", "echo $(foo bar)"),
        ("echo $( foo bar; )", "echo $(foo bar)"),
        ("echo $(foo\nbar)", "echo $(foo; bar)"),
        ("echo $(foo # a comment\n)", "echo $(foo)"),
        ("echo \"$(foo   \"a b\")\"", "echo \"$(foo 'a b')\""),
        (
            "x=$(docker inspect  -f \"{{.Id}}\" web)",
            "x=$(docker inspect -f '{{.Id}}' web)",
        ),
        ("echo $(echo $(date  -u))", "echo $(echo $(date -u))"),
        ("echo $(foo >f bar)", "echo $(foo bar >f)"),
        ("echo $({\nfoo\n})", "echo $({ foo; })"),
    ]);
    assert_eq!(
        canonicalize("echo $(foo   'a b')").canonical,
        "echo $(foo 'a b')"
    );
    // Meaning inside stays meaning; arithmetic is no command.
    assert_all_differ(&[
        "echo $(foo 'a  b')",
        "echo $(foo 'a b')",
        "echo $(foo a b)",
        "echo $(foo; bar)",
        "echo $(foo && bar)",
    ]);
    assert_all_differ(&["echo $((1+2))", "echo $(( 1 + 2 ))"]);
    // `$( (a) )` is a subshell inside the substitution, `$((a))` arithmetic.
    assert_ne!(hash("echo $( (a) )"), hash("echo $((a))"));
    assert_eq!(canonicalize("echo $( (a) )").canonical, "echo $( ( a ))");
    assert_stable("echo $( (a) )");
    // Not exact: a case pattern's `)` would close the substitution once its `(` is gone.
    let case = "echo $(case a in (a) b;; esac)";
    assert_eq!(canonicalize(case).canonical, case);
    assert_stable(case);
    // What does not read as sh inside stays as written.
    assert_eq!(canonicalize("echo $(foo;;)").canonical, "echo $(foo;;)");
}

#[test]
fn a_backtick_command_is_its_dollar_paren_form() {
    assert_same(&[
        ("echo `foo  bar`", "echo $(foo bar)"),
        ("echo `echo \\`date\\``", "echo $(echo $(date))"),
        ("echo `echo \\$HOME`", "echo $(echo $HOME)"),
        ("echo `echo \\\\$HOME`", "echo $(echo \\$HOME)"),
        ("echo `echo '\\\\'`", "echo $(echo '\\')"),
        ("echo \"`echo \\\"a  b\\\"`\"", "echo \"$(echo 'a  b')\""),
        ("echo `(a)`", "echo $( (a) )"),
        ("x=`foo`; echo $x", "x=$(foo); echo $x"),
    ]);
    assert_all_differ(&[
        // Outside double quotes `\"` keeps its backslash: the command prints `"a"`.
        "echo `echo \\\"a\\\"`",
        "echo $(echo \"a\")",
    ]);
    // sh removes a line continuation inside backticks even inside single quotes, `$(..)`
    // does not: kept as written.
    let continued = "echo `echo 'a\\\nb'`";
    assert_eq!(canonicalize(continued).canonical, continued);
    assert_ne!(hash(continued), hash("echo $(echo 'a\\\nb')"));
}

#[test]
fn braces_around_a_name_inside_double_quotes_are_no_new_command() {
    assert_same(&[
        ("echo \"${b}\"", "echo \"$b\""),
        ("echo \"${b}.txt\"", "echo \"$b.txt\""),
        ("echo \"x${1}. ${@}\"", "echo \"x$1. $@\""),
    ]);
    assert_all_differ(&["echo \"${b}c\"", "echo \"$bc\""]);
    assert_all_differ(&["echo \"${10}\"", "echo \"$10\""]);
    assert_all_differ(&["echo \"${b:-x}\"", "echo \"$b\""]);
}

#[test]
fn a_subshell_that_is_all_of_another_is_one_subshell() {
    assert_same(&[
        ("( (foo) )", "(foo)"),
        ("((foo))", "(foo)"),
        ("( ( (foo) ) )", "(foo)"),
        ("( (foo); )", "(foo)"),
        ("(\n(foo)\n)", "(foo)"),
        ("( (foo) ) >f", "(foo) >f"),
        ("( (foo; bar) )", "(foo; bar)"),
        ("echo a && ( (foo) )", "echo a && (foo)"),
    ]);
    // Anything beside the inner subshell, or a redirection of it, is meaning.
    assert_all_differ(&[
        "(foo)",
        "( (foo) >f )",
        "( (foo) & )",
        "( ! (foo) )",
        "( (foo) | bar )",
        "( (foo); (bar) )",
        "(foo; bar)",
    ]);
    assert_eq!(canonicalize("( (foo) >f )").canonical, "( ( foo ) > f )");
}

#[test]
fn deeply_nested_substitutions_are_opaque_not_a_crash() {
    // It overflowed the stack at 20,000 levels (the scan recursed once per level).
    let deep = format!("echo {}a{}", "$(echo ".repeat(20_000), ")".repeat(20_000));
    let c = canonicalize(&deep);
    assert!(c.fallback.is_some());
    assert_eq!(c.canonical, deep);
    let deep = format!(
        "echo \"{}a{}\"",
        "$(echo \"".repeat(20_000),
        "\")".repeat(20_000)
    );
    assert!(canonicalize(&deep).fallback.is_some());
    let fine = format!("echo {}a{}", "$(echo  ".repeat(20), ")".repeat(20));
    let c = canonicalize(&fine);
    assert!(c.fallback.is_none());
    assert_eq!(
        c.canonical,
        format!("echo {}a{}", "$(echo ".repeat(20), ")".repeat(20))
    );
}
