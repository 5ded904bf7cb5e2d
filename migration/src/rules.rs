//! CHECK rules added to existing tables. PostgreSQL gets CHECK constraints;
//! SQLite cannot add one to an existing table, so there each rule is a pair
//! of triggers (before insert, before update) that abort with `CHECK
//! constraint failed: <name>`, the wording of SQLite's own CHECKs.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

/// One rule: the table it guards, its constraint name, a column it reads,
/// and its condition with each column name prefixed by the argument (`""`
/// in a CHECK, `"NEW."` in a trigger). Like a CHECK, a rule is broken only
/// when its condition is false, not when it is NULL.
pub struct Rule {
    pub table: &'static str,
    pub name: &'static str,
    pub column: &'static str,
    pub condition: fn(&str) -> String,
}

/// The rule's triggers on SQLite, then a test of the rows already there:
/// rewriting only those that break the rule fires its trigger, which
/// refuses the migration with the rule's name.
pub async fn add_sqlite<C: ConnectionTrait>(conn: &C, rule: &Rule) -> Result<(), DbErr> {
    let condition = (rule.condition)("NEW.");
    for (event, suffix) in [("INSERT", "insert"), ("UPDATE", "update")] {
        conn.execute_unprepared(&format!(
            "CREATE TRIGGER IF NOT EXISTS {name}_{suffix} BEFORE {event} ON {table} \
             FOR EACH ROW WHEN NOT ({condition}) \
             BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {name}'); END",
            name = rule.name,
            table = rule.table,
        ))
        .await?;
    }
    conn.execute_unprepared(&format!(
        "UPDATE {table} SET {column} = {column} WHERE NOT ({condition})",
        table = rule.table,
        column = rule.column,
        condition = (rule.condition)(""),
    ))
    .await?;
    Ok(())
}

/// Removes a rule's SQLite triggers.
pub async fn drop_sqlite<C: ConnectionTrait>(conn: &C, name: &str) -> Result<(), DbErr> {
    for suffix in ["insert", "update"] {
        conn.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}_{suffix}"))
            .await?;
    }
    Ok(())
}

/// Changes CHECK texts inside a SQLite table's stored CREATE TABLE
/// statement: SQLite cannot alter a table's CHECK, and its documented way
/// to change one without touching the data (ALTER TABLE, "making other
/// kinds of table schema changes") edits that text and bumps the schema
/// version, in one batch on one connection. Only for loosening a rule: rows
/// already there are not checked again. Each `(from, to)` must be found, or
/// the migration is refused rather than leaving the old rule in place.
pub async fn rewrite_sqlite_checks<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    changes: &[(&str, &str)],
) -> Result<(), DbErr> {
    let sql_of = |query: String| async move {
        conn.query_one_raw(sea_orm_migration::sea_orm::Statement::from_string(
            sea_orm_migration::sea_orm::DbBackend::Sqlite,
            query,
        ))
        .await?
        .ok_or_else(|| DbErr::Migration(format!("no {table} table")))
    };
    let text = sql_of(format!(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = '{table}'"
    ))
    .await?
    .try_get_by_index::<String>(0)?;
    let mut rewritten = text.clone();
    for (from, to) in changes {
        if !rewritten.contains(from) {
            return Err(DbErr::Migration(format!(
                "{table}: unexpected CREATE TABLE text, no {from}"
            )));
        }
        rewritten = rewritten.replace(from, to);
    }
    let version = sql_of("PRAGMA schema_version".to_owned())
        .await?
        .try_get_by_index::<i64>(0)?;
    conn.execute_unprepared(&format!(
        "PRAGMA writable_schema = ON; \
         UPDATE sqlite_schema SET sql = '{}' WHERE type = 'table' AND name = '{table}'; \
         PRAGMA schema_version = {}; \
         PRAGMA writable_schema = OFF;",
        rewritten.replace('\'', "''"),
        version + 1
    ))
    .await?;
    Ok(())
}
