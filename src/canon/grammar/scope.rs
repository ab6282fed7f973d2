//! What a line does to where its commands act: the working directory, the variables that
//! choose a target, the user. A line is read command by command ([`line_keys`]), through
//! `&&`, `||`, pipelines, `&`, subshells and compound commands, and each command's keys
//! are read in the [`Scope`] it runs in. What the walk cannot follow makes things
//! unknown, never guessed: a key is only given for a target that is certain.

use super::{as_strs, basename, file_keys, prefixes, simple_command_keys, Builtins};
use crate::canon::{Part, Token, Word};
use std::collections::BTreeMap;

/// Variables that choose where some family acts. Whatever a line does to one of them
/// (`export`, an assignment, `env VAR=`, `unset`) is followed; any other variable is
/// ignored.
const PLACE_VARS: &[&str] = &[
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_FILE",
    "KUBECONFIG",
    "HOME",
    "CONTAINERD_ADDRESS",
    "CONTAINERD_NAMESPACE",
    "CONTAINER_RUNTIME_ENDPOINT",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGOPTIONS",
    "PGCLUSTER",
    "MYSQL_HOST",
    "MYSQL_TCP_PORT",
    "MYSQL_UNIX_PORT",
    "REDISCLI_RCFILE",
];

/// What a line knows about one thing that chooses where a command acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Known {
    /// As the runner has it: the line did not change it. Plain forms keep their bare
    /// subjects.
    Default,
    /// A literal value the line set: part of the subject.
    Set(String),
    /// Decided at run time, or changed by something that may or may not have run: no
    /// subject can name it, so the commands that depend on it get no key.
    Unknown,
}

/// Where a command runs, as far as its line says: the working directory, the variables
/// of [`PLACE_VARS`] and the user. A family reads what bears on it (see
/// `family_keys`); nothing else about the line's environment is modelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scope {
    pub(super) cwd: Known,
    /// Variables the line changed; an absent one is [`Known::Default`].
    pub(super) vars: BTreeMap<&'static str, Known>,
    /// The user the command runs as; `Default` is the one that runs the line.
    pub(super) user: Known,
}

const DEFAULT: Known = Known::Default;

impl Scope {
    pub(super) fn start() -> Scope {
        Scope {
            cwd: Known::Default,
            vars: BTreeMap::new(),
            user: Known::Default,
        }
    }

    /// Nothing is known: after `eval`, `. FILE`, a command whose name is decided at run
    /// time, or where the line's control flow is not followed.
    pub(super) fn unknown() -> Scope {
        Scope {
            cwd: Known::Unknown,
            vars: PLACE_VARS.iter().map(|v| (*v, Known::Unknown)).collect(),
            user: Known::Unknown,
        }
    }

    pub(super) fn var(&self, name: &str) -> &Known {
        self.vars.get(name).unwrap_or(&DEFAULT)
    }

    pub(super) fn set_var(&mut self, name: &str, value: Known) {
        if let Some(name) = PLACE_VARS.iter().find(|v| **v == name) {
            self.vars.insert(name, value);
        }
    }

    /// Whether any of `names` was changed by the line.
    pub(super) fn changed(&self, names: &[&str]) -> bool {
        names.iter().any(|n| *self.var(n) != Known::Default)
    }

    /// What is the same on both ways the line may have gone; the rest is unknown.
    pub(super) fn join(&self, other: &Scope) -> Scope {
        let pick = |a: &Known, b: &Known| if a == b { a.clone() } else { Known::Unknown };
        let mut vars = BTreeMap::new();
        for name in PLACE_VARS {
            let value = pick(self.var(name), other.var(name));
            if value != Known::Default {
                vars.insert(*name, value);
            }
        }
        Scope {
            cwd: pick(&self.cwd, &other.cwd),
            vars,
            user: pick(&self.user, &other.user),
        }
    }

    /// A path argument as the command will open it: absolute, relative to a directory the
    /// line changed to, or relative to the runner's directory when the line did not
    /// change it (then it is kept as written, as before directories were followed).
    pub(super) fn path(&self, path: &str) -> Known {
        if path.starts_with('/') {
            return Known::Set(clean_path(path));
        }
        match &self.cwd {
            Known::Default => Known::Set(path.to_string()),
            Known::Set(dir) => Known::Set(clean_path(&format!("{dir}/{path}"))),
            Known::Unknown => Known::Unknown,
        }
    }

