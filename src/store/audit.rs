//! The ledger's invariants, checked with set-based SQL (one pass per check,
//! no row-by-row loop), so it stays fast on tens of millions of rows.

use sea_orm::{ConnectionTrait, DbErr, Statement};

/// One invariant and how many rows break it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub violations: i64,
}

/// The outcome of an audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    pub checks: Vec<Check>,
    /// Sum of all balances, in cents.
    pub total_balance: i64,
    /// Sum of all deposits, in cents: the only way money enters.
    pub total_deposited: i64,
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.checks.iter().all(|c| c.violations == 0) && self.total_balance == self.total_deposited
    }

    /// A human-readable report, one line per check.
    pub fn report(&self) -> String {
        let mut lines: Vec<String> = self
            .checks
            .iter()
            .map(|c| {
                let verdict = if c.violations == 0 { "ok" } else { "VIOLATED" };
                format!("{verdict:>8}  {}: {} violation(s)", c.name, c.violations)
            })
            .collect();
        let conserved = if self.total_balance == self.total_deposited {
            "ok"
        } else {
            "VIOLATED"
        };
        lines.push(format!(
            "{conserved:>8}  total of balances ({}) equals total deposited ({})",
            self.total_balance, self.total_deposited
        ));
        lines.join("\n")
    }
}

const CHECKS: &[(&str, &str)] = &[
    ("no negative balance", "SELECT COUNT(*) FROM wallet WHERE balance < 0"),
    (
        "each balance equals the sum of its operations",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, SUM(CASE WHEN kind = 'TRANSFER_OUT' THEN -amount ELSE amount END) AS net
            FROM operation GROUP BY wallet_id) o ON o.wallet_id = w.id
         WHERE w.balance <> COALESCE(o.net, 0)",
    ),
    (
        "each balance equals its newest operation's balance-after",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN operation o ON o.wallet_id = w.id AND o.seq = w.last_seq
         WHERE (w.last_seq = 0 AND w.balance <> 0) OR (w.last_seq > 0 AND (o.id IS NULL OR o.balance_after <> w.balance))",
    ),
    (
        "each wallet's sequence is gapless",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, COUNT(*) AS n, MAX(seq) AS top FROM operation GROUP BY wallet_id) o ON o.wallet_id = w.id
         WHERE COALESCE(o.n, 0) <> w.last_seq OR COALESCE(o.top, 0) <> w.last_seq",
    ),
    (
        "each transfer has exactly its two ledger rows",
        "SELECT COUNT(*) FROM transfer t LEFT JOIN (
            SELECT transfer_id,
                   SUM(CASE WHEN kind = 'TRANSFER_OUT' THEN 1 ELSE 0 END) AS outs,
                   SUM(CASE WHEN kind = 'TRANSFER_IN' THEN 1 ELSE 0 END) AS ins,
                   COUNT(*) AS n
            FROM operation WHERE transfer_id IS NOT NULL GROUP BY transfer_id) o ON o.transfer_id = t.id
         WHERE o.n IS NULL OR o.n <> 2 OR o.outs <> 1 OR o.ins <> 1",
    ),
    (
        "each transfer's ledger rows match it",
        "SELECT COUNT(*) FROM operation o JOIN transfer t ON t.id = o.transfer_id
         WHERE o.amount <> t.amount
            OR (o.kind = 'TRANSFER_OUT' AND (o.wallet_id <> t.from_wallet_id OR o.counterparty_wallet_id <> t.to_wallet_id))
            OR (o.kind = 'TRANSFER_IN' AND (o.wallet_id <> t.to_wallet_id OR o.counterparty_wallet_id <> t.from_wallet_id))
            OR o.kind = 'DEPOSIT'",
    ),
    (
        "each balance-after follows from the row before",
        "SELECT COUNT(*) FROM (
            SELECT balance_after, kind, amount,
                   LAG(balance_after, 1, 0) OVER (PARTITION BY wallet_id ORDER BY seq) AS before
            FROM operation) x
         WHERE balance_after <> before + CASE WHEN kind = 'TRANSFER_OUT' THEN -amount ELSE amount END",
    ),
    (
        "time never goes back within a wallet",
        "SELECT COUNT(*) FROM (
            SELECT created_at,
                   LAG(created_at) OVER (PARTITION BY wallet_id ORDER BY seq) AS previous
            FROM operation) x
         WHERE created_at < previous",
    ),
    (
        "each wallet's last change is its newest operation's time",
        "SELECT COUNT(*) FROM wallet w JOIN operation o ON o.wallet_id = w.id AND o.seq = w.last_seq
         WHERE o.created_at <> w.updated_at",
    ),
    (
        "no transfer leg without its transfer",
        "SELECT COUNT(*) FROM operation o WHERE o.kind <> 'DEPOSIT'
         AND NOT EXISTS (SELECT 1 FROM transfer t WHERE t.id = o.transfer_id)",
    ),
];

/// Runs every check.
pub async fn audit<C: ConnectionTrait>(conn: &C) -> Result<Audit, DbErr> {
    let mut checks = Vec::with_capacity(CHECKS.len());
    for (name, sql) in CHECKS {
        checks.push(Check {
            name,
            violations: scalar(conn, sql).await?,
        });
    }
    Ok(Audit {
        checks,
        total_balance: scalar(
            conn,
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM wallet",
        )
        .await?,
        total_deposited: scalar(
            conn,
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM operation WHERE kind = 'DEPOSIT'",
        )
        .await?,
    })
}

async fn scalar<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<i64, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            conn.get_database_backend(),
            sql.to_owned(),
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("no row from {sql}")))?;
    row.try_get_by_index::<i64>(0)
}
