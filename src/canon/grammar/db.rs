//! Databases and caches as subjects: where `psql`, `mysql` and `redis-cli` connect (their
//! options, a conninfo string or URL, the variables of `PLACE_VARS`, the user sudo runs
//! them as), and what their SQL or command administers (`sql.rs`). A subject names its
//! server, `HOST:PORT` (`local` for the default socket), and for objects of one database,
//! that database too: `drop:pg-slot:standby_b@local:5432`,
//! `vacuum:pg-table:public.orders@db-1:5432/shop`, `flush:redis-db:0@local:6379`.
//! Whatever leaves the server uncertain gives no key; an uncertain database takes the
//! key away from tables and indexes only (slots, settings, backends and roles are the
//! server's).

use super::scope::{Known, Scope};
use super::sql::{self, Action, Level, Sql};
use super::{parse_anywhere, parse_leading, Parsed, Uncertain};

/// Where a client connects: its server (`HOST:PORT`, qualified) and database, when
/// certain.
struct Place {
    server: String,
    database: Option<String>,
}

/// The key of `action` in `family` (`pg`, `mysql`, `redis`) at `place`.
fn key(family: &str, action: &Action, place: &Place) -> Option<String> {
    let at = match action.level {
        Level::Server => place.server.clone(),
        Level::Database => format!("{}/{}", place.server, place.database.as_ref()?),
    };
    Some(format!(
        "{}:{family}-{}:{}@{at}",
        action.verb, action.kind, action.name
    ))
}

/// A literal value a place is built from, or uncertain.
fn value_of(known: &Known) -> Result<Option<String>, Uncertain> {
    match known {
        Known::Default => Ok(None),
        Known::Set(v) => Ok(Some(v.clone())),
        Known::Unknown => Err(Uncertain),
    }
}

/// One connection parameter: the option's value, else the variable's, else none;
/// given two different ways it is uncertain (which one wins is libpq's order).
fn merge(explicit: Option<String>, other: Option<String>) -> Result<Option<String>, Uncertain> {
    match (explicit, other) {
        (Some(a), Some(b)) if a != b => Err(Uncertain),
        (a, b) => Ok(a.or(b)),
    }
}

const PSQL_VALUED: &[&str] = &[
    "-c",
    "--command",
    "-d",
    "--dbname",
    "-f",
    "--file",
    "-h",
    "--host",
    "-p",
    "--port",
    "-U",
    "--username",
    "-v",
    "--set",
    "--variable",
    "-o",
    "--output",
    "-L",
    "--log-file",
    "-P",
    "--pset",
    "-T",
    "--table-attr",
    "-F",
    "--field-separator",
    "-R",
    "--record-separator",
    "--cluster",
];

/// Connection parameters of libpq read from a conninfo string (`host=db port=5433`) or a
/// URL (`postgresql://u@db:5433/shop?sslmode=require`). Parameters that could move the
/// connection in ways a subject cannot name (`hostaddr`, `options`, lists of hosts,
/// escapes) make it uncertain.
fn conninfo(text: &str) -> Result<Vec<(String, String)>, Uncertain> {
    let mut params = Vec::new();
    if let Some(rest) = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
    {
        if rest.contains(['%', '[']) {
            return Err(Uncertain);
        }
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = main.split_once('/').unwrap_or((main, ""));
        let hostport = match authority.rsplit_once('@') {
            Some((user, hostport)) => {
                let user = user.split_once(':').map_or(user, |(u, _)| u);
                if !user.is_empty() {
                    params.push(("user".to_string(), user.to_string()));
                }
                hostport
            }
            None => authority,
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if !host.is_empty() {
            params.push(("host".to_string(), host.to_string()));
        }
        if let Some(port) = port {
            params.push(("port".to_string(), port.to_string()));
        }
        if !path.is_empty() {
            params.push(("dbname".to_string(), path.to_string()));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or(Uncertain)?;
            params.push((k.to_string(), v.to_string()));
        }
    } else {
        if text.contains(['\\', '\'']) {
            return Err(Uncertain);
        }
        // `key=value key = value`: whitespace around `=` is allowed.
        let spaced = text.replace('=', " = ");
        let words: Vec<&str> = spaced.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            match (words.get(i), words.get(i + 1), words.get(i + 2)) {
                (Some(k), Some(&"="), Some(v)) if *v != "=" => {
                    params.push((k.to_string(), v.to_string()));
                    i += 3;
                }
                _ => return Err(Uncertain),
            }
        }
    }
    for (k, v) in &params {
        let listed = matches!(k.as_str(), "host" | "port") && v.contains(',');
        if listed || matches!(k.as_str(), "hostaddr" | "options") {
            return Err(Uncertain);
        }
    }
    Ok(params)
}

