//! The shared backend: one PostgreSQL database for many hosts. The blocking `postgres`
//! client (rust-postgres; its runtime stays inside the client), TLS through rustls with
//! the system's certificates or the `sslrootcert` file of the URL, numbered migrations
//! under an advisory lock, `READ COMMITTED` transactions whose writers lock a cluster's
//! card row first, claims with `FOR UPDATE SKIP LOCKED`, ids from a sequence.
//!
//! It keeps no session state, so a pooler in transaction mode (PgBouncer's
//! `pool_mode = transaction`, which may hand each transaction another server connection)
//! is a supported setup: no startup parameters (the lock timeout is `SET LOCAL` in each
//! transaction), only unnamed statements (`query_typed`, the simple protocol), the
//! migration lock is a transaction's advisory lock, and the poller's and the card
//! deliverer's locks are lease rows judged on the database's clock.

use super::db::{
    to_postgres, Backend, Columns, Conn, ConnExt, Database, Health, Param, ProposalIds, Row,
    ToParam, Tracer, Value,
};
use crate::error::{Error, Kind};
use anyhow::{Context, Result};
use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use postgres::Client;
use std::collections::HashMap;
use std::time::Duration;

/// Numbered migrations, applied in order under an advisory lock. Never edit one that has
/// shipped: add a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/001_init.sql"),
    include_str!("migrations/postgres/002_flat_indexes.sql"),
    include_str!("migrations/postgres/003_cycle_summaries.sql"),
    include_str!("migrations/postgres/004_host_roles.sql"),
    include_str!("migrations/postgres/005_guard_when.sql"),
    include_str!("migrations/postgres/006_policies_once.sql"),
];

/// The advisory lock key migrations run under ("opsgate" in ASCII, as a number).
const MIGRATION_LOCK: i64 = 0x6f_7073_6761_7465;

/// How long a statement waits for a row lock before the run fails as temporary (set in
/// each transaction: a pooler refuses startup parameters and shares sessions).
const LOCK_TIMEOUT: &str = "15s";

/// The database's clock in unix milliseconds: the one clock of a shared database.
pub(super) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::int8";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The kind of a PostgreSQL error, for the exit code: a lost or refused connection, a
/// server shutting down, a lock wait that timed out or a conflict retried too often is
/// temporary; bad credentials or a missing database is configuration; a missing
/// privilege is permission.
pub fn classify(cause: &(dyn std::error::Error + 'static)) -> Option<Kind> {
    let e = cause.downcast_ref::<postgres::Error>()?;
    let Some(code) = e.code() else {
        // No SQLSTATE: the connection (refused, closed, TLS). A certificate the system
        // does not trust will not fix itself.
        let text = format!("{e:?}").to_ascii_lowercase();
        if text.contains("certificate") || text.contains("invalidcert") {
            return Some(Kind::Config);
        }
        return Some(Kind::Temporary);
    };
    let class = &code.code()[..2];
    Some(match class {
        "08" | "53" | "57" | "40" => Kind::Temporary,
        "28" | "3D" => Kind::Config,
        "42" if *code == SqlState::INSUFFICIENT_PRIVILEGE => Kind::Permission,
        "55" if *code == SqlState::LOCK_NOT_AVAILABLE => Kind::Temporary,
        _ => Kind::Internal,
    })
}

pub struct PgDb {
    client: Client,
    /// The URL with its password masked.
    shown: String,
    /// Neutral SQL -> PostgreSQL SQL, translated once per process.
    statements: HashMap<String, String>,
    tracer: Option<Tracer>,
    /// The database's clock as read on connecting (with the schema version: no round
    /// trip of its own), handed out once by [`Database::server_time`].
    clock_at_open: Option<(i64, std::time::Instant)>,
    /// This process's name on lease rows (host, pid and start time).
    holder: String,
}

/// A URL as opsgate reads it: `sslrootcert=` is taken out (opsgate loads the file) and
/// `sslmode=verify-ca|verify-full` become `require` (opsgate always verifies the server's
/// certificate and name when TLS is used).
struct Url {
    config: postgres::Config,
    root_cert: Option<String>,
}

fn parse_url(url: &str) -> Result<Url> {
    let bad = |why: String| Error::new(Kind::Config, why);
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut kept = Vec::new();
    let mut root_cert = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslrootcert" => root_cert = Some(value.to_string()),
            "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                kept.push("sslmode=require".to_string())
            }
            _ => kept.push(pair.to_string()),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config: postgres::Config = rebuilt.parse().map_err(|e| {
        bad(format!(
            "the PostgreSQL URL {} is not valid: {e}; expected postgres://user:password@host:port/database",
            crate::config::mask_url(url)
        ))
    })?;
    Ok(Url { config, root_cert })
}