    /// The working directory after `cd DIR` (or `pushd DIR`) succeeds. Only an absolute
    /// literal, or `./`, `../` from a directory already known, is certain: a bare relative
    /// name may be found through `CDPATH`, `~` and `-` depend on the environment, and
    /// `-P` resolves symbolic links the line cannot see.
    pub(super) fn cd(&self, args: &[Option<&str>]) -> Known {
        let mut physical = false;
        let mut target = None;
        for (n, arg) in args.iter().enumerate() {
            match arg {
                None => return Known::Unknown,
                Some("--") => {
                    if args.len() != n + 2 {
                        return Known::Unknown;
                    }
                    target = args[n + 1];
                    break;
                }
                Some("-P") => physical = true,
                Some("-L" | "-e") => {}
                Some(dir) if target.is_none() => target = Some(*dir),
                Some(_) => return Known::Unknown, // too many operands
            }
        }
        let Some(dir) = target else {
            return Known::Unknown; // `cd` alone: $HOME
        };
        let joined = if dir.starts_with('/') {
            dir.to_string()
        } else if dir.starts_with("./") || dir.starts_with("../") || dir == "." || dir == ".." {
            match &self.cwd {
                Known::Set(cwd) => format!("{cwd}/{dir}"),
                _ => return Known::Unknown,
            }
        } else {
            return Known::Unknown;
        };
        if physical && joined.split('/').any(|c| c == "..") {
            return Known::Unknown;
        }
        Known::Set(logical_path(&joined))
    }
}

/// A path without `.` components, repeated or trailing slashes (`..` is kept: the kernel
/// resolves it after symbolic links).
pub(super) fn clean_path(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// An absolute path as `cd` (logical, the default) sets it: `..` removes the component
/// before it.
fn logical_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Reads a line command by command, following what each one leaves behind for the next
/// ([`Flow`]): `cd`, `export`, `unset`... Every command's keys are read in the scope it
/// runs in.
pub(super) fn line_keys(tokens: &[Token], depth: usize, start: Scope, keys: &mut Vec<String>) {
    let mut flow = Flow::new(start);
    // Subshells being read: the flow outside each, and the scope it started in.
    let mut outer: Vec<(Flow, Scope)> = Vec::new();
    // Compound commands (`if`, `while`, `for`, `case`, `{`) open: what runs inside them
    // may or may not run.
    let mut compound = 0usize;
    let mut words: Vec<&Word> = Vec::new();
    // The redirection whose target is the next word: whether it writes to a file.
    let mut target_next: Option<bool> = None;
    // Files the current command's redirections write to (`>`, `>>`, `>|`, `&>`, `<>`).
    let mut written: Vec<Option<String>> = Vec::new();
    // What the current command reads on its standard input: a here-document's body when
    // the shell does not expand it (a quoted delimiter, or a body without `$`, `` ` ``
    // or `\`); `None` for anything else.
    let mut stdin: Option<&str> = None;
    let mut command = |words: &mut Vec<&Word>,
                       written: &mut Vec<Option<String>>,
                       stdin: &mut Option<&str>,
                       flow: &mut Flow,
                       compound: &mut usize| {
        let input = stdin.take();
        if words.is_empty() && written.is_empty() {
            return;
        }
        let scope = flow.scope();
        // Redirections are opened where the command starts, before it runs.
        for file in written.drain(..).flatten() {
            file_keys(&file, &scope, keys);
        }
        if words.is_empty() {
            return;
        }
        let outcome = simple_command(words, depth, &scope, compound, input, keys);
        flow.command(scope, outcome);
        words.clear();
    };
    for token in tokens {
        match token {
            Token::Word(w) => {
                if let Some(writes) = target_next.take() {
                    // A redirection target, never a command word.
                    if writes {
                        written.push(w.literal());
                    }
                    continue;
                }
                words.push(w);
            }
            // A here-document body is data, never a command: the input of its command.
            Token::HereDoc(doc) => {
                if doc.fd.is_empty() || doc.fd == "0" {
                    let literal = doc.quoted || !doc.body.contains(['$', '`', '\\']);
                    stdin = literal.then_some(doc.body.as_str());
                }
            }
            Token::Op(op) if op.contains('<') || op.contains('>') => {
                let bare = op.trim_start_matches(|c: char| c.is_ascii_digit());
                target_next = Some(matches!(bare, ">" | ">>" | ">|" | "&>" | "&>>" | "<>"));
                let fd = &op[..op.len() - bare.len()];
                if bare.starts_with('<') && (fd.is_empty() || fd == "0") {
                    stdin = None; // another file
                }
            }
            Token::Op(op) => {
                command(
                    &mut words,
                    &mut written,
                    &mut stdin,
                    &mut flow,
                    &mut compound,
                );
                match op.as_str() {
                    "(" => {
                        let scope = flow.scope();
                        let inner = Flow::new(scope.clone());
                        outer.push((std::mem::replace(&mut flow, inner), scope));
                    }
                    ")" => match outer.pop() {
                        // What a subshell changes stays inside it.
                        Some((before, scope)) => {
                            flow = before;
                            flow.command(
                                scope.clone(),
                                Outcome {
                                    ok: Some(scope.clone()),
                                    fail: Some(scope),
                                },
                            );
                        }
                        // A `case` pattern, or a syntax the walk does not follow.
                        None => flow = Flow::new(Scope::unknown()),
                    },
                    op => flow.op(op),
                }
            }
        }
    }
    command(
        &mut words,
        &mut written,
        &mut stdin,
        &mut flow,
        &mut compound,
    );
}

/// How the scope moves through an and-or list (`a && b || c`), pipelines and `&`.
struct Flow {
    /// The scope where the current and-or list started (what `&` leaves behind).
    entry: Scope,
    /// The scope after the list read so far succeeded, or failed (`None`: it cannot).
    ok: Option<Scope>,
    fail: Option<Scope>,
    /// Whether a list is being read (a command was read since its start).
    in_list: bool,
    /// How the next command joins: at a list's start, after `&&`, `||` or `|`.
    joint: Joint,
    /// The joint before the current pipeline, its scope and its length so far.
    pipe_joint: Joint,
    pipe_scope: Option<Scope>,
    pipe_len: usize,
    /// The outcome of the last command read.
    last: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Joint {
    Start,
    And,
    Or,
    Pipe,
}

/// The scope after a command succeeded, and after it failed (`None`: it cannot, as after
/// `exit`).
#[derive(Debug, Clone)]
struct Outcome {
    ok: Option<Scope>,
    fail: Option<Scope>,
}

impl Outcome {
    fn same(scope: &Scope) -> Outcome {
        Outcome {
            ok: Some(scope.clone()),
            fail: Some(scope.clone()),
        }
    }
}

fn join_opt(a: Option<Scope>, b: Option<Scope>) -> Option<Scope> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.join(&b)),
        (a, b) => a.or(b),
    }
}

