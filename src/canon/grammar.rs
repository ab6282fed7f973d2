//! Identity grammars: which simple commands change the state of what, as logical keys
//! `VERB:SUBJECT`. One table entry per tool family ([`FAMILIES`]) declares how it is
//! invoked, its global options that take values, its state-changing verbs (-> keys) and
//! its read-only verbs (-> no key); its [`Targets`] says how targets are named. Wrappers
//! ([`WRAPPERS`]) are seen through; nested shell strings (`sh -c '...'`) are tokenized
//! again, to a bounded depth. Adding a family is one entry here plus tests: the
//! tokenizer, the store and the cards do not change, and `cmd_hash` never does.
//!
//! Subjects are namespaced so that different managers never collide: docker and podman
//! containers stay bare (`web`, stored rows rely on it), qualified by their daemon
//! (`web@ssh://db`); other families carry a prefix (`unit:nginx.service`,
//! `k8s:shop/deployment/api`, `journal:system`, `cri:ID`, `nerdctl:default/web`); files
//! are `file:PATH`, and database objects name their server (and database):
//! `pg-slot:standby_b@local:5432`, `pg-table:public.orders@db-1:5432/shop` (`db.rs`).
//!
//! Keys only for certain targets: whatever can change where a command acts, seen anywhere
//! earlier in its line, is followed (`scope.rs`): the working directory (`cd`, `pushd`,
//! `env -C`, `sudo -D`), the variables of `PLACE_VARS` (`export`, assignments,
//! `env VAR=`, `unset`, `env -i`/`-u`, sudo's reset), the user (`sudo -u`, `doas -u`),
//! and the families' own options, glued or not (`-Hssh://db`, `-nprod`). A literal value
//! becomes part of the subject (`@ssh://db`, `@as:alice`, `compose:/opt/shop/web`); a
//! value decided at run time, or a change that may or may not have happened (a `cd`
//! whose failure is not stopped, control flow, `eval`, a command named at run time),
//! takes the key away from the commands that depend on it. Commands that do not depend
//! on it keep their keys (`cd $X && docker stop web` is still `stop:web`).

mod db;
mod scope;
mod sql;

use super::{is_name, tokenize, Token};
use scope::{clean_path, line_keys, Known, Scope};

/// Nested shell strings are read to this depth (the command itself is depth 0).
const MAX_DEPTH: usize = 3;

/// How a family names its targets (each has its own parser below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// docker, podman: containers by name, `OBJECT prune`, and `compose`.
    Containers,
    /// docker-compose, podman-compose: services.
    Compose,
    /// nerdctl (containerd): containers by name in a containerd namespace.
    Nerdctl,
    /// systemctl: units.
    Units,
    /// `service UNIT VERB`.
    SysV,
    /// journalctl: vacuum and rotate change the journal.
    Journal,
    /// kubectl: resources by kind and name in a namespace.
    Kube,
    /// crictl: containers, pods and images by id.
    Cri,
    /// Tools that change files (`sed -i`, `tee`, `mv`, ...): see [`FILE_TOOLS`].
    Files,
    /// Database and cache clients (`psql`, `mysql`, `redis-cli`): what their SQL or
    /// command administers, on the server they connect to (`grammar/db.rs`).
    Databases,
}

/// One tool family.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    /// How it is invoked: the program's basename and any fixed words after it.
    pub programs: &'static [&'static [&'static str]],
    /// Options of the program that take a value.
    pub valued: &'static [&'static str],
    /// State-changing verbs (one or two words) and the verb of their key.
    pub verbs: &'static [(&'static str, &'static str)],
    /// Verbs that only read: no key.
    pub read_only: &'static [&'static str],
    pub targets: Targets,
}

/// Verbs of docker/podman/nerdctl containers.
const CONTAINER_VERBS: &[(&str, &str)] = &[
    ("stop", "stop"),
    ("start", "start"),
    ("restart", "restart"),
    ("kill", "kill"),
    ("pause", "pause"),
    ("unpause", "unpause"),
    ("rm", "rm"),
    ("remove", "rm"),
    ("update", "update"),
];
const CONTAINER_READ_ONLY: &[&str] = &[
    "logs", "inspect", "ps", "ls", "stats", "top", "port", "diff", "events", "images", "version",
    "info", "df",
];
/// Options of docker/podman itself that take a value.
const DOCKER_VALUED: &[&str] = &[
    "-H",
    "--host",
    "-c",
    "--context",
    "--connection",
    "--config",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--url",
    "--root",
    "--runroot",
];
/// Options of compose itself that take a value.
const COMPOSE_VALUED: &[&str] = &[
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--profile",
    "--env-file",
    "--project-directory",
    "--ansi",
    "--progress",
    "--parallel",
    "--podman-path",
    "--podman-args",
    "--in-pod",
];
/// Options of container verbs that take a value (the value is not a target).
const CONTAINER_VERB_VALUED: &[&str] = &[
    "-t",
    "--time",
    "--timeout",
    "-s",
    "--signal",
    "--restart",
    "--cpus",
    "-m",
    "--memory",
    "--memory-swap",
    "--memory-reservation",
    "--cpu-shares",
    "-c",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--kernel-memory",
    "--pids-limit",
    "--blkio-weight",
    "--cpu-period",
    "--cpu-quota",
    "--cpu-rt-period",
    "--cpu-rt-runtime",
];
/// `docker OBJECT prune` objects.
const PRUNE_OBJECTS: &[&str] = &[
    "system",
    "image",
    "builder",
    "buildx",
    "container",
    "volume",
    "network",
];

const UNIT_VERBS: &[(&str, &str)] = &[
    ("start", "start"),
    ("stop", "stop"),
    ("restart", "restart"),
    ("reload", "reload"),
    ("try-restart", "try-restart"),
    ("reload-or-restart", "reload-or-restart"),
    ("try-reload-or-restart", "try-reload-or-restart"),
    ("condrestart", "try-restart"),
    ("force-reload", "reload-or-restart"),
    ("enable", "enable"),
    ("disable", "disable"),
    ("reenable", "reenable"),
    ("mask", "mask"),
    ("unmask", "unmask"),
    ("kill", "kill"),
    ("reset-failed", "reset-failed"),
];
const UNIT_READ_ONLY: &[&str] = &[
    "status",
    "show",
    "cat",
    "is-active",
    "is-enabled",
    "is-failed",
    "list-units",
    "list-unit-files",
    "list-timers",
    "list-sockets",
    "list-dependencies",
    "list-jobs",
    "list-machines",
    "help",
    "get-default",
    "show-environment",
];

const KUBE_VERBS: &[(&str, &str)] = &[
    ("rollout undo", "undo"),
    ("rollout restart", "restart"),
    ("rollout pause", "pause"),
    ("rollout resume", "resume"),
    ("scale", "scale"),
    ("delete", "delete"),
    ("set image", "set-image"),
    ("set env", "set-env"),
    ("set resources", "set-resources"),
    ("patch", "patch"),
    ("apply", "apply"),
    ("replace", "replace"),
    ("cordon", "cordon"),
    ("uncordon", "uncordon"),
    ("drain", "drain"),
    ("label", "label"),
    ("annotate", "annotate"),
    ("edit", "edit"),
    ("autoscale", "autoscale"),
];
const KUBE_READ_ONLY: &[&str] = &[
    "get",
    "describe",
    "logs",
    "top",
    "rollout status",
    "rollout history",
    "explain",
    "events",
    "auth can-i",
    "auth whoami",
    "api-resources",
    "api-versions",
    "cluster-info",
    "version",
    "config",
    "diff",
    "wait",
];
/// kubectl options that take a value, global or of a verb (the value is never a target).
const KUBE_VALUED: &[&str] = &[
    "-n",
    "--namespace",
    "--context",
    "--kubeconfig",
    "--cluster",
    "--user",
    "-s",
    "--server",
    "--token",
    "--as",
    "--as-group",
    "--request-timeout",
    "-f",
    "--filename",
    "-l",
    "--selector",
    "--field-selector",
    "-o",
    "--output",
    "-c",
    "--container",
    "-p",
    "--patch",
    "--type",
    "--replicas",
    "--current-replicas",
    "--to-revision",
    "--timeout",
    "--grace-period",
    "--image",
    "-k",
    "--kustomize",
    "--min",
    "--max",
    "--cpu-percent",
    "--field-manager",
    "--cascade",
];

const CRI_VERBS: &[(&str, &str)] = &[
    ("stop", "stop"),
    ("rm", "rm"),
    ("stopp", "stop"),
    ("rmp", "rm"),
    ("rmi", "rmi"),
];
const CRI_READ_ONLY: &[&str] = &[
    "ps", "pods", "images", "inspect", "inspectp", "inspecti", "logs", "stats", "info", "version",
];
const CRI_VALUED: &[&str] = &[
    "-r",
    "--runtime-endpoint",
    "-i",
    "--image-endpoint",
    "-c",
    "--config",
    "-t",
    "--timeout",
];

