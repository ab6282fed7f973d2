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
//! `k8s:shop/deployment/api`, `journal:system`, `cri:ID`, `nerdctl:default/web`).

use super::{is_name, tokenize, Token};

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
        valued: &[],
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
];

/// A wrapper that runs the rest of the line as the command: its options that take a
/// value and how many positional words it takes first (`timeout 30s CMD`).
#[derive(Debug)]
pub struct Wrapper {
    pub name: &'static str,
    pub valued: &'static [&'static str],
    pub positional: usize,
}

/// Wrappers seen through. Not `ssh HOST`, `chroot DIR` or `docker exec`: they change
/// where the command runs, so what follows them is opaque.
pub const WRAPPERS: &[Wrapper] = &[
    Wrapper {
        name: "sudo",
        valued: &[
            "-u", "--user", "-g", "--group", "-C", "-h", "--host", "-p", "--prompt", "-U", "-r",
            "--role", "-t", "--type", "-D", "--chdir", "-R", "--chroot", "-T",
        ],
        positional: 0,
    },
    Wrapper {
        name: "doas",
        valued: &["-u", "-C"],
        positional: 0,
    },
    Wrapper {
        name: "env",
        valued: &["-u", "--unset", "-C", "--chdir", "-S", "--split-string"],
        positional: 0,
    },
    Wrapper {
        name: "nohup",
        valued: &[],
        positional: 0,
    },
    Wrapper {
        name: "exec",
        valued: &["-a"],
        positional: 0,
    },
    Wrapper {
        name: "command",
        valued: &[],
        positional: 0,
    },
    Wrapper {
        name: "time",
        valued: &["-f", "--format", "-o", "--output"],
        positional: 0,
    },
    Wrapper {
        name: "nice",
        valued: &["-n", "--adjustment"],
        positional: 0,
    },
    Wrapper {
        name: "ionice",
        valued: &["-c", "--class", "-n", "--classdata"],
        positional: 0,
    },
    Wrapper {
        name: "timeout",
        valued: &["-s", "--signal", "-k", "--kill-after"],
        positional: 1,
    },
    Wrapper {
        name: "stdbuf",
        valued: &["-i", "--input", "-o", "--output", "-e", "--error"],
        positional: 0,
    },
    Wrapper {
        name: "setsid",
        valued: &[],
        positional: 0,
    },
];

/// Shells whose `-c` string is a command line of its own.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh"];

/// Logical keys of every simple command in a token list, nested shell strings included.
pub fn keys_of(tokens: &[Token], depth: usize, keys: &mut Vec<String>) {
    let mut words: Vec<Option<String>> = Vec::new();
    let mut skip_next_word = false;
    for token in tokens {
        match token {
            Token::Word(w) => {
                if std::mem::take(&mut skip_next_word) {
                    continue; // a redirection target
                }
                words.push(w.literal());
            }
            // A here-document body is data, never a command.
            Token::HereDoc(_) => {}
            Token::Op(op) if op.contains('<') || op.contains('>') => skip_next_word = true,
            Token::Op(_) => {
                simple_command_keys(&as_strs(&words), depth, keys);
                words.clear();
            }
        }
    }
    simple_command_keys(&as_strs(&words), depth, keys);
}

fn as_strs(words: &[Option<String>]) -> Vec<Option<&str>> {
    words.iter().map(|w| w.as_deref()).collect()
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// Where a command acts, when the command says: a docker daemon (`-H`, `--context`,
/// `DOCKER_HOST=`, `DOCKER_CONTEXT=`), a compose project (`-p`, `COMPOSE_PROJECT_NAME=`,
/// the directory of `-f FILE`), a Kubernetes context or kubeconfig (`--context`,
/// `KUBECONFIG=`). The same name in two places is two subjects.
#[derive(Debug, Default, Clone)]
struct Place {
    daemon: Option<String>,
    project: Option<String>,
    kube: Option<String>,
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
    /// scaled past one replica or renamed with `container_name:` is not matched).
    fn container(&self, name: &str, compose: bool) -> String {
        match (&self.project, compose) {
            (Some(project), true) => self.qualify(format!("{project}-{name}-1")),
            _ => self.qualify(name.to_string()),
        }
    }
}

/// Options and positional words of a command's arguments. Valued options consume the next
/// word (or carry it after `=`); `--` ends the options.
struct Parsed<'a> {
    /// (option, value) for every valued option seen, and (flag, None) for the others.
    options: Vec<(&'a str, Option<&'a str>)>,
    /// Positional words in order; `None` when the shell decides them at run time.
    positional: Vec<Option<&'a str>>,
}