fn tls(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            // A missing or unreadable file is the URL's setting, never "not an opsgate
            // database": say which file and which setting names it (78).
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                crate::error::fail(
                    Kind::Config,
                    format!(
                        "cannot read the CA certificate file {path} named by sslrootcert= in the database URL (--db / OPSGATE_DB / db): {e}"
                    ),
                )
            })?;
            for cert in certs {
                let cert = cert.with_context(|| format!("reading sslrootcert {path}"))?;
                roots
                    .add(cert)
                    .with_context(|| format!("a certificate in sslrootcert {path}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The rights the runtime needs, table by table (the audit is append-only: no UPDATE or
/// DELETE there).
const NEEDED: &[(&str, &str)] = &[
    ("proposals", "SELECT,INSERT,UPDATE,DELETE"),
    ("subjects", "SELECT,INSERT,DELETE"),
    ("ingests", "SELECT,INSERT,UPDATE"),
    ("sightings", "SELECT,INSERT,DELETE"),
    ("transitions", "SELECT,INSERT"),
    ("cards", "SELECT,INSERT,UPDATE,DELETE"),
    ("channels", "SELECT,INSERT"),
    ("deliveries", "SELECT,INSERT,UPDATE,DELETE"),
    ("cursors", "SELECT,INSERT,UPDATE"),
    ("leases", "SELECT,INSERT,UPDATE,DELETE"),
    ("meta", "SELECT,INSERT,UPDATE,DELETE"),
    ("status_messages", "SELECT,INSERT,UPDATE,DELETE"),
];

impl PgDb {
    /// The current role, and the table rights and sequences it lacks.
    fn missing_rights(&mut self) -> Result<(String, Vec<String>)> {
        let user: String = self
            .client
            .query_typed_one("SELECT current_user::text AS role", &[])?
            .try_get("role")?;
        let mut missing = Vec::new();
        for (table, rights) in NEEDED {
            for right in rights.split(',') {
                let has: bool = self
                    .client
                    .query_typed_one(
                        "SELECT has_table_privilege(current_user, $1, $2) AS granted",
                        &[(table, Type::TEXT), (&right, Type::TEXT)],
                    )?
                    .try_get("granted")?;
                if !has {
                    missing.push(format!("{right} on {table}"));
                }
            }
        }
        for seq in [
            "proposal_ids",
            "ingests_id_seq",
            "sightings_id_seq",
            "transitions_id_seq",
        ] {
            let has: bool = self
                .client
                .query_typed_one(
                    "SELECT has_sequence_privilege(current_user, $1, 'USAGE') AS granted",
                    &[(&seq, Type::TEXT)],
                )?
                .try_get("granted")?;
            if !has {
                missing.push(format!("USAGE on sequence {seq}"));
            }
        }
        Ok((user, missing))
    }

    /// Connects and brings the schema up to date (refusing a newer one).
    pub fn open(url: &str) -> Result<PgDb> {
        let shown = crate::config::mask_url(url);
        let Url {
            mut config,
            root_cert,
        } = parse_url(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // No `options` startup parameter: a pooler in transaction mode refuses it (or
        // drops it silently); the lock timeout is set in each transaction instead.
        config.application_name("opsgate");
        // Loading the system's certificates costs milliseconds: only when TLS may be used.
        let connected = if config.get_ssl_mode() == postgres::config::SslMode::Disable {
            config.connect(postgres::NoTls)
        } else {
            config.connect(tls(root_cert.as_deref())?)
        };
        let client = connected.with_context(|| format!("connecting to {shown}"))?;
        let mut db = PgDb {
            client,
            shown,
            statements: HashMap::new(),
            tracer: None,
            clock_at_open: None,
            holder: crate::process::runner_id(),
        };
        db.migrate()
            .with_context(|| format!("preparing database {}", db.shown))?;
        Ok(db)
    }

    /// The schema version; `None` before the first migration. One round trip, which also
    /// reads the database's clock.
    fn version(&mut self) -> Result<Option<i64>> {
        // The lock timeout of statements outside a transaction (reads) rides along as
        // this session's setting. Through a pooler the session is shared: the setting
        // stays on the server connection, the same value for every opsgate client;
        // every transaction sets its own with `SET LOCAL` regardless.
        let read = self.client.query_typed_one(
            &format!(
                "SELECT version, {DB_NOW_MS} AS now_ms,
                        set_config('lock_timeout', '{LOCK_TIMEOUT}', false) AS lock_timeout
                 FROM opsgate_schema"
            ),
            &[],
        );
        match read {
            Ok(row) => {
                self.clock_at_open = Some((row.try_get("now_ms")?, std::time::Instant::now()));
                Ok(Some(i64::from(row.try_get::<_, i32>("version")?)))
            }
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the missing migrations in one transaction, under a transaction-scoped
    /// advisory lock: several first uses at once queue on it, the first migrates and the
    /// others find it done. Released at commit or rollback, it is never left held on a
    /// pooled server connection, and no statement is named.
    fn migrate(&mut self) -> Result<()> {
        if self.version()? == Some(MIGRATIONS.len() as i64) {
            return Ok(());
        }
        let mut tx = self.client.transaction()?;
        tx.batch_execute("SET LOCAL lock_timeout = '120s'")?;
        tx.query_typed(
            "SELECT pg_advisory_xact_lock($1)",
            &[(&MIGRATION_LOCK, Type::INT8)],
        )?;
        let row = tx.query_typed_one(
            "SELECT to_regclass('opsgate_schema') IS NOT NULL AS versioned,
                    to_regclass('proposals') IS NOT NULL AS has_proposals",
            &[],
        )?;
        let versioned: bool = row.try_get("versioned")?;
        let foreign: bool = row.try_get("has_proposals")?;
        let current = if versioned {
            i64::from(
                tx.query_typed_one("SELECT version FROM opsgate_schema", &[])?
                    .try_get::<_, i32>("version")?,
            )
        } else if foreign {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "{} has a proposals table but no opsgate schema version; refusing to touch it",
                    self.shown
                ),
            )
            .into());
        } else {
            0
        };
        if current > MIGRATIONS.len() as i64 {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "{} has schema version {current}, newer than this opsgate knows ({}); upgrade opsgate",
                    self.shown,
                    MIGRATIONS.len()
                ),
            )
            .into());
        }
        if !versioned {
            tx.batch_execute(
                "CREATE TABLE opsgate_schema (version INTEGER NOT NULL);
                 INSERT INTO opsgate_schema (version) VALUES (0)",
            )?;
        }
        for (n, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.batch_execute(sql)
                .with_context(|| format!("applying migration {}", n + 1))?;
        }
        tx.batch_execute(&format!(
            "UPDATE opsgate_schema SET version = {}",
            MIGRATIONS.len()
        ))?;
        tx.commit().context("committing migrations")?;
        self.client.query_typed(
            &format!("SELECT set_config('lock_timeout', '{LOCK_TIMEOUT}', false)"),
            &[],
        )?;
        Ok(())
    }

    /// The statement in PostgreSQL's dialect.
    fn statement(&mut self, sql: &str) -> String {
        if let Some(t) = &mut self.tracer {
            t.log(sql);
        }
        if let Some(translated) = self.statements.get(sql) {
            return translated.clone();
        }
        let translated = to_postgres(sql);
        self.statements.insert(sql.to_string(), translated.clone());
        translated
    }
}