/// Every tool family opsgate knows.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "docker/podman",
        programs: &[&["docker"], &["podman"]],
        valued: DOCKER_VALUED,
        verbs: CONTAINER_VERBS,
        read_only: CONTAINER_READ_ONLY,
        targets: Targets::Containers,
    },
    Family {
        name: "compose",
        programs: &[&["docker-compose"], &["podman-compose"]],
        valued: COMPOSE_VALUED,
        verbs: CONTAINER_VERBS,
        read_only: CONTAINER_READ_ONLY,
        targets: Targets::Compose,
    },
    Family {
        name: "nerdctl",
        programs: &[&["nerdctl"]],
        valued: &[
            "-n",
            "--namespace",
            "-H",
            "--address",
            "--host",
            "--snapshotter",
        ],
        verbs: CONTAINER_VERBS,
        read_only: CONTAINER_READ_ONLY,
        targets: Targets::Nerdctl,
    },
    Family {
        name: "systemd",
        programs: &[&["systemctl"]],
        valued: &[
            "-H",
            "--host",
            "-M",
            "--machine",
            "-p",
            "--property",
            "-t",
            "--type",
            "-s",
            "--signal",
            "--state",
            "-n",
            "--lines",
            "-o",
            "--output",
            "--kill-whom",
            "--kill-value",
            "--root",
            "--image",
            "--job-mode",
            "--what",
            "--timestamp",
        ],
        verbs: UNIT_VERBS,
        read_only: UNIT_READ_ONLY,
        targets: Targets::Units,
    },
    Family {
        name: "sysv service",
        programs: &[&["service"]],
        valued: &[],
        verbs: UNIT_VERBS,
        read_only: &["status"],
        targets: Targets::SysV,
    },
    Family {
        name: "journald",
        programs: &[&["journalctl"]],
        valued: &[
            "-D",
            "--directory",
            "--root",
            "--image",
            "--file",
            "-M",
            "--machine",
            "-u",
            "--unit",
            "-p",
            "--priority",
            "-n",
            "--lines",
            "-o",
            "--output",
            "-S",
            "--since",
            "-U",
            "--until",
            "-t",
            "--identifier",
            "-g",
            "--grep",
            "--cursor",
            "--after-cursor",
            "-F",
            "--field",
            "--vacuum-size",
            "--vacuum-time",
            "--vacuum-files",
        ],
        verbs: &[
            ("--vacuum-size", "vacuum"),
            ("--vacuum-time", "vacuum"),
            ("--vacuum-files", "vacuum"),
            ("--rotate", "rotate"),
        ],
        read_only: &["(every other use: reading)"],
        targets: Targets::Journal,
    },
    Family {
        name: "kubernetes",
        programs: &[
            &["kubectl"],
            &["k3s", "kubectl"],
            &["microk8s", "kubectl"],
            &["microk8s.kubectl"],
            &["oc"],
        ],
        valued: KUBE_VALUED,
        verbs: KUBE_VERBS,
        read_only: KUBE_READ_ONLY,
        targets: Targets::Kube,
    },
    Family {
        name: "cri",
        programs: &[&["crictl"], &["k3s", "crictl"]],
        valued: CRI_VALUED,
        verbs: CRI_VERBS,
        read_only: CRI_READ_ONLY,
        targets: Targets::Cri,
    },
    Family {
        name: "files",
        programs: &[
            &["sed"],
            &["tee"],
            &["mv"],
            &["cp"],
            &["install"],
            &["rm"],
            &["truncate"],
            &["chmod"],
            &["chown"],
            &["chgrp"],
            &["ln"],
            &["patch"],
            &["crontab"],
            &["certbot"],
        ],
        valued: &[],
        verbs: &[("(any change to a file)", "edit")],
        read_only: &[
            "sed without -i",
            "patch --dry-run",
            "crontab -l",
            "certbot certificates",
        ],
        targets: Targets::Files,
    },
    Family {
        name: "databases",
        programs: &[&["psql"], &["mysql"], &["mariadb"], &["redis-cli"]],
        valued: &[],
        verbs: &[
            ("pg_drop_replication_slot", "drop"),
            ("ALTER SYSTEM SET, SET GLOBAL, CONFIG SET", "set=VALUE"),
            ("ALTER SYSTEM RESET", "reset"),
            ("pg_reload_conf", "reload"),
            ("pg_terminate_backend, KILL", "terminate"),
            ("pg_cancel_backend, KILL QUERY", "cancel"),
            ("VACUUM", "vacuum"),
            ("VACUUM FULL", "vacuum-full"),
            ("ANALYZE", "analyze"),
            ("REINDEX", "reindex"),
            ("CLUSTER", "cluster"),
            ("DROP INDEX, DROP TABLE, DROP ROLE", "drop"),
            ("CREATE INDEX, CREATE ROLE, ALTER ROLE", "edit"),
            ("FLUSHALL, FLUSHDB", "flush"),
        ],
        read_only: &["SELECT without an administrative function", "psql -l"],
        targets: Targets::Databases,
    },
];

/// A wrapper that runs the rest of the line as the command: its options that take a
/// value, how many positional words it takes first (`timeout 30s CMD`), and what it
/// changes about where the command runs.
#[derive(Debug)]
pub struct Wrapper {
    pub name: &'static str,
    pub valued: &'static [&'static str],
    pub positional: usize,
    pub scope: WrapperScope,
}

/// What a wrapper changes about where its command runs (see `scope.rs`).
#[derive(Debug)]
pub struct WrapperScope {
    /// Runs the command as another user: root, or the value of one of these options.
    pub user: Option<&'static [&'static str]>,
    /// Options that set the working directory (`env -C DIR`, `sudo -D DIR`).
    pub chdir: &'static [&'static str],
    /// Options after which the working directory is a home directory (`sudo -i`).
    pub home: &'static [&'static str],
    /// Resets the environment (sudo's `env_reset`) unless one of these options keeps it:
    /// what the line exported may or may not reach the command.
    pub resets_env: Option<&'static [&'static str]>,
    /// Options that empty the environment (`env -i`).
    pub clear_env: &'static [&'static str],
    /// Options that remove one variable (`env -u VAR`).
    pub unset: &'static [&'static str],
    /// Options after which the command is not readable or runs elsewhere (`env -S`,
    /// `sudo --chroot`, `sudo --host`): no key.
    pub opaque: &'static [&'static str],
    /// Whether a shell builtin after it runs in the shell itself (`command cd /x` changes
    /// the directory; `sudo cd /x` cannot; bash's `time` keyword can, dash's time cannot).
    pub builtins: Builtins,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtins {
    No,
    Yes,
    Maybe,
}

/// A wrapper that changes nothing about where its command runs.
const PLAIN: WrapperScope = WrapperScope {
    user: None,
    chdir: &[],
    home: &[],
    resets_env: None,
    clear_env: &[],
    unset: &[],
    opaque: &[],
    builtins: Builtins::No,
};

/// Wrappers seen through. Not `ssh HOST`, `chroot DIR`, `su`, `runuser` or `docker exec`:
/// they change where the command runs, so what follows them is opaque.
pub const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        name: "sudo",
        valued: &[
            "-u", "--user", "-g", "--group", "-C", "-h", "--host", "-p", "--prompt", "-U", "-r",
            "--role", "-t", "--type", "-D", "--chdir", "-R", "--chroot", "-T",
        ],
        positional: 0,
        scope: WrapperScope {
            user: Some(&["-u", "--user"]),
            chdir: &["-D", "--chdir"],
            home: &["-i", "--login"],
            resets_env: Some(&["-E", "--preserve-env"]),
            opaque: &["-R", "--chroot", "-h", "--host"],
            ..PLAIN
        },
    },
    Wrapper {
        name: "doas",
        valued: &["-u", "-C"],
        positional: 0,
        scope: WrapperScope {
            user: Some(&["-u"]),
            resets_env: Some(&[]),
            opaque: &["-C"],
            ..PLAIN
        },
    },
    Wrapper {
        name: "env",
        valued: &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"],
        positional: 0,
        scope: WrapperScope {
            chdir: &["-C", "--chdir"],
            clear_env: &["-i", "--ignore-environment", "-"],
            unset: &["-u", "--unset"],
            opaque: &["-S", "--split-string"],
            ..PLAIN
        },
    },
    Wrapper {
        name: "nohup",
        valued: &[],
        positional: 0,
        scope: PLAIN,
    },
    Wrapper {
        name: "exec",
        valued: &["-a"],
        positional: 0,
        scope: PLAIN,
    },
    Wrapper {
        name: "command",
        valued: &[],
        positional: 0,
        scope: WrapperScope {
            builtins: Builtins::Yes,
            ..PLAIN
        },
    },
    Wrapper {
        name: "time",
        valued: &["-f", "--format", "-o", "--output"],
        positional: 0,
        scope: WrapperScope {
            builtins: Builtins::Maybe,
            ..PLAIN
        },
    },
    Wrapper {
        name: "nice",
        valued: &["-n", "--adjustment"],
        positional: 0,
        scope: PLAIN,
    },
    Wrapper {
        name: "ionice",
        valued: &["-c", "--class", "-n", "--classdata"],
        positional: 0,
        scope: PLAIN,
    },
    Wrapper {
        name: "timeout",
        valued: &["-s", "--signal", "-k", "--kill-after"],
        positional: 1,
        scope: PLAIN,
    },
    Wrapper {
        name: "stdbuf",
        valued: &["-i", "--input", "-o", "--output", "-e", "--error"],
        positional: 0,
        scope: PLAIN,
    },
    Wrapper {
        name: "setsid",
        valued: &[],
        positional: 0,
        scope: PLAIN,
    },
];