impl<'a> Parsed<'a> {
    fn value(&self, names: &[&str]) -> Option<&'a str> {
        self.options
            .iter()
            .rev()
            .find(|(o, v)| names.contains(o) && v.is_some())
            .and_then(|(_, v)| *v)
    }

    fn values(&self, names: &[&str]) -> Vec<&'a str> {
        self.options
            .iter()
            .filter(|(o, _)| names.contains(o))
            .filter_map(|(_, v)| *v)
            .collect()
    }

    fn has(&self, names: &[&str]) -> bool {
        self.options.iter().any(|(o, _)| names.contains(o))
    }
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
                if let Some((opt, value)) = w.split_once('=') {
                    parsed.options.push((opt, Some(value)));
                } else if valued.contains(&w) {
                    parsed
                        .options
                        .push((w, words.get(i + 1).copied().flatten()));
                    i += 1;
                } else {
                    parsed.options.push((w, None));
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
) -> (Vec<(&'a str, Option<&'a str>)>, usize) {
    let mut options = Vec::new();
    while let Some(Some(w)) = words.get(i) {
        if !w.starts_with('-') || *w == "-" {
            break;
        }
        if *w == "--" {
            i += 1;
            break;
        }
        if let Some((opt, value)) = w.split_once('=') {
            options.push((opt, Some(value)));
            i += 1;
        } else if valued.contains(w) {
            options.push((*w, words.get(i + 1).copied().flatten()));
            i += 2;
        } else {
            options.push((*w, None));
            i += 1;
        }
    }
    (options, i)
}

/// Keys of one simple command: prefixes (assignments, wrappers) seen through, a nested
/// shell string read again, then the family its program belongs to.
fn simple_command_keys(words: &[Option<&str>], depth: usize, keys: &mut Vec<String>) {
    let mut i = 0;
    let mut place = Place::default();
    // Prefixes that run the rest as a command: assignments and wrappers.
    loop {
        let Some(Some(w)) = words.get(i) else { return };
        if let Some((name, value)) = w.split_once('=').filter(|(n, _)| is_name(n)) {
            match name {
                "DOCKER_HOST" => place.set_host(value),
                "DOCKER_CONTEXT" => place.set_context(value),
                "COMPOSE_PROJECT_NAME" => place.set_project(value),
                "KUBECONFIG" => place.kube = Some(format!("kubeconfig:{value}")),
                _ => {}
            }
            i += 1;
            continue;
        }
        let Some(wrapper) = WRAPPERS.iter().find(|x| x.name == basename(w)) else {
            break;
        };
        if wrapper.name == "command" && matches!(words.get(i + 1), Some(Some("-v" | "-V"))) {
            return; // a lookup, nothing runs
        }
        let (_, next) = parse_leading(words, i + 1, wrapper.valued);
        i = next + wrapper.positional;
    }
    let Some(Some(first)) = words.get(i) else {
        return;
    };
    let program = basename(first);
    if SHELLS.contains(&program) {
        nested_shell(words, i + 1, depth, keys);
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
                family_keys(family, rest, &mut place, keys);
                return;
            }
        }
    }
}