/// The host part of a place: `local` for the default socket directory.
fn pg_host(host: Option<String>) -> String {
    match host.as_deref() {
        None | Some("" | "/var/run/postgresql" | "/run/postgresql") => "local".to_string(),
        Some(h) if h.starts_with('/') => super::scope::clean_path(h),
        Some(h) => h.to_ascii_lowercase(),
    }
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.chars().all(|c| c.is_ascii_digit())
}

/// Where psql connects: `-h`/`-p`/`-U`/`-d` (or the first two operands), a conninfo or
/// URL given as the database, `PGHOST`/`PGPORT`/`PGDATABASE`/`PGUSER`/`PGSERVICE`, a
/// service, else the default socket, port 5432 and a database named after the user
/// (`sudo -u postgres psql`: `postgres`).
fn pg_place(parsed: &Parsed<'_>, scope: &Scope) -> Result<Place, Uncertain> {
    if parsed.has(&["--cluster"])
        || scope.changed(&["PGHOSTADDR", "PGOPTIONS", "PGSYSCONFDIR", "PGCLUSTER"])
    {
        return Err(Uncertain);
    }
    let option = |names: &[&str]| parsed.place(names).map(|v| v.map(str::to_string));
    let mut host = option(&["-h", "--host"])?;
    let mut port = option(&["-p", "--port"])?;
    let mut user = option(&["-U", "--username"])?;
    let mut dbname = option(&["-d", "--dbname"])?;
    let mut operands = parsed.positional.iter();
    if dbname.is_none() {
        if let Some(first) = operands.next() {
            dbname = Some(first.ok_or(Uncertain)?.to_string());
        }
    }
    if let Some(second) = operands.next() {
        user = merge(user, Some(second.ok_or(Uncertain)?.to_string()))?;
    }
    if operands.next().is_some() {
        return Err(Uncertain);
    }
    let mut service = None;
    if let Some(db) = dbname.clone() {
        if db.contains('=') || db.starts_with("postgres") && db.contains("://") {
            dbname = None;
            for (k, v) in conninfo(&db)? {
                let slot = match k.as_str() {
                    "host" => &mut host,
                    "port" => &mut port,
                    "user" => &mut user,
                    "dbname" => &mut dbname,
                    "service" => &mut service,
                    _ => continue,
                };
                *slot = merge(slot.take(), Some(v))?;
            }
        }
    }
    let host = merge(host, value_of(scope.var("PGHOST"))?)?;
    let port = merge(port, value_of(scope.var("PGPORT"))?)?;
    let user = merge(user, value_of(scope.var("PGUSER"))?)?;
    let dbname = merge(dbname, value_of(scope.var("PGDATABASE"))?)?;
    let service = merge(service, value_of(scope.var("PGSERVICE"))?)?;
    if let Some(service) = service {
        // The service file fills in the rest: found in the home of the user it runs as.
        if host.is_some()
            || port.is_some()
            || scope.user != Known::Default
            || scope.changed(&["PGSERVICEFILE", "HOME"])
        {
            return Err(Uncertain);
        }
        return Ok(Place {
            server: format!("service:{service}"),
            database: dbname,
        });
    }
    let port = port.unwrap_or_else(|| "5432".to_string());
    if !is_port(&port)
        || host
            .as_deref()
            .is_some_and(|h| h.contains([',', '@', '/']) && !h.starts_with('/'))
    {
        return Err(Uncertain);
    }
    let database = dbname.or(user).or_else(|| match &scope.user {
        Known::Set(u) => Some(u.clone()),
        _ => None,
    });
    Ok(Place {
        server: format!("{}:{port}", pg_host(host)),
        database: database.filter(|d| !d.contains(['@', ':', '/'])),
    })
}

/// The text of `-c`, `-f -` and standard input, in the order psql runs them; `None` when
/// some of it is not in the line (`-f FILE`, a value decided at run time).
fn psql_scripts<'a>(parsed: &Parsed<'a>, stdin: Option<&'a str>) -> Option<Vec<&'a str>> {
    let mut scripts = Vec::new();
    let mut reads_stdin = true;
    for (option, value) in &parsed.options {
        match option.as_str() {
            "-c" | "--command" => {
                scripts.push((*value)?);
                reads_stdin = false;
            }
            "-f" | "--file" => {
                if *value != Some("-") {
                    return None;
                }
                scripts.push(stdin?);
                reads_stdin = false;
            }
            "-l" | "--list" | "-V" | "--version" | "-?" | "--help" => return Some(Vec::new()),
            _ => {}
        }
    }
    if reads_stdin {
        scripts.push(stdin?);
    }
    Some(scripts)
}