/// Shells whose `-c` string is a command line of its own.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh"];

/// Logical keys of every simple command in a token list, nested shell strings included.
pub fn keys_of(tokens: &[Token], depth: usize, keys: &mut Vec<String>) {
    line_keys(tokens, depth, Scope::start(), keys);
}

fn as_strs(words: &[Option<String>]) -> Vec<Option<&str>> {
    words.iter().map(|w| w.as_deref()).collect()
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// A simple command's prefixes read: assignments and wrappers, and the scope the
/// program after them runs in.
struct Prefixes<'a> {
    /// The index of the program (or `words.len()`).
    next: usize,
    scope: Scope,
    assignments: Vec<(&'a str, Option<&'a str>)>,
    wrappers: usize,
    /// Whether a shell builtin after them runs in the shell itself.
    builtins: Builtins,
    /// A prefix no key can see through (`env -S`, `sudo --chroot`, `command -v`).
    opaque: bool,
}

fn prefixes<'a>(words: &[Option<&'a str>], scope: &Scope) -> Prefixes<'a> {
    let mut p = Prefixes {
        next: 0,
        scope: scope.clone(),
        assignments: Vec::new(),
        wrappers: 0,
        builtins: Builtins::Yes,
        opaque: false,
    };
    loop {
        let Some(Some(w)) = words.get(p.next) else {
            return p;
        };
        if let Some((name, value)) = w.split_once('=').filter(|(n, _)| is_name(n)) {
            p.scope.set_var(name, Known::Set(value.to_string()));
            p.assignments.push((name, Some(value)));
            p.next += 1;
            continue;
        }
        let Some(wrapper) = WRAPPERS.iter().find(|x| x.name == basename(w)) else {
            return p;
        };
        if wrapper.name == "command" && matches!(words.get(p.next + 1), Some(Some("-v" | "-V"))) {
            p.opaque = true; // a lookup, nothing runs
            return p;
        }
        let (options, next) = parse_leading(words, p.next + 1, wrapper.valued);
        wrap(&wrapper.scope, &options, &mut p);
        p.wrappers += 1;
        p.builtins = match (p.builtins, wrapper.scope.builtins) {
            (Builtins::No, _) | (_, Builtins::No) => Builtins::No,
            (Builtins::Maybe, _) | (_, Builtins::Maybe) => Builtins::Maybe,
            _ => Builtins::Yes,
        };
        // A wrapper whose positional arguments are missing (`timeout -k 5` and the line
        // ends) leaves no program: the index stops at the end of the words.
        p.next = (next + wrapper.positional).min(words.len());
    }
}

/// What one wrapper with these options does to its command's scope.
fn wrap(effects: &WrapperScope, options: &[Opt<'_>], p: &mut Prefixes<'_>) {
    let has = |names: &[&str]| has(options, names);
    if has(effects.opaque) {
        p.opaque = true;
    }
    if let Some(user_options) = effects.user {
        p.scope.user = match last_value(options, user_options) {
            Ok(Some(user)) => Known::Set(user.to_string()),
            Ok(None) => Known::Set("root".into()),
            Err(Uncertain) => Known::Unknown,
        };
    }
    if let Some(keep) = effects.resets_env {
        // What the line set may or may not pass (sudoers' env_keep); `-E` keeps it all,
        // `--preserve-env=LIST` the variables listed.
        let kept: Option<Vec<&str>> = match options
            .iter()
            .rev()
            .find(|(o, _)| keep.contains(&o.as_str()))
        {
            Some((_, None)) => None,
            Some((_, Some(list))) => Some(list.split(',').collect()),
            None => Some(Vec::new()),
        };
        if let Some(kept) = kept {
            for (name, value) in p.scope.vars.iter_mut() {
                if *value != Known::Default && !kept.contains(name) {
                    *value = Known::Unknown;
                }
            }
        }
    }
    if has(effects.clear_env) {
        p.scope.vars.clear();
    }
    for (option, value) in options {
        if effects.unset.contains(&option.as_str()) {
            match value {
                Some(name) => p.scope.set_var(name, Known::Default),
                None => p.opaque = true,
            }
        }
    }
    if has(effects.home) {
        p.scope.cwd = Known::Unknown;
    }
    match last_value(options, effects.chdir) {
        // `env -C DIR` is chdir(2): no CDPATH, and `..` is resolved after symbolic links.
        Ok(Some(dir)) => {
            let joined = match &p.scope.cwd {
                _ if dir.starts_with('/') => Some(dir.to_string()),
                Known::Set(cwd) => Some(format!("{cwd}/{dir}")),
                _ => None,
            };
            p.scope.cwd = match joined {
                Some(path) if !path.split('/').any(|c| c == "..") => Known::Set(clean_path(&path)),
                _ => Known::Unknown,
            };
        }
        Ok(None) => {}
        Err(Uncertain) => p.scope.cwd = Known::Unknown,
    }
}

/// An option whose value is decided at run time: what it names cannot be known.
#[derive(Debug)]
struct Uncertain;

/// One option as read: its name (`-n`, `--namespace`) and its value, if it takes one
/// (`None` also when the value is decided at run time).
type Opt<'a> = (String, Option<&'a str>);

/// The value of the last of `names` among `options`: `Ok(None)` when none is given,
/// `Err` when it is given with a value decided at run time (`-H "$HOST"`).
fn last_value<'a>(options: &[Opt<'a>], names: &[&str]) -> Result<Option<&'a str>, Uncertain> {
    match options
        .iter()
        .rev()
        .find(|(o, _)| names.contains(&o.as_str()))
    {
        None => Ok(None),
        Some((_, Some(value))) => Ok(Some(value)),
        Some((_, None)) => Err(Uncertain),
    }
}

/// Reads the option word `word` (with `next`, the word after it): `--name=value`,
/// `--name value`, `-n value`, `-n=value`, and clusters of short options as getopt and
/// pflag read them, whose valued member takes the rest of the word or the next one
/// (`-nprod`, `-Hssh://db`, `-qn prod`). Returns the options and whether `next` was
/// taken.
fn read_option<'a>(
    word: &'a str,
    next: Option<Option<&'a str>>,
    valued: &[&str],
    out: &mut Vec<Opt<'a>>,
) -> bool {
    if word.starts_with("--") {
        if let Some((name, value)) = word.split_once('=') {
            out.push((name.to_string(), Some(value)));
            return false;
        }
        if valued.contains(&word) {
            out.push((word.to_string(), next.flatten()));
            return true;
        }
        out.push((word.to_string(), None));
        return false;
    }
    if valued.contains(&word) {
        out.push((word.to_string(), next.flatten()));
        return true;
    }
    for (k, c) in word.char_indices().skip(1) {
        let name = format!("-{c}");
        if valued.contains(&name.as_str()) {
            let rest = &word[k + c.len_utf8()..];
            let rest = rest.strip_prefix('=').unwrap_or(rest);
            if rest.is_empty() {
                out.push((name, next.flatten()));
                return true;
            }
            out.push((name, Some(rest)));
            return false;
        }
        out.push((name, None));
    }
    false
}

/// Options and positional words of a command's arguments. Valued options consume the next
/// word (or carry it glued or after `=`); `--` ends the options.
struct Parsed<'a> {
    /// (option, value) for every valued option seen, and (flag, None) for the others.
    options: Vec<Opt<'a>>,
    /// Positional words in order; `None` when the shell decides them at run time.
    positional: Vec<Option<&'a str>>,
}

impl<'a> Parsed<'a> {
    /// Like [`last_value`]: for an option that chooses where the command acts.
    fn place(&self, names: &[&str]) -> Result<Option<&'a str>, Uncertain> {
        last_value(&self.options, names)
    }

    fn values(&self, names: &[&str]) -> Vec<Option<&'a str>> {
        self.options
            .iter()
            .filter(|(o, _)| names.contains(&o.as_str()))
            .map(|(_, v)| *v)
            .collect()
    }

    fn has(&self, names: &[&str]) -> bool {
        has(&self.options, names)
    }
}

fn has(options: &[Opt<'_>], names: &[&str]) -> bool {
    options.iter().any(|(o, _)| names.contains(&o.as_str()))
}

/// Reads options anywhere in `words` (kubectl and systemctl accept them after the verb).
fn parse_anywhere<'a>(words: &[Option<&'a str>], valued: &[&str]) -> Parsed<'a> {
    let mut parsed = Parsed {
        options: Vec::new(),
        positional: Vec::new(),
    };
    let mut i = 0;
    let mut options_done = false;
    while i < words.len() {
        match words[i] {
            Some("--") if !options_done => options_done = true,
            Some(w) if !options_done && w.starts_with('-') && w.len() > 1 => {
                if read_option(w, words.get(i + 1).copied(), valued, &mut parsed.options) {
                    i += 1;
                }
            }
            w => parsed.positional.push(w),
        }
        i += 1;
    }
    parsed
}

