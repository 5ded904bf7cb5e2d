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
