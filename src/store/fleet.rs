//! A host as a tenant of a shared PostgreSQL database: the SQL that gives a host its own
//! login role, confined by the row-level security of migration 4 to its sources (see
//! `migrations/postgres/004_host_roles.sql`), and the check `doctor` makes of the role it
//! runs as. Never decides anything; never reads a password back.

use super::*;
use anyhow::Context as _;

/// The tables a host role may read and write rows of (row-level security and the
/// `proposals_host_guard` trigger narrow each to its own sources); the audit is
/// append-only for it (SELECT, INSERT), and `opsgate_schema` and `fleet_hosts` are
/// read-only. The rights are those `doctor` checks for every role, so a host passes them.
const HOST_GRANTS: &[(&str, &str)] = &[
    ("proposals", "SELECT, INSERT, UPDATE, DELETE"),
    ("subjects", "SELECT, INSERT, DELETE"),
    ("ingests", "SELECT, INSERT, UPDATE"),
    ("sightings", "SELECT, INSERT, DELETE"),
    ("transitions", "SELECT, INSERT"),
    ("cards", "SELECT, INSERT, UPDATE, DELETE"),
    ("channels", "SELECT, INSERT"),
    ("deliveries", "SELECT, INSERT, UPDATE, DELETE"),
    ("cursors", "SELECT, INSERT, UPDATE"),
    ("leases", "SELECT, INSERT, UPDATE, DELETE"),
    ("meta", "SELECT, INSERT, UPDATE, DELETE"),
    ("status_messages", "SELECT, INSERT, UPDATE, DELETE"),
    ("opsgate_schema", "SELECT"),
    ("fleet_hosts", "SELECT"),
];

/// Whether `name` can be a host role: letters, digits, `_`, `-` and `.`, 1 to 63 bytes
/// (PostgreSQL's limit), so it is quoted the same way everywhere it appears.
pub fn valid_host_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statements that make `role` a host confined to `sources` (idempotent: run again
/// after an upgrade, it grants the rights again and keeps the role's password): the login
/// role with `password` when it is new, its rights, and its rows in `fleet_hosts`.
/// A superuser (or a role that may create roles and grant on the tables) runs them.
pub fn add_host_statements(role: &str, sources: &[String], password: &str) -> Vec<String> {
    let r = ident(role);
    let mut out = vec![format!(
        "DO $opsgate$ BEGIN\n    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {}) THEN\n        CREATE ROLE {r} LOGIN PASSWORD {};\n    END IF;\nEND $opsgate$",
        literal(role),
        literal(password)
    )];
    // A new role has neither SUPERUSER nor BYPASSRLS (either bypasses the policies); an
    // existing role given one is not changed here (that takes a superuser): `doctor` on
    // the host fails it.
    out.push(format!("GRANT USAGE ON SCHEMA public TO {r}"));
    for (table, rights) in HOST_GRANTS {
        out.push(format!("GRANT {rights} ON {table} TO {r}"));
    }
    out.push(format!(
        "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"
    ));
    out.push(format!(
        "REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM {r}"
    ));
    for source in sources {
        out.push(format!(
            "INSERT INTO fleet_hosts (role, source) VALUES ({}, {}) ON CONFLICT DO NOTHING",
            literal(role),
            literal(source)
        ));
    }
    out
}

/// What `doctor` finds about the role it connects as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    pub role: String,
    /// Its sources when it is a host role; empty when it is not (a decider, or a single
    /// role shared by every host).
    pub sources: Vec<String>,
    /// How many host roles the database knows.
    pub hosts: i64,
    /// What it can do that a host must not (empty: confined).
    pub breaches: Vec<String>,
}

/// A source name no host has: the target of the write probes.
const PROBE_SOURCE: &str = "opsgate doctor probe: not a source";

impl Store {
    /// Applies statements as one transaction (`fleet add-host --apply`).
    pub fn apply_statements(&mut self, statements: &[String]) -> Result<()> {
        self.transact("to set up a host role", |c| {
            for sql in statements {
                c.execute(sql, &[])
                    .with_context(|| format!("applying: {}", sql.lines().next().unwrap_or("")))?;
            }
            Ok(())
        })
    }

    /// Whether the role this store connects as is a confined host (PostgreSQL): what it
    /// can see and write beyond its sources, tried in a transaction that is rolled back.
    pub fn confinement(&mut self) -> Result<Confinement> {
        self.db.begin("to check the role's confinement")?;
        let found = probe(self.db.conn());
        self.db.rollback();
        found
    }
}