/// Reads leading options from `i`; returns them and the index of the first other word.
fn parse_leading<'a>(
    words: &[Option<&'a str>],
    mut i: usize,
    valued: &[&str],
) -> (Vec<Opt<'a>>, usize) {
    let mut options = Vec::new();
    while let Some(Some(w)) = words.get(i) {
        if !w.starts_with('-') || *w == "-" {
            break;
        }
        if *w == "--" {
            i += 1;
            break;
        }
        let took_next = read_option(w, words.get(i + 1).copied(), valued, &mut options);
        i += 1 + usize::from(took_next);
    }
    (options, i)
}

/// Keys of one simple command in `scope`: prefixes (assignments, wrappers) seen through,
/// a nested shell string read again, then the family its program belongs to.
fn simple_command_keys(
    words: &[Option<&str>],
    depth: usize,
    scope: &Scope,
    stdin: Option<&str>,
    keys: &mut Vec<String>,
) {
    let prefix = prefixes(words, scope);
    if prefix.opaque {
        return;
    }
    let i = prefix.next;
    let Some(Some(first)) = words.get(i) else {
        return;
    };
    let program = basename(first);
    if SHELLS.contains(&program) {
        nested_shell(words, i + 1, depth, &prefix.scope, keys);
        return;
    }
    for family in FAMILIES {
        for invocation in family.programs {
            let matches = invocation.iter().enumerate().all(|(n, part)| {
                let word = words.get(i + n).copied().flatten();
                if n == 0 {
                    word.map(basename) == Some(*part)
                } else {
                    word == Some(*part)
                }
            });
            if matches {
                let rest = &words[i + invocation.len()..];
                family_keys(family, program, rest, &prefix.scope, stdin, keys);
                return;
            }
        }
    }
}

/// `sh -c 'STRING'`, `bash -lc "STRING"`: the string is a command line of its own, read
/// again (up to [`MAX_DEPTH`]) in the scope the shell runs in (its directory, exported
/// variables and user). A string the shell decides at run time, or one that does not
/// tokenize, yields no keys.
fn nested_shell(
    words: &[Option<&str>],
    mut i: usize,
    depth: usize,
    scope: &Scope,
    keys: &mut Vec<String>,
) {
    if depth + 1 >= MAX_DEPTH {
        return;
    }
    let mut string_follows = false;
    while let Some(Some(w)) = words.get(i) {
        if !(w.starts_with('-') || w.starts_with('+')) || *w == "--" || *w == "-" {
            break;
        }
        // `-c`, `-lc`, `-ec`: a cluster of short options holding `c`.
        if !w.starts_with("--") && w[1..].contains('c') {
            string_follows = true;
        }
        i += 1;
    }
    if !string_follows {
        return; // `sh script.sh`: a file, not a command line
    }
    let Some(Some(string)) = words.get(i) else {
        return;
    };
    if let Ok(tokens) = tokenize(string) {
        line_keys(&tokens, depth + 1, scope.clone(), keys);
    }
}

/// The verb at the start of `positional` among `verbs` (longest first): its index in
/// the table and how many words it takes.
fn find_verb(positional: &[Option<&str>], verbs: &[(&str, &str)]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (n, (words, _)) in verbs.iter().enumerate() {
        let parts: Vec<&str> = words.split(' ').collect();
        let found = parts
            .iter()
            .enumerate()
            .all(|(k, p)| positional.get(k).copied().flatten() == Some(*p));
        if found && best.is_none_or(|(_, len)| parts.len() > len) {
            best = Some((n, parts.len()));
        }
    }
    best
}

fn is_read_only(positional: &[Option<&str>], read_only: &[&str]) -> bool {
    read_only.iter().any(|words| {
        words
            .split(' ')
            .enumerate()
            .all(|(k, p)| positional.get(k).copied().flatten() == Some(p))
    })
}

/// Where a container command acts: a docker daemon (`-H`, `--context`, `DOCKER_HOST`,
/// `DOCKER_CONTEXT`; podman's `--url`, `--connection`, `CONTAINER_HOST`, or the user of
/// a rootless podman), and for compose, its project (`-p`, `COMPOSE_PROJECT_NAME`, the
/// directory of `-f FILE` or `--project-directory`) or the directory it was run from.
/// The same name in two places is two subjects.
#[derive(Debug, Default, Clone)]
struct Place {
    daemon: Option<String>,
    project: Option<String>,
    /// A compose project known only by the directory it is run in (`cd DIR && docker
    /// compose ...`): its name is not provable (`name:` in the file or `.env` can set it),
    /// so the subject names the directory.
    workdir: Option<String>,
}

impl Place {
    fn set_host(&mut self, host: &str) {
        // The local socket is the default daemon: no qualifier.
        let local = matches!(
            host,
            "" | "unix:///var/run/docker.sock" | "unix:///run/docker.sock"
        );
        self.daemon = (!local).then(|| host.to_string());
    }

    fn set_context(&mut self, context: &str) {
        self.daemon =
            (!context.is_empty() && context != "default").then(|| format!("context:{context}"));
    }

    fn set_project(&mut self, name: &str) {
        // Compose's own normalization of project names.
        let name: String = name
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        self.project = (!name.is_empty()).then_some(name);
    }

    /// A compose file's project: the name of the directory holding it, when it has one.
    fn set_project_from_file(&mut self, file: &str) {
        let path = std::path::Path::new(file);
        let dir = path
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|d| d.to_str());
        if let Some(dir) = dir.filter(|d| *d != "." && *d != "..") {
            self.set_project(dir);
        }
    }

    fn qualify(&self, name: String) -> String {
        match &self.daemon {
            Some(daemon) => format!("{name}@{daemon}"),
            None => name,
        }
    }

    /// A container target: its name, or for a compose service with a known project, the
    /// container compose names `PROJECT-SERVICE-1` (compose v2's convention; a service
    /// scaled past one replica or renamed with `container_name:` is not matched), or with
    /// a known directory, `compose:DIR/SERVICE`.
    fn container(&self, name: &str, compose: bool) -> String {
        match (&self.project, &self.workdir, compose) {
            (Some(project), _, true) => self.qualify(format!("{project}-{name}-1")),
            (None, Some(dir), true) => self.qualify(format!("compose:{dir}/{name}")),
            _ => self.qualify(name.to_string()),
        }
    }
}

