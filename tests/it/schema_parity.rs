//! The two backends' schemas end the same: SQLite and PostgreSQL have separate migration
//! histories (`src/store/migrations/{sqlite,postgres}`), so nothing but this test says a
//! table, a column or an index added to one was added to the other. Both stores are
//! migrated by the store itself (as the binary does on first use), then compared by
//! table, column (name and a type class) and index (name, table, columns).
#![allow(clippy::unwrap_used)]

use super::common;
use common::*;
use std::collections::BTreeSet;

/// A column's type, as a class both backends share.
fn class(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") || t == "bigserial" || t == "serial" {
        "integer"
    } else if t.contains("char") || t == "text" {
        "text"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("blob") || t == "bytea" {
        "bytes"
    } else if t.contains("real") || t.contains("double") || t.contains("numeric") {
        "real"
    } else if t.contains("timestamp") {
        "time"
    } else {
        "other"
    }
}

#[derive(Debug, Default, PartialEq)]
struct Schema {
    /// `table.column: class`
    columns: BTreeSet<String>,
    /// `index on table(col, col)`
    indexes: BTreeSet<String>,
}

fn sqlite_schema(env: &Env) -> Schema {
    let c = env.sql();
    let mut s = Schema::default();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for t in &tables {
        let mut q = c.prepare(&format!("PRAGMA table_info({t})")).unwrap();
        for (name, ty) in q
            .query_map([], |r| Ok((r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
            .unwrap()
            .map(Result::unwrap)
        {
            s.columns.insert(format!("{t}.{name}: {}", class(&ty)));
        }
    }
    let indexes: Vec<(String, String)> = c
        .prepare(
            "SELECT name, tbl_name FROM sqlite_master
             WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (index, table) in indexes {
        let mut q = c.prepare(&format!("PRAGMA index_xinfo({index})")).unwrap();
        let cols: Vec<String> = q
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(5)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap)
            // key columns only (xinfo also lists the rowid as an auxiliary column)
            .filter(|(_, _, key)| *key == 1)
            .map(|(cid, name, _)| name.unwrap_or_else(|| format!("expr{}", -cid)))
            .collect();
        s.indexes
            .insert(format!("{index} on {table}({})", cols.join(", ")));
    }
    s
}

fn postgres_schema(env: &Env) -> Schema {
    let mut c = postgres::Client::connect(env.url.as_deref().unwrap(), postgres::NoTls).unwrap();
    let mut s = Schema::default();
    for r in c
        .query(
            "SELECT table_name::text, column_name::text, data_type::text
             FROM information_schema.columns WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
    {
        let (t, col, ty): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        s.columns.insert(format!("{t}.{col}: {}", class(&ty)));
    }
    // Indexes written in the migrations: not those behind a primary key or a UNIQUE
    // constraint (SQLite's sqlite_autoindex_* counterparts are left out the same way).
    for r in c
        .query(
            "SELECT i.relname::text, t.relname::text,
                    string_agg(COALESCE(a.attname::text, 'expr'), ', ' ORDER BY k.ord)
             FROM pg_index x
             JOIN pg_class i ON i.oid = x.indexrelid
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             CROSS JOIN LATERAL unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
             LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
             WHERE n.nspname = 'public'
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
             GROUP BY i.relname, t.relname",
            &[],
        )
        .unwrap()
    {
        let (index, table, cols): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        s.indexes.insert(format!("{index} on {table}({cols})"));
    }
    s
}

/// Differences that are on purpose, each with its reason; anything else fails.
const ALLOWED: &[(&str, &str)] = &[
    (
        "sequences.name: text",
        "SQLite allocates proposal ids from this row (Conn::next_proposal_id); PostgreSQL \
         from a SEQUENCE object, which is not a table",
    ),
    (
        "sequences.next: integer",
        "the same row's counter (see above)",
    ),
    (
        "opsgate_schema.version: integer",
        "PostgreSQL's migration bookkeeping; SQLite keeps its version in PRAGMA user_version",
    ),
    (
        "fleet_hosts.role: text",
        "PostgreSQL only: which login role is a host confined to which sources (row-level \
         security, migration 4); a SQLite file has one host and no roles",
    ),
    ("fleet_hosts.source: text", "the same mapping (see above)"),
    (
        "cards_by_source on cards(source, cluster_id)",
        "PostgreSQL only (migration 6): a host confined by row-level security finds its owed \
         cards from its own cards; a SQLite file serves one host and reads them by channel",
    ),
    (
        "status_messages.pinned: integer",
        "SQLite has no boolean type: the flag is 0/1 there, boolean on PostgreSQL",
    ),
    (
        "status_messages.pinned: boolean",
        "the same flag (see above)",
    ),
];

fn differences(a: &BTreeSet<String>, b: &BTreeSet<String>, only: &str) -> Vec<String> {
    a.difference(b)
        .filter(|d| !ALLOWED.iter().any(|(what, _)| *what == d.as_str()))
        .map(|d| format!("only on {only}: {d}"))
        .collect()
}

#[test]
fn sqlite_and_postgresql_schemas_end_the_same_after_every_migration() {
    let lite = Env::new();
    drop(lite.store());
    let Some(pg) = Env::postgres() else {
        eprintln!("PostgreSQL is not installed: skipped");
        return;
    };
    drop(pg.store());
    let (l, p) = (sqlite_schema(&lite), postgres_schema(&pg));
    assert!(l.columns.len() > 20, "SQLite schema read: {l:?}");
    assert!(!l.indexes.is_empty(), "SQLite indexes read: {l:?}");
    let mut diff = differences(&l.columns, &p.columns, "SQLite");
    diff.extend(differences(&p.columns, &l.columns, "PostgreSQL"));
    diff.extend(differences(&l.indexes, &p.indexes, "SQLite"));
    diff.extend(differences(&p.indexes, &l.indexes, "PostgreSQL"));
    assert!(
        diff.is_empty(),
        "the backends' schemas differ (add the missing migration to the lagging \
         backend, or an ALLOWED entry with its reason):\n{}",
        diff.join("\n")
    );
}