/// `sh -c 'STRING'`, `bash -lc "STRING"`: the string is a command line of its own, read
/// again (up to [`MAX_DEPTH`]). A string the shell decides at run time, or one that does
/// not tokenize, yields no keys.
fn nested_shell(words: &[Option<&str>], mut i: usize, depth: usize, keys: &mut Vec<String>) {
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
        keys_of(&tokens, depth + 1, keys);
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

fn family_keys(family: &Family, words: &[Option<&str>], place: &mut Place, keys: &mut Vec<String>) {
    match family.targets {
        Targets::Containers => containers(family, words, place, keys),
        Targets::Compose => compose(family, words, 0, place.clone(), keys),
        Targets::Nerdctl => nerdctl(family, words, keys),
        Targets::Units => units(family, words, keys),
        Targets::SysV => sysv(family, words, keys),
        Targets::Journal => journal(family, words, keys),
        Targets::Kube => kube(family, words, place, keys),
        Targets::Cri => cri(family, words, keys),
    }
}

fn containers(family: &Family, words: &[Option<&str>], place: &mut Place, keys: &mut Vec<String>) {
    let (options, i) = parse_leading(words, 0, family.valued);
    for (opt, value) in options {
        match (opt, value) {
            ("-H" | "--host", Some(v)) => place.set_host(v),
            ("-c" | "--context" | "--connection", Some(v)) => place.set_context(v),
            _ => {}
        }
    }
    match words.get(i) {
        Some(Some("compose")) => compose(family, words, i + 1, place.clone(), keys),
        Some(Some("container")) => container_verb(family, words, i + 1, place, false, keys),
        Some(Some(obj)) if PRUNE_OBJECTS.contains(obj) => {
            if words.get(i + 1) == Some(&Some("prune")) {
                keys.push(place.qualify(format!("prune:{obj}")));
            }
        }
        _ => container_verb(family, words, i, place, false, keys),
    }
}

fn compose(
    family: &Family,
    words: &[Option<&str>],
    i: usize,
    mut place: Place,
    keys: &mut Vec<String>,
) {
    let (options, i) = parse_leading(words, i, COMPOSE_VALUED);
    let mut file_seen = false;
    for (opt, value) in options {
        match (opt, value) {
            ("-p" | "--project-name", Some(v)) => place.set_project(v),
            // The first file names the project, unless -p does.
            ("-f" | "--file", Some(v)) if !file_seen => {
                file_seen = true;
                if place.project.is_none() {
                    place.set_project_from_file(v);
                }
            }
            ("--project-directory", Some(v)) => place.set_project_from_file(&format!("{v}/x")),
            _ => {}
        }
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

fn nerdctl(family: &Family, words: &[Option<&str>], keys: &mut Vec<String>) {
    let (options, i) = parse_leading(words, 0, family.valued);
    let namespace = options
        .iter()
        .rev()
        .find(|(o, v)| matches!(*o, "-n" | "--namespace") && v.is_some())
        .and_then(|(_, v)| *v)
        .unwrap_or("default");
    let i = if words.get(i) == Some(&Some("container")) {
        i + 1
    } else {
        i
    };
    let mut found = Vec::new();
    container_verb(family, words, i, &Place::default(), false, &mut found);
    for key in found {
        match key.split_once(':') {
            Some(("prune", _)) => keys.push(format!("prune:nerdctl-containers:{namespace}")),
            Some((verb, name)) => keys.push(format!("{verb}:nerdctl:{namespace}/{name}")),
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

fn unit_subject(name: &str, user: bool, host: Option<&str>) -> String {
    let mut subject = format!(
        "{}:{}",
        if user { "user-unit" } else { "unit" },
        unit_name(name)
    );
    if let Some(host) = host {
        subject.push('@');
        subject.push_str(host);
    }
    subject
}

fn units(family: &Family, words: &[Option<&str>], keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, family.valued);
    if is_read_only(&parsed.positional, family.read_only) {
        return;
    }
    let Some((n, len)) = find_verb(&parsed.positional, family.verbs) else {
        return;
    };
    let verb = family.verbs[n].1;
    let user = parsed.has(&["--user"]);
    let host = parsed
        .value(&["-H", "--host"])
        .or(parsed.value(&["-M", "--machine"]));
    let now = parsed.has(&["--now"]);
    for unit in parsed.positional[len..].iter().flatten() {
        let subject = unit_subject(unit, user, host);
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
        keys.push(format!("{key}:{}", unit_subject(unit, false, None)));
    }
}

fn journal(family: &Family, words: &[Option<&str>], keys: &mut Vec<String>) {
    for w in words.iter().flatten() {
        let option = w.split_once('=').map_or(*w, |(o, _)| o);
        if let Some((_, key)) = family.verbs.iter().find(|(o, _)| *o == option) {
            keys.push(format!("{key}:journal:system"));
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

fn kube(family: &Family, words: &[Option<&str>], place: &Place, keys: &mut Vec<String>) {
    let parsed = parse_anywhere(words, family.valued);
    if is_read_only(&parsed.positional, family.read_only) {
        return;
    }
    let Some((n, len)) = find_verb(&parsed.positional, family.verbs) else {
        return;
    };
    let verb = family.verbs[n].1;
    let namespace = if parsed.has(&["-A", "--all-namespaces"]) {
        return; // every namespace: no one subject names it
    } else {
        parsed.value(&["-n", "--namespace"]).unwrap_or("default")
    };
    let qualifier = parsed
        .value(&["--context"])
        .map(|c| format!("context:{c}"))
        .or(parsed
            .value(&["--kubeconfig"])
            .map(|k| format!("kubeconfig:{k}")))
        .or(place.kube.clone());
    let subject = |body: String| match &qualifier {
        Some(q) => format!("k8s:{body}@{q}"),
        None => format!("k8s:{body}"),
    };
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
                keys.push(format!("{verb}:{}", subject(format!("file:{file}"))));
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

fn cri(family: &Family, words: &[Option<&str>], keys: &mut Vec<String>) {
    let (_, i) = parse_leading(words, 0, family.valued);
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
        keys.push("prune:cri:images".into());
        return;
    }
    if parsed.has(&["-a", "--all"]) {
        return; // every one of them: no one subject names it
    }
    for id in parsed.positional.iter().flatten() {
        keys.push(format!("{key}:{object}:{id}"));
    }
}

/// How a card names a subject: `container web`, `unit fail2ban.service`,
/// `deployment shop/api`.
pub fn subject_label(subject: &str) -> String {
    let (body, place) = match subject.split_once('@') {
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
        Some(("prune", what)) => format!("{what} prune"),
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
        Some(place) => format!("{named} on {place}"),
        None => named,
    }
}
