//! The ledger's invariants, checked with set-based SQL (one pass per check,
//! no row-by-row loop), so it stays fast on tens of millions of rows.

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, IsolationLevel, Statement,
    TransactionTrait,
};

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
    /// Sum of all deposits minus all withdrawals, in cents: the only ways
    /// money enters and leaves.
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
            "{conserved:>8}  total of balances ({}) equals deposits minus withdrawals ({})",
            self.total_balance, self.total_deposited
        ));
        lines.join("\n")
    }
}

/// An operation's signed effect on its wallet's balance, and on its held
/// balance.
macro_rules! signed {
    () => {
        "CASE kind WHEN 'DEPOSIT' THEN amount WHEN 'TRANSFER_IN' THEN amount \
         WHEN 'TRANSFER_OUT' THEN -amount WHEN 'WITHDRAWAL' THEN -amount ELSE 0 END"
    };
}
macro_rules! held {
    () => {
        "CASE kind WHEN 'HOLD' THEN amount WHEN 'HOLD_RELEASE' THEN -amount ELSE 0 END"
    };
}

/// Each row with the available balance before it (`COALESCE`: rows from
/// before holds have none; it was the balance).
macro_rules! with_available_before {
    () => {
        "SELECT wallet_id, seq, kind, balance_after,
                COALESCE(available_after, balance_after) AS available_after,
                LAG(COALESCE(available_after, balance_after), 1, 0)
                    OVER (PARTITION BY wallet_id ORDER BY seq) AS available_before
         FROM operation"
    };
}