/// Runs `sql` inside a savepoint: whether the database let it through.
fn allowed(c: &mut dyn Conn, sql: &str) -> Result<bool> {
    c.execute("SAVEPOINT opsgate_probe", &[])?;
    let went = c.execute(sql, &[]).is_ok();
    c.execute("ROLLBACK TO SAVEPOINT opsgate_probe", &[])?;
    Ok(went)
}

fn probe(c: &mut dyn Conn) -> Result<Confinement> {
    let role = c
        .query_one("SELECT current_user AS role", &[])?
        .text("role")?;
    let hosts = c
        .query_one("SELECT COUNT(DISTINCT role) AS hosts FROM fleet_hosts", &[])?
        .int("hosts")?;
    let mut sources = Vec::new();
    for r in c.query(
        "SELECT source FROM fleet_hosts WHERE role = current_user ORDER BY source",
        &[],
    )? {
        sources.push(r.text("source")?);
    }
    let mut breaches = Vec::new();
    if sources.is_empty() {
        return Ok(Confinement {
            role,
            sources,
            hosts,
            breaches,
        });
    }
    let who = c.query_one(
        "SELECT r.rolsuper OR r.rolbypassrls AS bypass,
                pg_get_userbyid(t.relowner) = current_user AS owner
         FROM pg_roles r, pg_class t
         WHERE r.rolname = current_user AND t.oid = 'proposals'::regclass",
        &[],
    )?;
    if who.bool("bypass")? {
        breaches.push("it bypasses row-level security (superuser or BYPASSRLS)".to_string());
    }
    if who.bool("owner")? {
        breaches.push("it owns the tables (policies do not apply to their owner)".to_string());
    }
    for r in c.query(
        "SELECT relname FROM pg_class
         WHERE relname IN ('proposals', 'subjects', 'ingests', 'sightings', 'transitions',
                           'cards', 'deliveries', 'status_messages', 'meta', 'cursors')
           AND relkind = 'r' AND NOT relrowsecurity ORDER BY relname",
        &[],
    )? {
        breaches.push(format!(
            "row-level security is off on {}",
            r.text("relname")?
        ));
    }
    let marks: Vec<String> = (1..=sources.len()).map(|n| format!("?{n}")).collect();
    let params: Vec<&dyn ToParam> = sources.iter().map(|s| s as &dyn ToParam).collect();
    let foreign = c
        .query_one(
            &format!(
                "SELECT COUNT(*) AS n FROM proposals WHERE source NOT IN ({})",
                marks.join(", ")
            ),
            &params,
        )?
        .int("n")?;
    if foreign > 0 {
        breaches.push(format!("it reads {foreign} proposals of other sources"));
    }
    let probe = literal(PROBE_SOURCE);
    if allowed(
        c,
        &format!("INSERT INTO ingests (source, at, items) VALUES ({probe}, 0, 0)"),
    )? {
        breaches.push("it can write rows of another source".to_string());
    }
    if allowed(
        c,
        "INSERT INTO transitions (proposal_id, action, actor, at, digest)
         VALUES (NULL, 'approval', 'opsgate doctor probe', 0, 'probe')",
    )? {
        breaches.push("it can write approval rows".to_string());
    }
    let audit = c.query_one(
        "SELECT has_table_privilege(current_user, 'transitions', 'UPDATE')
             OR has_table_privilege(current_user, 'transitions', 'DELETE')
             OR has_table_privilege(current_user, 'transitions', 'TRUNCATE') AS may_change",
        &[],
    )?;
    if audit.bool("may_change")? {
        breaches.push("it may UPDATE or DELETE the audit".to_string());
    }
    let guard = c
        .query_one(
            "SELECT COUNT(*) AS n FROM pg_trigger
             WHERE tgname IN ('proposals_host_guard', 'proposals_host_guard_insert')
             AND tgenabled <> 'D'",
            &[],
        )?
        .int("n")?;
    if guard < 2 {
        breaches.push(
            "nothing stops it approving (trigger proposals_host_guard or proposals_host_guard_insert is off)"
                .into(),
        );
    }
    Ok(Confinement {
        role,
        sources,
        hosts,
        breaches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_plain_and_quoted_sql_escapes_what_it_carries() {
        assert!(valid_host_name("web-1.example_a"));
        for bad in ["", "web 1", "a\"b", "x;DROP", &"a".repeat(64)] {
            assert!(!valid_host_name(bad), "{bad}");
        }
        let sql = add_host_statements("web-1", &["it's".to_string()], "pw").join(";\n");
        assert!(
            sql.contains("CREATE ROLE \"web-1\" LOGIN PASSWORD 'pw'"),
            "{sql}"
        );
        assert!(sql.contains("VALUES ('web-1', 'it''s')"), "{sql}");
        assert!(sql.contains("REVOKE UPDATE, DELETE, TRUNCATE ON transitions FROM \"web-1\""));
    }
}