impl Flow {
    fn new(entry: Scope) -> Flow {
        Flow {
            last: Outcome::same(&entry),
            entry,
            ok: None,
            fail: None,
            in_list: false,
            joint: Joint::Start,
            pipe_joint: Joint::Start,
            pipe_scope: None,
            pipe_len: 0,
        }
    }

    /// The scope the next command runs in. One that cannot run gets an unknown scope.
    fn scope(&self) -> Scope {
        let scope = match self.joint {
            Joint::Start => Some(self.entry.clone()),
            Joint::And => self.ok.clone(),
            Joint::Or => self.fail.clone(),
            Joint::Pipe => self.pipe_scope.clone(),
        };
        scope.unwrap_or_else(Scope::unknown)
    }

    fn command(&mut self, scope: Scope, outcome: Outcome) {
        if self.joint != Joint::Pipe {
            self.pipe_joint = self.joint;
            self.pipe_scope = Some(scope);
            self.pipe_len = 0;
        }
        self.pipe_len += 1;
        self.last = outcome;
    }

    fn op(&mut self, op: &str) {
        if matches!(op, "|" | "|&") {
            self.joint = Joint::Pipe;
            return;
        }
        if self.pipe_len > 0 {
            // Every command of a pipeline runs in a subshell: a pipeline changes nothing.
            let outcome = if self.pipe_len > 1 {
                let scope = self.pipe_scope.clone().unwrap_or_else(Scope::unknown);
                Outcome::same(&scope)
            } else {
                self.last.clone()
            };
            match self.pipe_joint {
                Joint::Start | Joint::Pipe => {
                    self.ok = outcome.ok;
                    self.fail = outcome.fail;
                }
                Joint::And => {
                    self.ok = outcome.ok;
                    self.fail = join_opt(self.fail.take(), outcome.fail);
                }
                Joint::Or => {
                    self.ok = join_opt(self.ok.take(), outcome.ok);
                    self.fail = outcome.fail;
                }
            }
            self.pipe_len = 0;
            self.in_list = true;
        }
        match op {
            "&&" => self.joint = Joint::And,
            "||" => self.joint = Joint::Or,
            // In the background: its changes stay in its subshell.
            "&" => {
                self.joint = Joint::Start;
                self.ok = None;
                self.fail = None;
                self.in_list = false;
            }
            // The list ends: what follows runs whichever way it went; after `exit` on
            // every way, nothing does (an unknown scope: no keys).
            _ => {
                if std::mem::take(&mut self.in_list) {
                    self.entry =
                        join_opt(self.ok.take(), self.fail.take()).unwrap_or_else(Scope::unknown);
                }
                self.joint = Joint::Start;
            }
        }
    }
}