/// The daemon a docker or podman command talks to: its options first, then the
/// variables of its own manager. A variable of the other manager, or `DOCKER_CONFIG`,
/// changed by the line may choose another daemon: uncertain. A podman on the local
/// daemon acts on the containers of the user it runs as (rootless): another user is
/// another place.
fn daemon(program: &str, options: &[Opt<'_>], scope: &Scope) -> Result<Place, Uncertain> {
    let mut place = Place::default();
    let podman = program.starts_with("podman");
    if has(
        options,
        &["--config", "--root", "--runroot", "--remote", "-r"],
    ) {
        return Err(Uncertain);
    }
    let (host, context, other): (&str, &str, &[&str]) = if podman {
        (
            "CONTAINER_HOST",
            "CONTAINER_CONNECTION",
            &["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"],
        )
    } else {
        (
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            // The current context is in $DOCKER_CONFIG, by default ~/.docker.
            &[
                "CONTAINER_HOST",
                "CONTAINER_CONNECTION",
                "DOCKER_CONFIG",
                "HOME",
            ],
        )
    };
    match (
        last_value(options, &["-H", "--host", "--url"])?,
        last_value(options, &["-c", "--context", "--connection"])?,
    ) {
        // docker refuses both: nothing runs.
        (Some(_), Some(_)) => return Err(Uncertain),
        (Some(h), None) => place.set_host(h),
        (None, Some(c)) => place.set_context(c),
        (None, None) => {
            if scope.changed(other) {
                return Err(Uncertain);
            }
            match (scope.var(host), scope.var(context)) {
                (Known::Set(h), _) => place.set_host(h),
                (Known::Unknown, _) | (_, Known::Unknown) => return Err(Uncertain),
                (Known::Default, Known::Set(c)) => place.set_context(c),
                (Known::Default, Known::Default) => {}
            }
        }
    }
    if podman && place.daemon.is_none() {
        match &scope.user {
            Known::Default => {}
            Known::Set(user) => place.daemon = Some(format!("as:{user}")),
            Known::Unknown => return Err(Uncertain),
        }
    }
    Ok(place)
}

fn family_keys(
    family: &Family,
    program: &str,
    words: &[Option<&str>],
    scope: &Scope,
    stdin: Option<&str>,
    keys: &mut Vec<String>,
) {
    match family.targets {
        Targets::Containers => containers(family, program, words, scope, keys),
        Targets::Compose => {
            if let Ok(place) = daemon(program, &[], scope) {
                compose(family, words, 0, place, scope, keys)
            }
        }
        Targets::Nerdctl => nerdctl(family, words, scope, keys),
        Targets::Units => units(family, words, scope, keys),
        Targets::SysV => sysv(family, words, keys),
        Targets::Journal => journal(family, words, scope, keys),
        Targets::Kube => kube(family, words, scope, keys),
        Targets::Cri => cri(family, words, scope, keys),
        Targets::Files => files(program, words, scope, keys),
        Targets::Databases => match program {
            "psql" => db::psql(words, scope, stdin, keys),
            "redis-cli" => db::redis(words, scope, keys),
            _ => db::mysql(words, scope, stdin, keys),
        },
    }
}

fn containers(
    family: &Family,
    program: &str,
    words: &[Option<&str>],
    scope: &Scope,
    keys: &mut Vec<String>,
) {
    let (options, i) = parse_leading(words, 0, family.valued);
    let Ok(place) = daemon(program, &options, scope) else {
        return;
    };
    match words.get(i) {
        Some(Some("compose")) => compose(family, words, i + 1, place, scope, keys),
        Some(Some("container")) => container_verb(family, words, i + 1, &place, false, keys),
        Some(Some(obj)) if PRUNE_OBJECTS.contains(obj) => {
            if words.get(i + 1) == Some(&Some("prune")) {
                keys.push(place.qualify(format!("prune:{obj}")));
            }
        }
        _ => container_verb(family, words, i, &place, false, keys),
    }
}

/// A compose command: its project is `-p`, else `COMPOSE_PROJECT_NAME`, else named by
/// its directory (`--project-directory`, the first `-f FILE`, `COMPOSE_FILE`), else it is
/// the directory the command runs in. Paths are read where the command runs.
fn compose(
    family: &Family,
    words: &[Option<&str>],
    i: usize,
    mut place: Place,
    scope: &Scope,
    keys: &mut Vec<String>,
) {
    let (options, i) = parse_leading(words, i, COMPOSE_VALUED);
    let named = match last_value(&options, &["-p", "--project-name"]) {
        Err(Uncertain) => return,
        Ok(Some(name)) => Known::Set(name.to_string()),
        Ok(None) => scope.var("COMPOSE_PROJECT_NAME").clone(),
    };
    // The first file names the project.
    let file = match options.iter().find(|(o, _)| o == "-f" || o == "--file") {
        Some((_, Some(file))) => Known::Set(file.to_string()),
        Some((_, None)) => Known::Unknown,
        None => match scope.var("COMPOSE_FILE") {
            Known::Set(files) => Known::Set(files.split(':').next().unwrap_or("").to_string()),
            other => other.clone(),
        },
    };
    let directory = match last_value(&options, &["--project-directory"]) {
        Err(Uncertain) => return,
        Ok(dir) => dir,
    };
    match named {
        Known::Set(name) => place.set_project(&name),
        Known::Unknown => return,
        Known::Default => match (directory, file) {
            (Some(dir), _) => match scope.path(dir) {
                Known::Set(dir) => place.set_project_from_file(&format!("{dir}/x")),
                _ => return,
            },
            (None, Known::Set(file)) => match scope.path(&file) {
                Known::Set(file) => place.set_project_from_file(&file),
                _ => return,
            },
            (None, Known::Unknown) => return,
            (None, Known::Default) => match &scope.cwd {
                Known::Default => {}
                Known::Set(dir) => place.workdir = Some(dir.clone()),
                Known::Unknown => return,
            },
        },
    }
    container_verb(family, words, i, &place, true, keys);
}

/// `VERB target...` starting at `i`, for containers.
fn container_verb(
    family: &Family,
    words: &[Option<&str>],
    i: usize,
    place: &Place,
    compose: bool,
    keys: &mut Vec<String>,
) {
    let Some(Some(verb)) = words.get(i) else {
        return;
    };
    let verb = match *verb {
        "prune" if !compose => {
            keys.push(place.qualify("prune:container".into()));
            return;
        }
        "up" if compose => "up",
        v => match family.verbs.iter().find(|(w, _)| *w == v) {
            Some((_, key)) => *key,
            None => return,
        },
    };
    let mut j = i + 1;
    let mut options_done = false;
    while j < words.len() {
        match words[j] {
            Some("--") if !options_done => options_done = true,
            Some(opt) if !options_done && opt.starts_with('-') && opt.len() > 1 => {
                // `-t 30`: the value is not a target.
                j += usize::from(!opt.contains('=') && CONTAINER_VERB_VALUED.contains(&opt));
            }
            Some(target) if !target.is_empty() => {
                keys.push(format!("{verb}:{}", place.container(target, compose)))
            }
            _ => {} // decided at run time: no key can name it
        }
        j += 1;
    }
}

/// `@QUALIFIER` for a subject when there is one (qualifiers joined by `,`).
fn at(qualifiers: &[String]) -> String {
    if qualifiers.is_empty() {
        String::new()
    } else {
        format!("@{}", qualifiers.join(","))
    }
}

/// The user a per-user manager acts for (rootless nerdctl, `systemctl --user`, the
/// kubeconfig in a home directory): the invoking user needs no qualifier.
fn user_qualifier(scope: &Scope, qualifiers: &mut Vec<String>) -> Result<(), Uncertain> {
    match &scope.user {
        Known::Default => Ok(()),
        Known::Set(user) => {
            qualifiers.push(format!("as:{user}"));
            Ok(())
        }
        Known::Unknown => Err(Uncertain),
    }
}

/// nerdctl: a containerd namespace (`-n`, `CONTAINERD_NAMESPACE`) and address (`-H`,
/// `--address`, `CONTAINERD_ADDRESS`), or the user of a rootless containerd.
fn nerdctl(family: &Family, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let (options, i) = parse_leading(words, 0, family.valued);
    let namespace = match last_value(&options, &["-n", "--namespace"]) {
        Err(Uncertain) => return,
        Ok(Some(ns)) => ns.to_string(),
        Ok(None) => match scope.var("CONTAINERD_NAMESPACE") {
            Known::Default => "default".to_string(),
            Known::Set(ns) => ns.clone(),
            Known::Unknown => return,
        },
    };
    let mut qualifiers = Vec::new();
    match last_value(&options, &["-H", "--address", "--host"]) {
        Err(Uncertain) => return,
        Ok(Some(address)) => qualifiers.push(address.to_string()),
        Ok(None) => match scope.var("CONTAINERD_ADDRESS") {
            Known::Default => {
                if user_qualifier(scope, &mut qualifiers).is_err() {
                    return;
                }
            }
            Known::Set(address) => qualifiers.push(address.clone()),
            Known::Unknown => return,
        },
    }
    let i = if words.get(i) == Some(&Some("container")) {
        i + 1
    } else {
        i
    };
    let mut found = Vec::new();
    container_verb(family, words, i, &Place::default(), false, &mut found);
    let at = at(&qualifiers);
    for key in found {
        match key.split_once(':') {
            Some(("prune", _)) => keys.push(format!("prune:nerdctl-containers:{namespace}{at}")),
            Some((verb, name)) => keys.push(format!("{verb}:nerdctl:{namespace}/{name}{at}")),
            None => {}
        }
    }
}

/// A unit's full name: without a type suffix it is a `.service`, as systemctl reads it.
fn unit_name(name: &str) -> String {
    const TYPES: &[&str] = &[
        "service",
        "socket",
        "timer",
        "target",
        "mount",
        "automount",
        "path",
        "slice",
        "scope",
        "device",
        "swap",
    ];
    match name.rsplit_once('.') {
        Some((_, suffix)) if TYPES.contains(&suffix) => name.to_string(),
        _ => format!("{name}.service"),
    }
}

fn unit_subject(name: &str, user: bool, qualifiers: &[String]) -> String {
    format!(
        "{}:{}{}",
        if user { "user-unit" } else { "unit" },
        unit_name(name),
        at(qualifiers)
    )
}

/// Where systemctl acts: another host (`-H`, bare as before), a container (`-M`), an
/// offline root or image (`--root`, `--image`), all users (`--global`), and for
/// `--user` the user it runs as, whose manager it finds through `XDG_RUNTIME_DIR`.
fn unit_qualifiers(parsed: &Parsed<'_>, scope: &Scope) -> Result<Vec<String>, Uncertain> {
    let mut qualifiers = Vec::new();
    let host = parsed.place(&["-H", "--host"])?;
    let machine = parsed.place(&["-M", "--machine"])?;
    qualifiers.extend(host.map(str::to_string));
    qualifiers.extend(machine.map(|m| format!("machine:{m}")));
    for (name, option) in [("root", "--root"), ("image", "--image")] {
        if let Some(path) = parsed.place(&[option])? {
            match scope.path(path) {
                Known::Set(path) => qualifiers.push(format!("{name}:{path}")),
                _ => return Err(Uncertain),
            }
        }
    }
    if parsed.has(&["--global"]) {
        qualifiers.push("global".into());
    }
    if parsed.has(&["--user"]) && host.is_none() && machine.is_none() {
        if scope.changed(&["XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"]) {
            return Err(Uncertain);
        }
        user_qualifier(scope, &mut qualifiers)?;
    }
    Ok(qualifiers)
}

fn units(family: &Family, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, family.valued);
    if is_read_only(&parsed.positional, family.read_only) {
        return;
    }
    let Some((n, len)) = find_verb(&parsed.positional, family.verbs) else {
        return;
    };
    let verb = family.verbs[n].1;
    let user = parsed.has(&["--user", "--global"]);
    let Ok(qualifiers) = unit_qualifiers(&parsed, scope) else {
        return;
    };
    let now = parsed.has(&["--now"]);
    for unit in parsed.positional[len..].iter().flatten() {
        let subject = unit_subject(unit, user, &qualifiers);
        keys.push(format!("{verb}:{subject}"));
        // `enable --now` starts the unit too; `disable --now` and `mask --now` stop it.
        match (verb, now) {
            ("enable", true) => keys.push(format!("start:{subject}")),
            ("disable" | "mask", true) => keys.push(format!("stop:{subject}")),
            _ => {}
        }
    }
}