const CHECKS: &[(&str, &str)] = &[
    (
        "no debit leaves a wallet below its credit line, and no withdrawal uses credit",
        // The line in effect at each row: the sum of its wallet's
        // CREDIT_LIMIT changes so far.
        concat!(
            "SELECT COUNT(*) FROM (
            SELECT kind, available_after,
                   SUM(CASE WHEN kind = 'CREDIT_LIMIT' THEN available_after - available_before ELSE 0 END)
                       OVER (PARTITION BY wallet_id ORDER BY seq) AS line
            FROM (",
            with_available_before!(),
            ") a) x
         WHERE (kind IN ('TRANSFER_OUT', 'WITHDRAWAL', 'HOLD') AND available_after < 0)
            OR (kind = 'WITHDRAWAL' AND available_after < line) OR line < 0"
        ),
    ),
    (
        "each credit limit is its CREDIT_LIMIT rows' changes added up",
        concat!(
            "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, SUM(available_after - available_before) AS line FROM (",
            with_available_before!(),
            ") a WHERE kind = 'CREDIT_LIMIT' GROUP BY wallet_id) c ON c.wallet_id = w.id
         WHERE w.credit_limit <> COALESCE(c.line, 0)"
        ),
    ),
    (
        "no negative held balance or credit limit",
        "SELECT COUNT(*) FROM wallet WHERE held < 0 OR open_holds < 0 OR credit_limit < 0",
    ),
    (
        "each balance equals the sum of its operations",
        concat!(
            "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, SUM(",
            signed!(),
            ") AS net FROM operation GROUP BY wallet_id) o ON o.wallet_id = w.id
         WHERE w.balance <> COALESCE(o.net, 0)"
        ),
    ),
    (
        "each held balance equals its holds minus their releases, and its open holds",
        concat!(
            "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, SUM(",
            held!(),
            ") AS held FROM operation WHERE kind IN ('HOLD', 'HOLD_RELEASE') GROUP BY wallet_id) o
              ON o.wallet_id = w.id
            LEFT JOIN (SELECT from_wallet_id, SUM(amount) AS held, COUNT(*) AS n FROM transfer
              WHERE status = 'PENDING' GROUP BY from_wallet_id) p ON p.from_wallet_id = w.id
         WHERE w.held <> COALESCE(o.held, 0) OR w.held <> COALESCE(p.held, 0)
            OR w.open_holds <> COALESCE(p.n, 0)"
        ),
    ),
    (
        "each incoming held balance equals the open holds to it, and its rows",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, SUM(CASE kind WHEN 'INCOMING_HOLD' THEN amount ELSE -amount END) AS incoming
            FROM operation WHERE kind IN ('INCOMING_HOLD', 'INCOMING_HOLD_RELEASE') GROUP BY wallet_id) o
              ON o.wallet_id = w.id
            LEFT JOIN (SELECT to_wallet_id, SUM(amount) AS incoming FROM transfer
              WHERE status = 'PENDING' GROUP BY to_wallet_id) p ON p.to_wallet_id = w.id
         WHERE w.incoming_held <> COALESCE(o.incoming, 0) OR w.incoming_held <> COALESCE(p.incoming, 0)",
    ),
    (
        "each balance equals its newest operation's balance-after",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN operation o ON o.wallet_id = w.id AND o.seq = w.last_seq
         WHERE (w.last_seq = 0 AND w.balance <> 0) OR (w.last_seq > 0 AND (o.id IS NULL OR o.balance_after <> w.balance
            OR COALESCE(o.available_after, o.balance_after) <> w.balance - w.held + w.credit_limit
            OR COALESCE(o.incoming_held_after, w.incoming_held) <> w.incoming_held))",
    ),
    (
        "each wallet's sequence is gapless",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT wallet_id, COUNT(*) AS n, MAX(seq) AS top FROM operation GROUP BY wallet_id) o ON o.wallet_id = w.id
         WHERE COALESCE(o.n, 0) <> w.last_seq OR COALESCE(o.top, 0) <> w.last_seq",
    ),
    (
        "each transfer has the ledger rows of its status",
        "SELECT COUNT(*) FROM transfer t LEFT JOIN (
            SELECT transfer_id,
                   SUM(CASE WHEN kind = 'TRANSFER_OUT' THEN 1 ELSE 0 END) AS outs,
                   SUM(CASE WHEN kind = 'TRANSFER_IN' THEN 1 ELSE 0 END) AS ins,
                   SUM(CASE WHEN kind = 'HOLD' THEN 1 ELSE 0 END) AS holds,
                   SUM(CASE WHEN kind = 'HOLD_RELEASE' THEN 1 ELSE 0 END) AS releases,
                   SUM(CASE WHEN kind = 'INCOMING_HOLD' THEN 1 ELSE 0 END) AS incoming,
                   SUM(CASE WHEN kind = 'INCOMING_HOLD_RELEASE' THEN 1 ELSE 0 END) AS incoming_releases,
                   COUNT(*) AS n
            FROM operation WHERE transfer_id IS NOT NULL GROUP BY transfer_id) o ON o.transfer_id = t.id
         WHERE o.n IS NULL
            OR o.incoming_releases <> CASE WHEN t.status = 'PENDING' THEN 0 ELSE o.incoming END
            OR o.incoming > o.holds
            OR (t.status = 'POSTED' AND (o.outs <> 1 OR o.ins <> 1 OR o.holds > 1 OR o.releases <> o.holds))
            OR (t.status = 'PENDING' AND (o.holds <> 1 OR o.incoming <> 1 OR o.n <> 2))
            OR (t.status IN ('VOIDED', 'EXPIRED') AND (o.holds <> 1 OR o.releases <> 1
                OR o.n <> 2 + 2 * o.incoming))",
    ),
    (
        "each transfer's ledger rows match it",
        "SELECT COUNT(*) FROM operation o JOIN transfer t ON t.id = o.transfer_id
         WHERE (o.kind IN ('TRANSFER_OUT', 'TRANSFER_IN') AND o.amount <> COALESCE(t.captured_amount, t.amount))
            OR (o.kind IN ('HOLD', 'HOLD_RELEASE') AND o.amount <> t.amount)
            OR (o.kind IN ('TRANSFER_OUT', 'HOLD', 'HOLD_RELEASE')
                AND (o.wallet_id <> t.from_wallet_id OR o.counterparty_wallet_id <> t.to_wallet_id))
            OR (o.kind IN ('INCOMING_HOLD', 'INCOMING_HOLD_RELEASE') AND o.amount <> t.amount)
            OR (o.kind IN ('TRANSFER_IN', 'INCOMING_HOLD', 'INCOMING_HOLD_RELEASE')
                AND (o.wallet_id <> t.to_wallet_id OR o.counterparty_wallet_id <> t.from_wallet_id))
            OR o.kind IN ('DEPOSIT', 'WITHDRAWAL')",
    ),
    (
        "refunds never exceed what was captured, and add up",
        "SELECT COUNT(*) FROM transfer t LEFT JOIN (
            SELECT refund_of, SUM(amount) AS total FROM transfer WHERE refund_of IS NOT NULL GROUP BY refund_of) r
              ON r.refund_of = t.id
         WHERE t.refunded_amount > COALESCE(t.captured_amount, t.amount)
            OR t.refunded_amount <> COALESCE(r.total, 0)
            OR (r.total IS NOT NULL AND (t.kind <> 'PAYMENT' OR t.status <> 'POSTED'))",
    ),
    (
        "each balance-after follows from the row before",
        concat!(
            "SELECT COUNT(*) FROM (
            SELECT kind, balance_after, COALESCE(available_after, balance_after) AS available_after, ",
            signed!(),
            " AS signed, ",
            held!(),
            " AS held,
                   LAG(balance_after, 1, 0) OVER (PARTITION BY wallet_id ORDER BY seq) AS before,
                   LAG(COALESCE(available_after, balance_after), 1, 0) OVER (PARTITION BY wallet_id ORDER BY seq) AS available_before
            FROM operation) x
         WHERE balance_after <> before + signed
            OR (kind <> 'CREDIT_LIMIT' AND available_after <> available_before + signed - held)"
        ),
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
        "each wallet's status is its newest recorded change's (ACTIVE if none), and a closed one is empty, without a line",
        "SELECT COUNT(*) FROM wallet w LEFT JOIN (
            SELECT c.wallet_id, c.status FROM wallet_status_change c
            WHERE NOT EXISTS (SELECT 1 FROM wallet_status_change d WHERE d.wallet_id = c.wallet_id
                AND (d.created_at > c.created_at OR (d.created_at = c.created_at AND d.id > c.id)))) n
              ON n.wallet_id = w.id
         WHERE w.status <> COALESCE(n.status, 'ACTIVE')
            OR (w.status = 'CLOSED' AND (w.balance <> 0 OR w.held <> 0 OR w.incoming_held <> 0 OR w.open_holds <> 0
                OR w.credit_limit <> 0))",
    ),
    (
        "no transfer leg without its transfer",
        "SELECT COUNT(*) FROM operation o WHERE o.kind NOT IN ('DEPOSIT', 'WITHDRAWAL', 'CREDIT_LIMIT')
         AND NOT EXISTS (SELECT 1 FROM transfer t WHERE t.id = o.transfer_id)",
    ),
];