#[derive(Debug)]
struct Bind<'a>(Param<'a>);

/// Parameters with their types, so a statement is parsed, bound and run in one round trip
/// (no prepare). A NULL is `unknown`: the server takes the type from its context.
fn typed<'a>(binds: &'a [Bind<'a>]) -> impl Iterator<Item = (&'a (dyn ToSql + Sync), Type)> + 'a {
    binds.iter().map(|b| {
        let ty = match b.0 {
            Param::Null => Type::UNKNOWN,
            Param::Int(_) => Type::INT8,
            Param::Text(_) => Type::TEXT,
            Param::Bool(_) => Type::BOOL,
        };
        (b as &(dyn ToSql + Sync), ty)
    })
}

impl ToSql for Bind<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Param::Text(t) => t.to_sql(ty, out),
            Param::Bool(b) => match *ty {
                Type::INT8 => i64::from(b).to_sql(ty, out),
                Type::INT4 => i32::from(b).to_sql(ty, out),
                _ => b.to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn value(row: &postgres::Row, i: usize) -> Result<Value> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::VOID => Value::Null,
        Type::INT8 => row.get::<_, Option<i64>>(i).map_or(Value::Null, Value::Int),
        Type::INT4 => row
            .get::<_, Option<i32>>(i)
            .map_or(Value::Null, |v| Value::Int(i64::from(v))),
        Type::INT2 => row
            .get::<_, Option<i16>>(i)
            .map_or(Value::Null, |v| Value::Int(i64::from(v))),
        Type::BOOL => row
            .get::<_, Option<bool>>(i)
            .map_or(Value::Null, Value::Bool),
        _ => row
            .try_get::<_, Option<String>>(i)
            .with_context(|| format!("reading a {ty} column"))?
            .map_or(Value::Null, Value::Text),
    })
}