fn sysv(family: &Family, words: &[Option<&str>], keys: &mut Vec<String>) {
    let (_, i) = parse_leading(words, 0, family.valued);
    let (Some(Some(unit)), Some(Some(verb))) = (words.get(i), words.get(i + 1)) else {
        return;
    };
    if let Some((_, key)) = family.verbs.iter().find(|(w, _)| w == verb) {
        keys.push(format!("{key}:{}", unit_subject(unit, false, &[])));
    }
}

/// journalctl: the system journal, or the one in another directory, root, image,
/// machine or file.
fn journal(family: &Family, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, family.valued);
    let mut qualifiers = Vec::new();
    for (name, options) in [
        ("dir", &["-D", "--directory"][..]),
        ("root", &["--root"]),
        ("image", &["--image"]),
        ("file", &["--file"]),
        ("machine", &["-M", "--machine"]),
    ] {
        match parsed.place(options) {
            Err(Uncertain) => return,
            Ok(None) => {}
            Ok(Some(value)) if name == "machine" => qualifiers.push(format!("{name}:{value}")),
            Ok(Some(path)) => match scope.path(path) {
                Known::Set(path) => qualifiers.push(format!("{name}:{path}")),
                _ => return,
            },
        }
    }
    for (option, _) in &parsed.options {
        if let Some((_, key)) = family.verbs.iter().find(|(o, _)| o == option) {
            keys.push(format!("{key}:journal:system{}", at(&qualifiers)));
        }
    }
}

/// A Kubernetes kind as one canonical singular name.
fn kube_kind(kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    // `deployment.apps` and friends: the group does not change the kind.
    let kind = kind.split_once('.').map_or(kind.as_str(), |(k, _)| k);
    let canonical = match kind {
        "deploy" | "deployment" | "deployments" => "deployment",
        "sts" | "statefulset" | "statefulsets" => "statefulset",
        "ds" | "daemonset" | "daemonsets" => "daemonset",
        "rs" | "replicaset" | "replicasets" => "replicaset",
        "po" | "pod" | "pods" => "pod",
        "svc" | "service" | "services" => "service",
        "cm" | "configmap" | "configmaps" => "configmap",
        "secret" | "secrets" => "secret",
        "job" | "jobs" => "job",
        "cj" | "cronjob" | "cronjobs" => "cronjob",
        "ing" | "ingress" | "ingresses" => "ingress",
        "pvc" | "persistentvolumeclaim" | "persistentvolumeclaims" => "persistentvolumeclaim",
        "pv" | "persistentvolume" | "persistentvolumes" => "persistentvolume",
        "no" | "node" | "nodes" => "node",
        "ns" | "namespace" | "namespaces" => "namespace",
        "hpa" | "horizontalpodautoscaler" | "horizontalpodautoscalers" => "horizontalpodautoscaler",
        "sa" | "serviceaccount" | "serviceaccounts" => "serviceaccount",
        other => other,
    };
    canonical.to_string()
}

/// Kinds that live outside namespaces.
fn cluster_scoped(kind: &str) -> bool {
    matches!(
        kind,
        "node"
            | "namespace"
            | "persistentvolume"
            | "clusterrole"
            | "clusterrolebinding"
            | "storageclass"
            | "customresourcedefinition"
    )
}

/// Which cluster kubectl talks to: its kubeconfig (`--kubeconfig`, `KUBECONFIG`, else the
/// one in the home of the user it runs as) and the `--context`, `--cluster`, `--server`
/// and `--user` chosen in it.
fn kube_qualifiers(parsed: &Parsed<'_>, scope: &Scope) -> Result<Vec<String>, Uncertain> {
    let mut qualifiers = Vec::new();
    let kubeconfig = match parsed.place(&["--kubeconfig"])? {
        Some(path) => scope.path(path),
        None => match scope.var("KUBECONFIG") {
            // A list of files: each read where the command runs.
            Known::Set(list) => {
                let paths: Vec<Known> = list.split(':').map(|p| scope.path(p)).collect();
                if paths.contains(&Known::Unknown) {
                    Known::Unknown
                } else {
                    let paths: Vec<&str> = paths
                        .iter()
                        .filter_map(|p| match p {
                            Known::Set(p) => Some(p.as_str()),
                            _ => None,
                        })
                        .collect();
                    Known::Set(paths.join(":"))
                }
            }
            other => other.clone(),
        },
    };
    match kubeconfig {
        Known::Set(path) => qualifiers.push(format!("kubeconfig:{path}")),
        Known::Unknown => return Err(Uncertain),
        Known::Default => {
            if scope.changed(&["HOME"]) {
                return Err(Uncertain);
            }
            user_qualifier(scope, &mut qualifiers)?;
        }
    }
    for (name, options) in [
        ("context", &["--context"][..]),
        ("cluster", &["--cluster"]),
        ("server", &["-s", "--server"]),
        ("user", &["--user"]),
    ] {
        if let Some(value) = parsed.place(options)? {
            qualifiers.push(format!("{name}:{value}"));
        }
    }
    Ok(qualifiers)
}

fn kube(family: &Family, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, family.valued);
    if is_read_only(&parsed.positional, family.read_only) {
        return;
    }
    let Some((n, len)) = find_verb(&parsed.positional, family.verbs) else {
        return;
    };
    let verb = family.verbs[n].1;
    if parsed.has(&["-A", "--all-namespaces"]) {
        return; // every namespace: no one subject names it
    }
    let namespace = match parsed.place(&["-n", "--namespace"]) {
        Err(Uncertain) => return,
        Ok(namespace) => namespace.unwrap_or("default"),
    };
    let Ok(qualifiers) = kube_qualifiers(&parsed, scope) else {
        return;
    };
    let at = at(&qualifiers);
    let subject = |body: String| format!("k8s:{body}{at}");
    let resource = |kind: &str, name: &str| {
        let kind = kube_kind(kind);
        if cluster_scoped(&kind) {
            subject(format!("{kind}/{name}"))
        } else {
            subject(format!("{namespace}/{kind}/{name}"))
        }
    };
    let args = &parsed.positional[len..];
    match verb {
        // A manifest: the file is the target.
        "apply" | "replace" => {
            for file in parsed.values(&["-f", "--filename"]) {
                match file.map(|f| scope.path(f)) {
                    Some(Known::Set(file)) => {
                        keys.push(format!("{verb}:{}", subject(format!("file:{file}"))))
                    }
                    _ => return,
                }
            }
        }
        "cordon" | "uncordon" | "drain" => {
            for node in args.iter().flatten() {
                keys.push(format!("{verb}:{}", resource("node", node)));
            }
        }
        _ => {
            // A selector names no one object.
            if parsed.has(&["-l", "--selector", "--all"]) {
                return;
            }
            let literal: Vec<&str> = args.iter().copied().map_while(|a| a).collect();
            let named = |w: &str| !w.contains('=') && !w.ends_with('-') && !w.contains(',');
            match literal.first() {
                Some(first) if first.contains('/') => {
                    for target in literal.iter().filter(|w| named(w)) {
                        if let Some((kind, name)) = target.split_once('/') {
                            keys.push(format!("{verb}:{}", resource(kind, name)));
                        }
                    }
                }
                Some(kind) if !kind.contains(',') => {
                    for name in literal[1..].iter().filter(|w| named(w)) {
                        keys.push(format!("{verb}:{}", resource(kind, name)));
                    }
                }
                _ => {}
            }
        }
    }
}

/// crictl: the runtime endpoint (`-r`, `CONTAINER_RUNTIME_ENDPOINT`) when the line
/// names one; another config file (`-c`) may name any.
fn cri(family: &Family, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let (options, i) = parse_leading(words, 0, family.valued);
    if has(&options, &["-c", "--config"]) {
        return;
    }
    let endpoint = match last_value(&options, &["-r", "--runtime-endpoint"]) {
        Err(Uncertain) => return,
        Ok(Some(endpoint)) => Some(endpoint.to_string()),
        Ok(None) => match scope.var("CONTAINER_RUNTIME_ENDPOINT") {
            Known::Default => None,
            Known::Set(endpoint) => Some(endpoint.clone()),
            Known::Unknown => return,
        },
    };
    let at = at(&Vec::from_iter(endpoint));
    let Some(Some(verb)) = words.get(i) else {
        return;
    };
    let Some((_, key)) = family.verbs.iter().find(|(w, _)| w == verb) else {
        return;
    };
    let parsed = parse_anywhere(&words[i + 1..], family.valued);
    let object = match *verb {
        "stopp" | "rmp" => "cri-pod",
        "rmi" => "cri-image",
        _ => "cri",
    };
    if *verb == "rmi" && parsed.has(&["--prune"]) {
        keys.push(format!("prune:cri:images{at}"));
        return;
    }
    if parsed.has(&["-a", "--all"]) {
        return; // every one of them: no one subject names it
    }
    for id in parsed.positional.iter().flatten() {
        keys.push(format!("{key}:{object}:{id}{at}"));
    }
}