/// The metadata indexes hold exactly the pairs shown: set differences both
/// ways between each row's pairs (expanded from its JSON column, by each
/// backend's own JSON functions) and the index rows.
fn metadata_checks(backend: DbBackend) -> [(&'static str, String); 2] {
    // (FROM items expanding `{m}` into pairs, the pair's key, its value)
    let (expand, key, value) = match backend {
        DbBackend::Postgres => (
            "json_array_elements(CAST({m} AS json)) AS e(pair)",
            "e.pair->>0",
            "e.pair->>1",
        ),
        _ => (
            "json_each({m}) AS e",
            "json_extract(e.value, '$[0]')",
            "json_extract(e.value, '$[1]')",
        ),
    };
    let differ = |shown: String, columns: &str, table: &str| {
        format!(
            "WITH shown AS ({shown}) SELECT              (SELECT COUNT(*) FROM (SELECT {columns} FROM shown EXCEPT SELECT {columns} FROM {table}) a)              + (SELECT COUNT(*) FROM (SELECT {columns} FROM {table} EXCEPT SELECT {columns} FROM shown) b)"
        )
    };
    let rows = format!(
        "SELECT o.wallet_id, {key} AS key, {value} AS value, o.seq          FROM operation o LEFT JOIN transfer t ON t.id = o.transfer_id          CROSS JOIN {} WHERE o.metadata IS NOT NULL OR t.metadata IS NOT NULL",
        expand.replace("{m}", "COALESCE(o.metadata, t.metadata)")
    );
    let transfers = format!(
        "SELECT t.wallet_id, {key} AS key, {value} AS value, t.created_at, t.id AS transfer_id \
         FROM (SELECT id, from_wallet_id AS wallet_id, created_at, metadata FROM transfer \
                 WHERE metadata IS NOT NULL \
               UNION ALL SELECT id, to_wallet_id, created_at, metadata FROM transfer \
                 WHERE metadata IS NOT NULL) t \
         CROSS JOIN {}",
        expand.replace("{m}", "t.metadata")
    );
    [
        (
            "each ledger row's metadata is indexed, pair for pair, and nothing else",
            differ(rows, "wallet_id, key, value, seq", "operation_tag"),
        ),
        (
            "each transfer's metadata is indexed for both parties, and nothing else",
            differ(
                transfers,
                "wallet_id, key, value, created_at, transfer_id",
                "transfer_tag",
            ),
        ),
    ]
}

/// A pending transfer this far past its deadline means the sweeper is not
/// running (or cannot keep up).
const OVERDUE: &str = "no pending transfer past its deadline by more than the sweeper's period";

/// Runs every check.
pub async fn audit<C: ConnectionTrait>(conn: &C) -> Result<Audit, DbErr> {
    let mut checks = Vec::with_capacity(CHECKS.len());
    for (name, sql) in CHECKS {
        checks.push(Check {
            name,
            violations: scalar(conn, sql).await?,
        });
    }
    for (name, sql) in metadata_checks(conn.get_database_backend()) {
        checks.push(Check {
            name,
            violations: scalar(conn, &sql).await?,
        });
    }
    let cutoff = chrono::Utc::now()
        - chrono::TimeDelta::from_std(crate::domain::validate::HOLD_SWEEP_PERIOD)
            .unwrap_or_default();
    let overdue = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT COUNT(*) FROM transfer WHERE status = 'PENDING' AND expires_at < $1",
            [cutoff.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from the overdue check".into()))?;
    checks.push(Check {
        name: OVERDUE,
        violations: overdue.try_get_by_index::<i64>(0)?,
    });
    Ok(Audit {
        checks,
        total_balance: scalar(
            conn,
            "SELECT CAST(COALESCE(SUM(balance), 0) AS BIGINT) FROM wallet",
        )
        .await?,
        total_deposited: scalar(
            conn,
            "SELECT CAST(COALESCE(SUM(CASE kind WHEN 'DEPOSIT' THEN amount ELSE -amount END), 0) AS BIGINT) \
             FROM operation WHERE kind IN ('DEPOSIT', 'WITHDRAWAL')",
        )
        .await?,
    })
}

/// Runs every check in one read-only snapshot, so that totals read by
/// different checks agree under load. On PostgreSQL that snapshot holds
/// back the cleanup of what changes meanwhile: on a busy primary, prefer
/// a replica (`walletql verify --on-replica`).
pub async fn audit_in_one_snapshot(db: &DatabaseConnection) -> Result<Audit, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return audit(db).await;
    }
    let tx = db
        .begin_with_config(
            Some(IsolationLevel::RepeatableRead),
            Some(AccessMode::ReadOnly),
        )
        .await?;
    let audit = audit(&tx).await;
    tx.rollback().await?;
    audit
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