/// `psql`: keys of what its SQL administers.
pub(super) fn psql(
    words: &[Option<&str>],
    scope: &Scope,
    stdin: Option<&str>,
    keys: &mut Vec<String>,
) {
    let parsed = parse_anywhere(words, PSQL_VALUED);
    let Ok(place) = pg_place(&parsed, scope) else {
        return;
    };
    let Some(scripts) = psql_scripts(&parsed, stdin) else {
        return;
    };
    sql_keys("pg", &scripts, Sql::Postgres, &place, keys);
}

fn sql_keys(family: &str, scripts: &[&str], sql: Sql, place: &Place, keys: &mut Vec<String>) {
    let mut found = Vec::new();
    for script in scripts {
        match sql::actions(script, sql) {
            Some(mut actions) => found.append(&mut actions),
            None => return, // what follows may act elsewhere
        }
    }
    keys.extend(found.iter().filter_map(|a| key(family, a, place)));
}

const MYSQL_VALUED: &[&str] = &[
    "-h",
    "--host",
    "-P",
    "--port",
    "-D",
    "--database",
    "-u",
    "--user",
    "-S",
    "--socket",
    "-e",
    "--execute",
    "--protocol",
    "--defaults-file",
    "--defaults-extra-file",
    "--login-path",
    "--defaults-group-suffix",
    "--init-command",
    "--default-character-set",
    "--delimiter",
];

/// `mysql`/`mariadb`: `-h`/`-P`/`-S`/`-D` (or the first operand), `MYSQL_HOST`,
/// `MYSQL_TCP_PORT`, `MYSQL_UNIX_PORT`; option files are the user's (`~/.my.cnf`), so
/// another user is another place (`as:root`), and another option file is uncertain.
pub(super) fn mysql(
    words: &[Option<&str>],
    scope: &Scope,
    stdin: Option<&str>,
    keys: &mut Vec<String>,
) {
    // `-pSECRET` is the password glued to `-p` (never `-p VALUE`): not a cluster.
    let words: Vec<Option<&str>> = words
        .iter()
        .map(|w| match w {
            Some(w) if w.starts_with("-p") => Some("-p"),
            w => *w,
        })
        .collect();
    let parsed = parse_anywhere(&words, MYSQL_VALUED);
    if parsed.has(&[
        "--defaults-file",
        "--defaults-extra-file",
        "--login-path",
        "--defaults-group-suffix",
        "--init-command",
        "--delimiter",
        "--protocol",
    ]) || scope.changed(&["HOME"])
    {
        return;
    }
    let Ok(place) = mysql_place(&parsed, scope) else {
        return;
    };
    let scripts = match parsed.values(&["-e", "--execute"]).as_slice() {
        [] => match stdin {
            Some(s) => vec![s],
            None => return,
        },
        values => match values.iter().copied().collect::<Option<Vec<&str>>>() {
            Some(v) => v,
            None => return,
        },
    };
    sql_keys("mysql", &scripts, Sql::MySql, &place, keys);
}

fn mysql_place(parsed: &Parsed<'_>, scope: &Scope) -> Result<Place, Uncertain> {
    let option = |names: &[&str]| parsed.place(names).map(|v| v.map(str::to_string));
    let host = merge(
        option(&["-h", "--host"])?,
        value_of(scope.var("MYSQL_HOST"))?,
    )?;
    let port = merge(
        option(&["-P", "--port"])?,
        value_of(scope.var("MYSQL_TCP_PORT"))?,
    )?;
    let socket = merge(
        option(&["-S", "--socket"])?,
        value_of(scope.var("MYSQL_UNIX_PORT"))?,
    )?;
    let mut database = option(&["-D", "--database"])?;
    match parsed.positional.as_slice() {
        [] => {}
        [Some(db)] if database.is_none() => database = Some(db.to_string()),
        _ => return Err(Uncertain),
    }
    // `localhost` (the default) is the socket; any other host is TCP.
    let host = match host.as_deref() {
        None | Some("localhost") => match socket {
            Some(path) => super::scope::clean_path(&path),
            None => "local".to_string(),
        },
        Some(h) => h.to_ascii_lowercase(),
    };
    let port = port.unwrap_or_else(|| "3306".to_string());
    if !is_port(&port) || host.contains([',', '@']) {
        return Err(Uncertain);
    }
    let mut server = format!("{host}:{port}");
    match &scope.user {
        Known::Default => {}
        Known::Set(user) => server.push_str(&format!(",as:{user}")),
        Known::Unknown => return Err(Uncertain),
    }
    Ok(Place {
        server,
        database: database.filter(|d| !d.contains(['@', ':', '/'])),
    })
}