impl Conn for PgDb {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn next_proposal_id(&mut self, ids: &mut ProposalIds) -> Result<i64> {
        if let Some(id) = ids.reserved.pop_front() {
            return Ok(id);
        }
        self.query_one("SELECT nextval('proposal_ids') AS id", &[])?
            .int("id")
    }

    fn reserve_proposal_ids(&mut self, ids: &mut ProposalIds, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut taken = Vec::with_capacity(n);
        for row in self.query(
            "SELECT nextval('proposal_ids') AS id FROM generate_series(1, ?1)",
            &[&n],
        )? {
            taken.push(row.int("id")?);
        }
        // Ascending, so ids follow the input's order as one at a time would.
        taken.sort_unstable();
        ids.reserved.extend(taken);
        Ok(())
    }

    fn keep_proposal_ids(&mut self, _ids: &ProposalIds) -> Result<()> {
        Ok(())
    }

    fn grown(&mut self, _rows: usize) -> Result<()> {
        // Own uncommitted rows are sampled by ANALYZE inside the transaction, so the
        // look-aheads that follow use the hash and subject indexes. A role that does not
        // own the tables (a host's) gets a warning from the server and the old plans.
        self.client
            .batch_execute(
                "ANALYZE proposals (source, cmd_hash, state), subjects (source, subject)",
            )
            .context("refreshing the planner's statistics during a bulk ingest")
    }

    fn lock_key(&mut self, key: &str) -> Result<()> {
        self.query("SELECT pg_advisory_xact_lock(hashtext(?1))", &[&key])?;
        Ok(())
    }

    fn lock(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<()> {
        self.query(sql, params)?;
        Ok(())
    }

    fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64> {
        let stmt = self.statement(sql);
        let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.param())).collect();
        let mut rows = self.client.query_typed_raw(&stmt, typed(&binds))?;
        while rows.next()?.is_some() {}
        Ok(rows.rows_affected().unwrap_or(0))
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[&dyn ToParam],
        each: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let stmt = self.statement(sql);
        let binds: Vec<Bind<'_>> = params.iter().map(|p| Bind(p.param())).collect();
        let refs: Vec<(&(dyn ToSql + Sync), Type)> = typed(&binds).collect();
        let mut names: Option<std::sync::Arc<Columns>> = None;
        for row in self.client.query_typed(&stmt, &refs)? {
            let values = (0..row.len())
                .map(|i| value(&row, i))
                .collect::<Result<Vec<_>>>()?;
            let names = names
                .get_or_insert_with(|| {
                    std::sync::Arc::new(
                        row.columns().iter().map(|c| c.name().to_string()).collect(),
                    )
                })
                .clone();
            each(Row::new(values, names))?;
        }
        Ok(())
    }
}