/// Shell reserved words that open and close compound commands, and those that only
/// lead into a command.
const OPENS: &[&str] = &["if", "while", "until", "for", "select", "case", "{"];
const CLOSES: &[&str] = &["fi", "done", "esac", "}"];
const LEADS: &[&str] = &["then", "else", "elif", "do", "!"];

/// Builtins that can change what the line knows in ways not followed: everything
/// becomes unknown after them.
const UNFOLLOWED: &[&str] = &[
    "eval",
    ".",
    "source",
    "alias",
    "read",
    "getopts",
    "builtin",
    "enable",
    "popd",
    "mapfile",
    "readarray",
];
/// Programs that change a manager's default target for the commands after them (in this
/// line and in later ones: the line is all opsgate sees): the variable standing for that
/// default becomes unknown. Each entry: the program, the words that must follow it (any
/// of them; empty: any use), and the variable.
const CHANGES_DEFAULT: &[(&str, &[&str], &str)] = &[
    ("docker", &["use"], "DOCKER_CONTEXT"),
    ("podman", &["default"], "CONTAINER_CONNECTION"),
    ("kubectl", &["config"], "KUBECONFIG"),
    ("oc", &["config", "project", "login"], "KUBECONFIG"),
    ("kubectx", &[], "KUBECONFIG"),
    ("kubens", &[], "KUBECONFIG"),
];
/// Read-only `kubectl config` subcommands.
const KUBE_CONFIG_READS: &[&str] = &[
    "view",
    "current-context",
    "get-contexts",
    "get-clusters",
    "get-users",
];

/// POSIX special builtins: assignments before them stay in the shell.
const SPECIAL_BUILTINS: &[&str] = &[
    ":", "break", "continue", ".", "eval", "exec", "exit", "export", "readonly", "return", "set",
    "shift", "times", "trap", "unset",
];

/// A word as the shell reads it in command position: its literal value, or a bare
/// `{`, `}`, `!`, `[` or `[[` (which the tokenizer keeps as text the shell could expand).
fn command_word(word: &Word) -> Option<String> {
    // A quoted reserved word (`'{'`, `"then"`) is a command name, never reserved.
    if let [Part::Quoted(s)] = word.0.as_slice() {
        return Some(format!("'{s}'"));
    }
    word.literal().or_else(|| match word.0.as_slice() {
        [Part::Raw(s)] if matches!(s.as_str(), "{" | "}" | "!" | "[" | "[[") => Some(s.clone()),
        _ => None,
    })
}

/// One simple command: its keys in `scope`, and what it leaves behind for the rest of
/// the line.
fn simple_command(
    words: &[&Word],
    depth: usize,
    scope: &Scope,
    compound: &mut usize,
    stdin: Option<&str>,
    keys: &mut Vec<String>,
) -> Outcome {
    let literal: Vec<Option<String>> = words.iter().map(|w| w.literal()).collect();
    // What the shell itself does: reserved words first.
    let shell: Vec<Option<String>> = words.iter().map(|w| command_word(w)).collect();
    let shell = as_strs(&shell);
    let mut i = 0;
    let was_inside = *compound > 0;
    let mut loop_var = None;
    while let Some(Some(w)) = shell.get(i) {
        if OPENS.contains(w) {
            *compound += 1;
        } else if CLOSES.contains(w) {
            *compound = compound.saturating_sub(1);
        } else if *w == "function" {
            i += 1; // bash's `function NAME { ...; }`: its body follows the name
        } else if !LEADS.contains(w) {
            break;
        }
        i += 1;
        if matches!(*w, "for" | "select") {
            loop_var = Some(shell.get(i).copied().flatten());
            break;
        }
        if *w == "case" {
            // `case WORD in PATTERN) ...`: the rest of this part is no command.
            return Outcome::same(scope);
        }
    }
    // The keys of the command after the reserved words that lead into it (`then docker
    // stop web`, `{ docker stop web`); a loop's header is no command.
    if loop_var.is_none() {
        simple_command_keys(
            &as_strs(&literal[i.min(literal.len())..]),
            depth,
            scope,
            stdin,
            keys,
        );
    }
    let outcome = match loop_var {
        Some(name) => {
            let mut after = scope.clone();
            match name {
                Some(name) => after.set_var(name, Known::Unknown),
                None => after = Scope::unknown(),
            }
            Outcome::same(&after)
        }
        None => effect(&shell[i..], scope),
    };
    if was_inside || *compound > 0 || i > 0 {
        // Inside a compound command (or in its condition) a change may or may not
        // happen: what it changes becomes unknown.
        Outcome {
            ok: Some(outcome.ok.map_or(scope.clone(), |ok| ok.join(scope))),
            fail: Some(outcome.fail.map_or(scope.clone(), |f| f.join(scope))),
        }
    } else {
        outcome
    }
}