/// The verb of every file change (and of a database object's change a key cannot spell,
/// `grammar/sql.rs`): two changes of one file share a card, and since the
/// key does not say what the change is, approving one never supersedes another (see
/// `lifecycle::supersedes`).
pub const EDIT: &str = "edit";

/// Which operands a file tool changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changes {
    /// Every operand (`rm`, `truncate`, `tee`).
    Every,
    /// Every operand after the first (`chmod MODE FILE...`), unless `--reference`.
    AfterFirst,
    /// Every operand after the script (`sed -i SCRIPT FILE...`; with `-e`/`-f`, all).
    SedFiles,
    /// The destination (`cp`, `install`, `ln`): the last operand, or each source's name
    /// in the target directory.
    Destination,
    /// Both ends (`mv`): every source and the destination.
    BothEnds,
    /// The first operand (`patch FILE`).
    First,
}

/// A tool that changes files: its program, its options that take a value, the option
/// without which it changes nothing (`sed -i`), options with which it changes nothing
/// (`patch --dry-run`), and which operands it changes.
struct FileTool {
    program: &'static str,
    valued: &'static [&'static str],
    needs: &'static [&'static str],
    never: &'static [&'static str],
    changes: Changes,
}

const MOVE_VALUED: &[&str] = &["-S", "--suffix", "-t", "--target-directory"];

const FILE_TOOLS: &[FileTool] = &[
    FileTool {
        program: "sed",
        valued: &["-e", "--expression", "-f", "--file", "-l", "--line-length"],
        needs: &["-i", "--in-place"],
        never: &[],
        changes: Changes::SedFiles,
    },
    FileTool {
        program: "tee",
        valued: &[],
        needs: &[],
        never: &[],
        changes: Changes::Every,
    },
    FileTool {
        program: "rm",
        valued: &[],
        needs: &[],
        never: &[],
        changes: Changes::Every,
    },
    FileTool {
        program: "truncate",
        valued: &["-s", "--size", "-r", "--reference"],
        needs: &[],
        never: &[],
        changes: Changes::Every,
    },
    FileTool {
        program: "chmod",
        valued: &[],
        needs: &[],
        never: &[],
        changes: Changes::AfterFirst,
    },
    FileTool {
        program: "chown",
        valued: &[],
        needs: &[],
        never: &[],
        changes: Changes::AfterFirst,
    },
    FileTool {
        program: "chgrp",
        valued: &[],
        needs: &[],
        never: &[],
        changes: Changes::AfterFirst,
    },
    FileTool {
        program: "mv",
        valued: MOVE_VALUED,
        needs: &[],
        never: &[],
        changes: Changes::BothEnds,
    },
    FileTool {
        program: "cp",
        valued: MOVE_VALUED,
        needs: &[],
        never: &[],
        changes: Changes::Destination,
    },
    FileTool {
        program: "ln",
        valued: MOVE_VALUED,
        needs: &[],
        never: &[],
        changes: Changes::Destination,
    },
    FileTool {
        program: "install",
        valued: &[
            "-S",
            "--suffix",
            "-t",
            "--target-directory",
            "-m",
            "--mode",
            "-o",
            "--owner",
            "-g",
            "--group",
        ],
        needs: &[],
        never: &[],
        changes: Changes::Destination,
    },
    FileTool {
        program: "patch",
        valued: &[
            "-p",
            "--strip",
            "-i",
            "--input",
            "-o",
            "--output",
            "-d",
            "--directory",
            "-B",
            "--prefix",
            "-D",
            "--ifdef",
            "-F",
            "--fuzz",
            "-r",
            "--reject-file",
            "-V",
            "--version-control",
            "-z",
            "--suffix",
            "-Y",
            "--basename-prefix",
            "-g",
            "--get",
            "--quoting-style",
        ],
        needs: &[],
        // `-o`: the output file changes, not the original (not followed: no key); `-d`:
        // the operand is read in another directory.
        never: &["--dry-run", "-o", "--output", "-d", "--directory"],
        changes: Changes::First,
    },
];

/// Files, crontabs and certificates: `edit:file:/ABS/PATH` (`edit:unit:NAME.service`
/// too for a quadlet), `edit:crontab:USER`, `edit:cert:NAME`.
fn files(program: &str, words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    match program {
        "crontab" => return crontab(words, scope, keys),
        "certbot" => return certbot(words, keys),
        _ => {}
    }
    let Some(tool) = FILE_TOOLS.iter().find(|t| t.program == program) else {
        return;
    };
    // `chmod --reference=F FILE`: every operand is a file.
    let mut valued = tool.valued.to_vec();
    if tool.changes == Changes::AfterFirst {
        valued.extend(["--reference", "--from"]);
    }
    let parsed = parse_anywhere(words, &valued);
    if (!tool.needs.is_empty() && !parsed.has(tool.needs)) || parsed.has(tool.never) {
        return;
    }
    let operands = &parsed.positional;
    let mut changed: Vec<Option<String>> = Vec::new();
    let literal = |w: &Option<&str>| w.map(str::to_string);
    match tool.changes {
        Changes::Every => changed.extend(operands.iter().map(literal)),
        Changes::AfterFirst => {
            let skip = usize::from(!parsed.has(&["--reference"]));
            changed.extend(operands.iter().skip(skip).map(literal));
        }
        Changes::SedFiles => {
            let skip = usize::from(!parsed.has(&["-e", "--expression", "-f", "--file"]));
            changed.extend(operands.iter().skip(skip).map(literal));
        }
        Changes::First => changed.extend(operands.first().map(literal)),
        Changes::Destination | Changes::BothEnds => {
            if program == "install" && parsed.has(&["-d", "--directory"]) {
                changed.extend(operands.iter().map(literal));
            } else {
                let Ok(ends) = destinations(&parsed) else {
                    return;
                };
                if tool.changes == Changes::BothEnds {
                    changed.extend(ends.sources.iter().map(literal));
                }
                // A backup to a fresh name is no shared subject.
                changed.extend(
                    ends.destinations
                        .into_iter()
                        .filter(|d| d.as_deref().is_some_and(|d| !is_backup_name(d))),
                );
            }
        }
    }
    for path in changed.iter().flatten() {
        file_keys(path, scope, keys);
    }
}

/// The sources and destinations of `cp`/`mv`/`ln`/`install`: `SRC DEST`, `SRC... DIR`,
/// `-t DIR SRC...`, and `ln TARGET` (a link named after it in the working directory).
struct Ends<'a> {
    sources: Vec<Option<&'a str>>,
    destinations: Vec<Option<String>>,
}

fn destinations<'a>(parsed: &Parsed<'a>) -> Result<Ends<'a>, Uncertain> {
    let operands = &parsed.positional;
    let into = |dir: &str, source: &Option<&str>| {
        source.map(|s| format!("{}/{}", dir.trim_end_matches('/'), basename(s)))
    };
    if let Some(dir) = parsed.place(&["-t", "--target-directory"])? {
        return Ok(Ends {
            sources: operands.clone(),
            destinations: operands.iter().map(|s| into(dir, s)).collect(),
        });
    }
    match operands.as_slice() {
        [] => Err(Uncertain),
        // `ln -s TARGET`: the link is named after the target, in the working directory.
        [only] => Ok(Ends {
            sources: Vec::new(),
            destinations: vec![into(".", only)],
        }),
        [sources @ .., last] => {
            let Some(last) = last else {
                return Err(Uncertain);
            };
            // Into a directory when it says so (`DIR/`) or takes several sources;
            // `SRC DEST` changes what is at DEST whether it is a file or a directory.
            let dir = last.ends_with('/') || sources.len() > 1;
            let destinations = if dir && !parsed.has(&["-T", "--no-target-directory"]) {
                sources.iter().map(|s| into(last, s)).collect()
            } else {
                vec![Some(last.to_string())]
            };
            Ok(Ends {
                sources: sources.to_vec(),
                destinations,
            })
        }
    }
}