impl Database for PgDb {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn conn(&mut self) -> &mut dyn Conn {
        self
    }

    fn begin(&mut self, what: &str) -> Result<()> {
        // One round trip: the lock timeout lives and dies with the transaction, so a
        // pooled server connection carries nothing to the next client.
        self.client
            .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .with_context(|| format!("starting a transaction {what}"))
    }

    fn commit(&mut self) -> Result<()> {
        self.client.batch_execute("COMMIT").context("committing")
    }

    fn rollback(&mut self) {
        let _ = self.client.batch_execute("ROLLBACK");
    }

    fn conflicts(&self) -> bool {
        true
    }

    fn retryable(&self, err: &anyhow::Error) -> bool {
        err.chain()
            .filter_map(|c| c.downcast_ref::<postgres::Error>())
            .filter_map(|e| e.code())
            .any(|code| {
                *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
            })
    }

    fn schema_version(&mut self) -> Result<i64> {
        Ok(self.version()?.unwrap_or(0))
    }

    fn known_schema_version(&self) -> i64 {
        MIGRATIONS.len() as i64
    }

    fn health(&mut self) -> Vec<Health> {
        let mut lines = Vec::new();
        match self
            .client
            .query_typed_one("SELECT current_setting('server_version') AS version", &[])
            .and_then(|row| row.try_get::<_, String>("version"))
        {
            Ok(version) => lines.push(Health::ok(format!("PostgreSQL {version}"))),
            Err(e) => lines.push(Health::fail(
                format!("PostgreSQL: {e}"),
                "check the server and the URL",
            )),
        }
        match self.missing_rights() {
            Ok((user, missing)) if missing.is_empty() => {
                lines.push(Health::ok(format!("role {user} has the rights opsgate needs")))
            }
            Ok((user, missing)) => lines.push(Health::fail(
                format!("role {user} lacks {}", missing.join(", ")),
                format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {user}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {user}; then the REVOKE below"
                ),
            )),
            Err(e) => lines.push(Health::fail(
                format!("checking the role's rights: {e}"),
                "check the server",
            )),
        }
        // The audit must be append-only for this role too: with the documented REVOKE
        // applied, it cannot even ask. The admin role that owns the tables (and applies
        // the migrations) may, by ownership: that is the hardened setup when opsgate runs
        // as other roles (logins with the runtime's rights and without the audit's
        // UPDATE and DELETE), and names them.
        let rights = self.client.query_typed_one(
            "SELECT has_table_privilege(current_user, 'transitions', 'UPDATE')
                 OR has_table_privilege(current_user, 'transitions', 'DELETE')
                 OR has_table_privilege(current_user, 'transitions', 'TRUNCATE') AS may_rewrite,
                    current_user::text AS role,
                    pg_get_userbyid(c.relowner) = current_user AS owns,
                    (SELECT string_agg(r.rolname, ', ' ORDER BY r.rolname) FROM pg_roles r
                     WHERE r.rolcanlogin AND NOT r.rolsuper AND NOT r.rolbypassrls
                       AND r.rolname <> current_user
                       AND has_table_privilege(r.oid, 'proposals', 'INSERT')
                       AND has_table_privilege(r.oid, 'transitions', 'INSERT')
                       AND NOT has_table_privilege(r.oid, 'transitions', 'UPDATE')
                       AND NOT has_table_privilege(r.oid, 'transitions', 'DELETE')
                       AND NOT has_table_privilege(r.oid, 'transitions', 'TRUNCATE')) AS runtime
             FROM pg_class c WHERE c.oid = 'transitions'::regclass",
            &[],
        );
        let rights = rights.and_then(|row| {
            let (may, user): (bool, String) = (row.try_get("may_rewrite")?, row.try_get("role")?);
            let (owner, runtime): (bool, Option<String>) =
                (row.try_get("owns")?, row.try_get("runtime")?);
            Ok((may, user, owner, runtime))
        });
        match rights {
            Ok((may, user, owner, runtime)) => {
                if let (true, true, Some(runtime)) = (may, owner, &runtime) {
                    lines.push(Health::ok(format!(
                        "role {user} owns the tables (the admin role: it applies migrations); opsgate runs as {runtime}, which cannot UPDATE or DELETE the audit"
                    )));
                } else if may {
                    lines.push(Health::warn(
                        format!("role {user} may UPDATE/DELETE the audit (transitions); a trigger refuses it, a privilege would too"),
                        format!("REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM {user} (run opsgate as a role that does not own the tables)"),
                    ));
                } else {
                    lines.push(Health::ok(format!(
                        "role {user} cannot UPDATE or DELETE the audit (REVOKE applied)"
                    )));
                }
            }
            Err(e) => lines.push(Health::fail(
                format!("checking the role's rights: {e}"),
                "check the server",
            )),
        }
        lines
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn trace(&mut self, log: Tracer) {
        self.tracer = Some(log);
    }