const REDIS_VALUED: &[&str] = &[
    "-h",
    "-p",
    "-s",
    "-a",
    "-u",
    "-n",
    "-r",
    "-i",
    "-d",
    "-D",
    "-t",
    "--user",
    "--pass",
    "--cacert",
    "--cacertdir",
    "--cert",
    "--key",
    "--tls-ciphers",
    "--tls-ciphersuites",
    "--sni",
    "--eval",
    "--pattern",
    "--count",
    "--quoted-pattern",
    "--rdb",
    "--functions-rdb",
    "--pipe-timeout",
    "--memkeys-samples",
    "--intrinsic-latency",
    "--lru-test",
    "--resp",
];

/// `redis-cli [-h H] [-p P | -s SOCKET] [-n DB] [-u URL] COMMAND ARGS`: `CONFIG SET`
/// (`set=VALUE:redis-config:NAME@SERVER`), `FLUSHALL` (`flush:redis-db:all@SERVER`),
/// `FLUSHDB` (`flush:redis-db:N@SERVER`). `-x` (the last argument from standard input)
/// and `--eval` name nothing certain.
pub(super) fn redis(words: &[Option<&str>], scope: &Scope, keys: &mut Vec<String>) {
    let (options, i) = parse_leading(words, 0, REDIS_VALUED);
    let parsed = Parsed {
        options,
        positional: words[i.min(words.len())..].to_vec(),
    };
    if parsed.has(&["-x", "--eval", "--pipe"]) {
        return;
    }
    let Ok((server, db)) = redis_place(&parsed, scope) else {
        return;
    };
    let place = Place {
        server,
        database: Some(db),
    };
    let args: Option<Vec<&str>> = parsed.positional.iter().copied().collect();
    let Some(args) = args else {
        return;
    };
    let command: Vec<String> = args
        .iter()
        .take(2)
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let mut actions = Vec::new();
    match command
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["config", "set", ..] => {
            let pairs = &args[2..];
            if pairs.is_empty() || pairs.len() % 2 != 0 {
                return;
            }
            for pair in pairs.chunks(2) {
                let name = pair[0].to_ascii_lowercase();
                if name.is_empty() || name.contains(['@', ':', '/', '*']) {
                    return;
                }
                actions.push(Action {
                    verb: sql::set_verb(pair[1]),
                    kind: "config",
                    name,
                    level: Level::Server,
                });
            }
        }
        ["flushall", ..] => actions.push(Action {
            verb: "flush".into(),
            kind: "db",
            name: "all".into(),
            level: Level::Server,
        }),
        ["flushdb", ..] => {
            let Some(db) = place.database.clone() else {
                return;
            };
            actions.push(Action {
                verb: "flush".into(),
                kind: "db",
                name: db,
                level: Level::Server,
            });
        }
        _ => {}
    }
    keys.extend(actions.iter().filter_map(|a| key("redis", a, &place)));
}

/// The server (`HOST:PORT`, `local` for 127.0.0.1, or a socket path) and database number
/// of a redis-cli command; `-u URL` and `-h`/`-p`/`-n` together are uncertain.
fn redis_place(parsed: &Parsed<'_>, scope: &Scope) -> Result<(String, String), Uncertain> {
    if scope.changed(&["REDISCLI_RCFILE"]) {
        return Err(Uncertain);
    }
    let option = |names: &[&str]| parsed.place(names).map(|v| v.map(str::to_string));
    let mut host = option(&["-h"])?;
    let mut port = option(&["-p"])?;
    let mut db = option(&["-n"])?;
    let socket = option(&["-s"])?;
    if let Some(url) = option(&["-u"])? {
        if host.is_some() || port.is_some() || db.is_some() || socket.is_some() {
            return Err(Uncertain);
        }
        let rest = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
            .ok_or(Uncertain)?;
        if rest.contains(['%', '[', '?']) {
            return Err(Uncertain);
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (h, p) = hostport.rsplit_once(':').unwrap_or((hostport, "6379"));
        host = (!h.is_empty()).then(|| h.to_string());
        port = Some(p.to_string());
        db = (!path.is_empty()).then(|| path.to_string());
    }
    let db = db.unwrap_or_else(|| "0".to_string());
    if !db.chars().all(|c| c.is_ascii_digit()) || db.is_empty() {
        return Err(Uncertain);
    }
    let server = match socket {
        Some(path) => super::scope::clean_path(&path),
        None => {
            let host = match host.as_deref() {
                None | Some("127.0.0.1") => "local".to_string(),
                Some(h) => h.to_ascii_lowercase(),
            };
            let port = port.unwrap_or_else(|| "6379".to_string());
            if !is_port(&port) || host.contains([',', '@', '/']) {
                return Err(Uncertain);
            }
            format!("{host}:{port}")
        }
    };
    Ok((server, db))
}