/// Whether a file name looks like a backup: `.bak`, `.orig`, `.old`, `.save`, `~`, or a
/// date in its name (`x.conf.20261203`, `x.conf.bak-2026-12-03`).
fn is_backup_name(path: &str) -> bool {
    let name = basename(path);
    if name.ends_with('~') {
        return true;
    }
    let backupish = name.split(['.', '-', '_']).skip(1).any(|part| {
        matches!(
            part.to_ascii_lowercase().as_str(),
            "bak" | "orig" | "old" | "save" | "backup" | "bk" | "prev" | "dist"
        )
    });
    let digits: Vec<u32> = name.chars().filter_map(|c| c.to_digit(10)).collect();
    // Four digits of a year 19xx/20xx followed by at least a month and a day.
    let dated = name.char_indices().any(|(i, _)| looks_dated(&name[i..])) && digits.len() >= 8;
    backupish || dated
}

fn looks_dated(s: &str) -> bool {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (s.starts_with("19") || s.starts_with("20"))
        && (0..4).all(digit)
        && ((4..8).all(digit)
            || (matches!(b.get(4), Some(b'-' | b'_' | b'.'))
                && (5..7).all(digit)
                && matches!(b.get(7), Some(b'-' | b'_' | b'.'))
                && (8..10).all(digit)))
}

/// A file a command changes, as a subject: absolute, lexically clean; relative only in a
/// working directory the line set for certain. No key for what cannot be certain: `..`
/// (resolved after symbolic links), `~`, glob and brace patterns, devices (`/dev/null`).
fn file_subject(path: &str, scope: &Scope) -> Option<String> {
    if path.is_empty()
        || path.starts_with('~')
        || path.contains(['*', '?', '[', '{'])
        || path.split('/').any(|c| c == "..")
    {
        return None;
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        match &scope.cwd {
            Known::Set(dir) => format!("{dir}/{path}"),
            _ => return None,
        }
    };
    let path = clean_path(&path);
    (path != "/" && path != "/dev" && !path.starts_with("/dev/")).then_some(path)
}

/// Quadlet's system directory: a unit file there generates a service.
const QUADLET_DIR: &str = "/etc/containers/systemd";

/// The unit a quadlet file generates (`NAME.container` -> `NAME.service`,
/// `NAME.pod` -> `NAME-pod.service`, ...), by quadlet's default naming.
fn quadlet_unit(path: &str) -> Option<String> {
    let name = path.strip_prefix(QUADLET_DIR)?.strip_prefix('/')?;
    if name.contains('/') {
        return None;
    }
    let (stem, kind) = name.rsplit_once('.')?;
    let unit = match kind {
        "container" | "kube" => stem.to_string(),
        "pod" | "volume" | "network" => format!("{stem}-{kind}"),
        _ => return None,
    };
    (!stem.is_empty()).then(|| format!("{unit}.service"))
}

/// The keys of a change to the file at `path` (as written, read in `scope`).
fn file_keys(path: &str, scope: &Scope, keys: &mut Vec<String>) {
    let Some(path) = file_subject(path, scope) else {
        return;
    };
    if let Some(unit) = quadlet_unit(&path) {
        keys.push(format!("{EDIT}:{}", unit_subject(&unit, false, &[])));
    }
    keys.push(format!("{EDIT}:file:{path}"));
}

/// `crontab FILE`, `crontab -`, `-e`, `-r`: the crontab of the user (`-u USER`, else the
/// user the command runs as). A crontab is named by its user, not by its file: where
/// cron keeps it differs between distributions. `-l` only reads.
fn crontab(words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, &["-u"]);
    if parsed.has(&["-l"]) {
        return;
    }
    if !parsed.has(&["-e", "-r"]) && parsed.positional.is_empty() && !words.contains(&Some("-")) {
        return; // reads a crontab from standard input only when told (`-`)
    }
    let user = match parsed.place(&["-u"]) {
        Err(Uncertain) => return,
        Ok(Some(user)) => Some(user.to_string()),
        Ok(None) => match &scope.user {
            Known::Default => None,
            Known::Set(user) => Some(user.clone()),
            Known::Unknown => return,
        },
    };
    match user {
        Some(user) => keys.push(format!("{EDIT}:crontab:{user}")),
        None => keys.push(format!("{EDIT}:crontab")),
    }
}

/// `certbot ... --cert-name NAME`: the certificate lineage NAME, unless the command only
/// reads (`certificates`, `--dry-run`) or keeps its certificates elsewhere
/// (`--config-dir`).
fn certbot(words: &[Option<&str>], keys: &mut Vec<String>) {
    let parsed = parse_anywhere(
        words,
        &[
            "--cert-name",
            "-d",
            "--domains",
            "--domain",
            "-m",
            "--email",
            "-w",
            "--webroot-path",
            "-a",
            "--authenticator",
            "-i",
            "--installer",
            "--config-dir",
            "--work-dir",
            "--logs-dir",
            "--server",
            "--preferred-challenges",
            "--deploy-hook",
            "--pre-hook",
            "--post-hook",
            "--key-type",
            "--rsa-key-size",
            "-c",
            "--config",
        ],
    );
    let reads = matches!(
        parsed.positional.first(),
        Some(Some("certificates" | "plugins" | "show_account" | "help"))
    );
    if reads || parsed.has(&["--dry-run", "--config-dir", "-c", "--config"]) {
        return;
    }
    if let Ok(Some(name)) = parsed.place(&["--cert-name"]) {
        if !name.is_empty() {
            keys.push(format!("{EDIT}:cert:{name}"));
        }
    }
}

/// systemd's unit types, as a unit name ends.
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".slice",
    ".scope",
];

/// A database subject's kind (`pg-slot`, `redis-db`): how a card names its family and
/// its kind (`("", "slot")`, `("redis ", "database")`).
fn db_kind(kind: &str) -> Option<(&'static str, &'static str)> {
    let (family, what) = kind.split_once('-')?;
    let family = match family {
        "pg" => "",
        "mysql" => "MySQL ",
        "redis" => "redis ",
        _ => return None,
    };
    let what = match what {
        "slot" => "slot",
        "setting" | "config" if family == "redis " => "setting",
        "setting" => "setting",
        "config" => "configuration of",
        "backend" => "backend",
        "role" => "role",
        "table" => "table",
        "index" => "index",
        "db" => "database",
        _ => return None,
    };
    Some((family, what))
}

/// How a card names a subject: `container web`, `unit fail2ban.service`,
/// `deployment shop/api`.
pub fn subject_label(subject: &str) -> String {
    // A path or a name may hold `@`: these subjects have no place qualifier.
    match subject.split_once(':') {
        Some(("file", path)) => return format!("file {path}"),
        Some(("crontab", user)) => return format!("crontab of user {user}"),
        Some(("cert", name)) => return format!("certificate {name}"),
        None if subject == "crontab" => return "crontab".to_string(),
        _ => {}
    }
    // A template unit's instance is part of its name (`unit:postgresql@15-main.service`):
    // a unit's place follows the `@` after its type suffix.
    let (body, place) = match subject.split_once('@') {
        Some((kind, _)) if kind.starts_with("unit:") || kind.starts_with("user-unit:") => {
            match subject
                .match_indices('@')
                .map(|(i, _)| i)
                .find(|&i| UNIT_SUFFIXES.iter().any(|s| subject[..i].ends_with(s)))
            {
                Some(i) => (&subject[..i], Some(&subject[i + 1..])),
                None => (subject, None),
            }
        }
        Some((body, place)) => (body, Some(place)),
        None => (subject, None),
    };
    let named = match body.split_once(':') {
        None => format!("container {body}"),
        Some(("unit", unit)) => format!("unit {unit}"),
        Some(("user-unit", unit)) => format!("user unit {unit}"),
        Some(("journal", which)) => format!("the {which} journal"),
        Some(("cri", id)) => format!("CRI container {id}"),
        Some(("cri-pod", id)) => format!("CRI pod {id}"),
        Some(("cri-image", id)) => format!("CRI image {id}"),
        Some(("nerdctl", name)) => format!("nerdctl container {name}"),
        Some(("compose", path)) => match path.rsplit_once('/') {
            Some((dir, service)) => format!("compose service {service} in {dir}"),
            None => format!("compose service {path}"),
        },
        Some(("prune", what)) => format!("{what} prune"),
        Some((kind, name)) if db_kind(kind).is_some() => {
            let (family, what) = db_kind(kind).unwrap_or_default();
            // A table or index lives in one database of its server: `in DB on HOST:PORT`.
            if let Some((server, database)) = place.and_then(|p| p.split_once('/')) {
                if matches!(what, "table" | "index") && !server.is_empty() {
                    return format!("{family}{what} {name} in {database} on {server}");
                }
            }
            if what == "database" && name == "all" {
                format!("every {family}{what}")
            } else {
                format!("{family}{what} {name}")
            }
        }
        Some(("k8s", rest)) => match rest.split_once(':') {
            Some(("file", file)) => format!("manifest {file}"),
            _ => {
                let parts: Vec<&str> = rest.split('/').collect();
                match parts.as_slice() {
                    [ns, kind, name] => format!("{kind} {ns}/{name}"),
                    [kind, name] => format!("{kind} {name}"),
                    _ => format!("k8s {rest}"),
                }
            }
        },
        Some(_) => body.to_string(),
    };
    match place {
        Some(place) => match place.strip_prefix("as:") {
            Some(user) => format!("{named} of user {user}"),
            None => format!("{named} on {place}"),
        },
        None => named,
    }
}