/// What a simple command (reserved words already read) leaves behind for the rest of the
/// line: the shell's own `cd`, `pushd`, `export`, `unset` and assignments; `exit`. Other
/// programs run in processes of their own and change nothing.
fn effect(words: &[Option<&str>], scope: &Scope) -> Outcome {
    let same = Outcome::same(scope);
    let Some(first) = words.first() else {
        return same;
    };
    if first.is_none() {
        // A command whose name is decided at run time may be anything, `cd` included.
        return Outcome::same(&Scope::unknown());
    }
    let prefix = prefixes(words, scope);
    if prefix.opaque {
        return same;
    }
    let rest = &words[prefix.next..];
    let program = rest.first().copied().flatten().map(basename);
    if rest.first().is_some_and(|w| w.is_none()) {
        return Outcome::same(&Scope::unknown());
    }
    let mut after = scope.clone();
    // Assignments alone, or before a special builtin, stay in the shell: as shell
    // variables, which reach later commands only when exported, so a value is certain
    // only for a variable the line already exported.
    if prefix.wrappers == 0 && program.is_none_or(|p| SPECIAL_BUILTINS.contains(&p)) {
        for (name, value) in &prefix.assignments {
            let value = match (after.var(name), value) {
                (Known::Set(_), Some(v)) => Known::Set(v.to_string()),
                _ => Known::Unknown,
            };
            after.set_var(name, value);
        }
    }
    let Some(program) = program else {
        return Outcome::same(&after);
    };
    let args = &rest[1..];
    for (name, words, var) in CHANGES_DEFAULT {
        let used = words.is_empty()
            || args.iter().enumerate().any(|(n, a)| {
                a.is_some_and(|a| words.contains(&a))
                    && !(*a == Some("config")
                        && args
                            .get(n + 1)
                            .copied()
                            .flatten()
                            .is_some_and(|sub| KUBE_CONFIG_READS.contains(&sub)))
            });
        if program == *name && used {
            after.set_var(var, Known::Unknown);
            return Outcome::same(&after);
        }
    }
    let builtins = match prefix.builtins {
        Builtins::No => return same,
        b => b,
    };
    let outcome = match program {
        "cd" | "pushd" => {
            let mut moved = after.clone();
            moved.cwd = scope.cd(args);
            Outcome {
                ok: Some(moved),
                fail: Some(after),
            }
        }
        // `unset -f NAME` removes a function, not the variable.
        "unset" if args.contains(&Some("-f")) => Outcome::same(&after),
        "export" | "readonly" | "local" | "declare" | "typeset" | "unset" => {
            let unexport = args.iter().any(|a| a.is_some_and(|a| a.starts_with("-n")));
            for arg in args {
                let Some(arg) = arg else {
                    return Outcome::same(&Scope::unknown());
                };
                if arg.starts_with('-') {
                    continue;
                }
                let (name, value) = match arg.split_once('=') {
                    Some((name, value)) => (name, Some(value)),
                    None => (*arg, None),
                };
                let known = match (program, value) {
                    ("unset", _) => Known::Default,
                    ("export", Some(v)) if !unexport => Known::Set(v.to_string()),
                    _ => Known::Unknown,
                };
                after.set_var(name, known);
            }
            Outcome::same(&after)
        }
        "exit" | "return" => Outcome {
            ok: None,
            fail: None,
        },
        p if UNFOLLOWED.contains(&p) => Outcome::same(&Scope::unknown()),
        // bash's `printf -v VAR` assigns; a DEBUG, ERR or RETURN trap runs between
        // the commands that follow.
        "printf" if args.iter().any(|a| a.is_some_and(|a| a.starts_with("-v"))) => {
            Outcome::same(&Scope::unknown())
        }
        "trap"
            if args
                .iter()
                .any(|a| a.is_none_or(|a| matches!(a, "DEBUG" | "ERR" | "RETURN"))) =>
        {
            Outcome::same(&Scope::unknown())
        }
        _ => Outcome::same(&after),
    };
    if builtins == Builtins::Maybe {
        let join = |s: Option<Scope>| Some(s.map_or(scope.clone(), |s| s.join(scope)));
        return Outcome {
            ok: join(outcome.ok),
            fail: join(outcome.fail),
        };
    }
    outcome
}