    fn try_lock(&mut self, name: &str, hold: Duration) -> Result<bool> {
        // A lease row, judged on the database's clock: taken when free or run out,
        // renewed when this process holds it. No session state, so it excludes through a
        // pooler too; a holder that dies frees it when `hold` has passed.
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        let got = self.client.query_typed_opt(
            &format!(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, {DB_NOW_MS} + $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until < {DB_NOW_MS}
                 RETURNING holder"
            ),
            &[
                (&name, Type::TEXT),
                (&self.holder, Type::TEXT),
                (&hold_ms, Type::INT8),
            ],
        )?;
        if got.is_some() {
            return Ok(true);
        }
        // Held: by a process of this host that is gone (it crashed, or the database went
        // away before it could release it), it is taken over at once; another host's
        // holder is judged by its lease alone.
        let holder = self.client.query_typed_opt(
            "SELECT holder FROM leases WHERE name = $1",
            &[(&name, Type::TEXT)],
        )?;
        let Some(holder) = holder
            .map(|r| r.try_get::<_, String>("holder"))
            .transpose()?
        else {
            return Ok(false);
        };
        if crate::process::runner_alive(&holder) {
            return Ok(false);
        }
        let taken = self.client.query_typed_opt(
            &format!(
                "UPDATE leases SET holder = $2, until = {DB_NOW_MS} + $3
                 WHERE name = $1 AND holder = $4 RETURNING holder"
            ),
            &[
                (&name, Type::TEXT),
                (&self.holder, Type::TEXT),
                (&hold_ms, Type::INT8),
                (&holder, Type::TEXT),
            ],
        )?;
        Ok(taken.is_some())
    }

    fn unlock(&mut self, name: &str) {
        let _ = self.client.query_typed(
            "DELETE FROM leases WHERE name = $1 AND holder = $2",
            &[(&name, Type::TEXT), (&self.holder, Type::TEXT)],
        );
    }

    fn server_time(&mut self) -> Result<Option<i64>> {
        if let Some((at, read)) = self.clock_at_open.take() {
            let since = i64::try_from(read.elapsed().as_millis()).unwrap_or(0);
            return Ok(Some(at.saturating_add(since)));
        }
        let row = self
            .client
            .query_typed_one(&format!("SELECT {DB_NOW_MS} AS now_ms"), &[])?;
        Ok(Some(row.try_get("now_ms")?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_libpq_options_read() {
        assert_eq!(
            crate::config::mask_url(
                "postgres://opsgate:s3cret@db.example:5432/ops?sslmode=require"
            ),
            "postgres://opsgate:***@db.example:5432/ops?sslmode=require"
        );
        assert_eq!(
            crate::config::mask_url("postgresql://db/ops"),
            "postgresql://db/ops"
        );
        let url = parse_url(
            "postgres://u:p@127.0.0.1:5433/ops?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(url.root_cert.as_deref(), Some("/etc/ca.pem"));
        assert_eq!(
            url.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        assert!(parse_url("postgres://u:p@h/db?sslmode=sometimes").is_err());
    }
}
