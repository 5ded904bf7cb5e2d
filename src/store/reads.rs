//! Read queries. Every list is a keyset page (`WHERE key < cursor ORDER BY key
//! LIMIT n`) over an index, never an OFFSET, so its cost does not grow with
//! how deep the page is or how large the table becomes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::operation::{self, OperationKind};
use entity::{client, transfer, wallet, wallet_status_change};
use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Query, SelectStatement, UnionType};
use sea_orm::{
    ActiveEnum, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};
use uuid::Uuid;

/// Which way a page is read from its cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `first`/`after`: in the list's natural order.
    Forward,
    /// `last`/`before`: from the end of the list, returned in natural order.
    Backward,
}

/// A keyset page request: bounds are exclusive, `fetch` includes one extra
/// row that tells whether another page follows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PageQuery<K> {
    pub after: Option<K>,
    pub before: Option<K>,
    pub fetch: u64,
    pub direction: Direction,
}

/// Narrows a wallet's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OperationFilter {
    pub kinds: Option<Vec<OperationKind>>,
    /// Inclusive lower bound on `created_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `created_at`.
    pub to: Option<DateTime<Utc>>,
    /// Only rows showing this `(key, value)` pair.
    pub metadata: Option<(String, String)>,
}

pub async fn wallets_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<wallet::Model>, DbErr> {
    wallet::Entity::find()
        .filter(wallet::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

pub async fn wallets_by_client_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<wallet::Model>, DbErr> {
    wallet::Entity::find()
        .filter(wallet::Column::ClientId.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

pub async fn clients_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<client::Model>, DbErr> {
    client::Entity::find()
        .filter(client::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

pub async fn transfers_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<transfer::Model>, DbErr> {
    transfer::Entity::find()
        .filter(transfer::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

pub async fn operations_by_ids<C: ConnectionTrait>(
    conn: &C,
    ids: &[Uuid],
) -> Result<Vec<operation::Model>, DbErr> {
    operation::Entity::find()
        .filter(operation::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

pub async fn operation_by_id<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<Option<operation::Model>, DbErr> {
    operation::Entity::find_by_id(id).one(conn).await
}

/// The operations at positions `(wallet, seq)` of their wallets.
pub async fn operations_at<C: ConnectionTrait>(
    conn: &C,
    at: &[(Uuid, i64)],
) -> Result<Vec<operation::Model>, DbErr> {
    let mut any = Condition::any();
    for (wallet_id, seq) in at {
        any = any.add(
            Condition::all()
                .add(operation::Column::WalletId.eq(*wallet_id))
                .add(operation::Column::Seq.eq(*seq)),
        );
    }
    operation::Entity::find().filter(any).all(conn).await
}

/// The operation at position `seq` of a wallet.
pub async fn operation_at<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    seq: i64,
) -> Result<Option<operation::Model>, DbErr> {
    Ok(operations_at(conn, &[(wallet_id, seq)]).await?.pop())
}

/// The client owning a token (by its hash) and that client's wallet.
pub async fn caller_by_token_hash<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> Result<Option<(Uuid, Uuid)>, DbErr> {
    wallet::Entity::find()
        .select_only()
        .column(wallet::Column::ClientId)
        .column(wallet::Column::Id)
        .inner_join(client::Entity)
        .filter(client::Column::TokenHash.eq(token_hash))
        .into_tuple::<(Uuid, Uuid)>()
        .one(conn)
        .await
}

/// A page of wallets in id order (ids are UUIDv7, so this is creation order),
/// optionally only those of one client.
pub async fn wallet_page<C: ConnectionTrait>(
    conn: &C,
    owner: Option<Uuid>,
    page: &PageQuery<Uuid>,
) -> Result<Vec<wallet::Model>, DbErr> {
    let mut query = wallet::Entity::find()
        .apply_if(owner, |q, owner| {
            q.filter(wallet::Column::ClientId.eq(owner))
        })
        .apply_if(page.after, |q, after| {
            q.filter(wallet::Column::Id.gt(after))
        })
        .apply_if(page.before, |q, before| {
            q.filter(wallet::Column::Id.lt(before))
        })
        .limit(page.fetch);
    query = match page.direction {
        Direction::Forward => query.order_by_asc(wallet::Column::Id),
        Direction::Backward => query.order_by_desc(wallet::Column::Id),
    };
    let mut rows = query.all(conn).await?;
    if page.direction == Direction::Backward {
        rows.reverse();
    }
    Ok(rows)
}

/// One page of history for each of several wallets, in a single statement:
/// a `UNION ALL` of keyset queries, each of which walks an index from its
/// cursor. Each wallet's rows come back newest first, as the API orders
/// history, and may include the extra row of `page.fetch`.
///
/// Filters keep the walk on an index however deep the history:
/// - a time window becomes sequence bounds (time never goes back along a
///   wallet's sequence), each found by a binary search of `(wallet_id,
///   seq)` (`first_seq_from`);
/// - kinds get one part per kind, each walking `(wallet_id, kind, seq)` with
///   its own limit; the parts are merged here;
/// - a metadata pair walks `operation_tag`'s `(wallet_id, key, value, seq)`
///   instead and joins each row by `(wallet_id, seq)`; kinds then narrow
///   along that walk.
pub async fn operation_pages<C: ConnectionTrait>(
    conn: &C,
    wallet_ids: &[Uuid],
    page: &PageQuery<i64>,
    filter: &OperationFilter,
) -> Result<HashMap<Uuid, Vec<operation::Model>>, DbErr> {
    let kinds: Vec<Option<OperationKind>> = match &filter.kinds {
        Some(kinds) => {
            let mut kinds = kinds.clone();
            kinds.sort_by_key(|k| k.to_value());
            kinds.dedup();
            kinds.into_iter().map(Some).collect()
        }
        None => vec![None],
    };
    let backend = conn.get_database_backend();
    let mut union: Option<SelectStatement> = None;
    for wallet_id in wallet_ids {
        for kind in &kinds {
            // SQLite accepts ORDER BY and LIMIT in a compound query's parts
            // only inside a subquery.
            let part = Query::select()
                .column(Asterisk)
                .from_subquery(
                    operation_page(backend, *wallet_id, page, filter, *kind).into_query(),
                    Alias::new("page"),
                )
                .to_owned();
            match union.as_mut() {
                None => union = Some(part),
                Some(union) => {
                    union.union(UnionType::All, part);
                }
            }
        }
    }
    let Some(union) = union else {
        return Ok(HashMap::new());
    };
    let statement = conn.get_database_backend().build(&union);
    let rows = operation::Entity::find()
        .from_raw_sql(statement)
        .all(conn)
        .await?;
    let mut pages: HashMap<Uuid, Vec<operation::Model>> = HashMap::new();
    for row in rows {
        pages.entry(row.wallet_id).or_default().push(row);
    }
    let fetch = usize::try_from(page.fetch).unwrap_or(usize::MAX);
    for rows in pages.values_mut() {
        // Several kinds: keep the page's `fetch` rows nearest the cursor.
        match page.direction {
            Direction::Forward => rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.seq)),
            Direction::Backward => rows.sort_unstable_by_key(|row| row.seq),
        }
        rows.truncate(fetch);
        rows.sort_unstable_by_key(|row| std::cmp::Reverse(row.seq));
    }
    Ok(pages)
}

fn operation_page(
    backend: DbBackend,
    wallet_id: Uuid,
    page: &PageQuery<i64>,
    filter: &OperationFilter,
    kind: Option<OperationKind>,
) -> Select<operation::Entity> {
    if let Some((key, value)) = &filter.metadata {
        return tagged_operation_page(backend, wallet_id, page, filter, kind, key, value);
    }
    let query = operation::Entity::find()
        .filter(operation::Column::WalletId.eq(wallet_id))
        .apply_if(kind, |q, kind| q.filter(operation::Column::Kind.eq(kind)))
        // Newest first: "after" a cursor means older, "before" means newer.
        .apply_if(page.after, |q, after| {
            q.filter(operation::Column::Seq.lt(after))
        })
        .apply_if(page.before, |q, before| {
            q.filter(operation::Column::Seq.gt(before))
        })
        .apply_if(filter.from, |q, from| {
            q.filter(
                Expr::col(operation::Column::Seq).gte(first_seq_from(backend, wallet_id, from)),
            )
        })
        .apply_if(filter.to, |q, to| {
            q.filter(Expr::col(operation::Column::Seq).lt(first_seq_from(backend, wallet_id, to)))
        })
        .limit(page.fetch);
    match page.direction {
        Direction::Forward => query.order_by_desc(operation::Column::Seq),
        Direction::Backward => query.order_by_asc(operation::Column::Seq),
    }
}

/// `operation_page` for rows showing a metadata pair: the walk, its bounds
/// and its order are on the tag's sequence number, so PostgreSQL and SQLite
/// walk the tag's primary key and look each row up by `(wallet_id, seq)`.
fn tagged_operation_page(
    backend: DbBackend,
    wallet_id: Uuid,
    page: &PageQuery<i64>,
    filter: &OperationFilter,
    kind: Option<OperationKind>,
    key: &str,
    value: &str,
) -> Select<operation::Entity> {
    let tag = Alias::new("operation_tag");
    let seq = || Expr::col((tag.clone(), Alias::new("seq")));
    let mut query = operation::Entity::find()
        .apply_if(kind, |q, kind| q.filter(operation::Column::Kind.eq(kind)))
        .filter(Expr::col((tag.clone(), Alias::new("wallet_id"))).eq(wallet_id))
        .filter(Expr::col((tag.clone(), Alias::new("key"))).eq(key))
        .filter(Expr::col((tag.clone(), Alias::new("value"))).eq(value))
        .apply_if(page.after, |q, after| q.filter(seq().lt(after)))
        .apply_if(page.before, |q, before| q.filter(seq().gt(before)))
        .apply_if(filter.from, |q, from| {
            q.filter(seq().gte(first_seq_from(backend, wallet_id, from)))
        })
        .apply_if(filter.to, |q, to| {
            q.filter(seq().lt(first_seq_from(backend, wallet_id, to)))
        })
        .limit(page.fetch);
    QuerySelect::query(&mut query).inner_join(
        tag.clone(),
        Expr::col((operation::Entity, operation::Column::WalletId))
            .equals((tag.clone(), Alias::new("wallet_id")))
            .and(
                Expr::col((operation::Entity, operation::Column::Seq))
                    .equals((tag.clone(), Alias::new("seq"))),
            ),
    );
    match page.direction {
        Direction::Forward => query.order_by_desc(seq()),
        Direction::Backward => query.order_by_asc(seq()),
    }
}

/// The sequence number of a wallet's first operation at or after `at`, or
/// one past its last when there is none. Rows at or after `at` are exactly
/// those from this number on: time never goes back along a wallet's
/// sequence, and the sequence is gapless from 1 (both audited), so a binary
/// search over `UNIQUE (wallet_id, seq)` finds it in log2(n) probes (20 for
/// a million operations) without an index on time, which would cost every
/// ledger row about 50 bytes.
fn first_seq_from(backend: DbBackend, wallet_id: Uuid, at: DateTime<Utc>) -> Expr {
    const SEARCH: &str = "(WITH RECURSIVE s(lo, hi) AS ( \
         SELECT CAST(1 AS BIGINT), last_seq + 1 FROM wallet WHERE id = ?1 \
         UNION ALL \
         SELECT CASE WHEN o.created_at >= ?2 THEN s.lo ELSE o.seq + 1 END, \
                CASE WHEN o.created_at >= ?3 THEN o.seq ELSE s.hi END \
         FROM s JOIN operation o ON o.wallet_id = ?4 AND o.seq = (s.lo + s.hi) / 2 \
         WHERE s.lo < s.hi) \
         SELECT MAX(lo) FROM s)";
    // sea-query's placeholders: numbered `$n` on PostgreSQL, `?` in order
    // elsewhere.
    let sql = match backend {
        DbBackend::Postgres => SEARCH.replace('?', "$"),
        _ => (1..=4).fold(SEARCH.to_owned(), |sql, n| {
            sql.replace(&format!("?{n}"), "?")
        }),
    };
    Expr::cust_with_values(
        sql,
        [
            sea_orm::Value::from(wallet_id),
            at.into(),
            at.into(),
            wallet_id.into(),
        ],
    )
}

/// A wallet's operations after `seq`, oldest first: how a subscriber
/// catches up from its cursor, or fills a gap.
pub async fn operations_after<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    seq: i64,
    limit: u64,
) -> Result<Vec<operation::Model>, DbErr> {
    operation::Entity::find()
        .filter(operation::Column::WalletId.eq(wallet_id))
        .filter(operation::Column::Seq.gt(seq))
        .order_by_asc(operation::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
}

/// The operations of each `(wallet, from, to)` sequence range, inclusive, by
/// time: the order they were settled in (see `ledger::settle`), which
/// within a wallet is the sequence's. How a listener reads a batch it was
/// notified of.
pub async fn operations_in_ranges<C: ConnectionTrait>(
    conn: &C,
    ranges: &[(Uuid, i64, i64)],
) -> Result<Vec<operation::Model>, DbErr> {
    let mut any = sea_orm::Condition::any();
    for &(wallet, from, to) in ranges {
        any = any.add(
            sea_orm::Condition::all()
                .add(operation::Column::WalletId.eq(wallet))
                .add(operation::Column::Seq.between(from, to)),
        );
    }
    operation::Entity::find()
        .filter(any)
        .order_by_asc(operation::Column::CreatedAt)
        .order_by_asc(operation::Column::Id)
        .all(conn)
        .await
}

/// A wallet's balance from its operations strictly before `at`: the
/// balance-after of the row before its first at or after `at` (0 before
/// the first), found by `first_seq_from`'s search, however deep the history.
pub async fn balance_before<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    at: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let row = operation::Entity::find()
        .select_only()
        .column(operation::Column::BalanceAfter)
        .filter(operation::Column::WalletId.eq(wallet_id))
        .filter(
            Expr::col(operation::Column::Seq).eq(first_seq_from(
                conn.get_database_backend(),
                wallet_id,
                at,
            )
            .sub(1)),
        )
        .into_tuple::<i64>()
        .one(conn)
        .await?;
    Ok(row.unwrap_or(0))
}

/// The sequence numbers `[first, end)` of a wallet's operations at or
/// after `from` and before `to`: two binary searches (`first_seq_from`).
pub async fn seq_window<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(i64, i64), DbErr> {
    let backend = conn.get_database_backend();
    let query = Query::select()
        .expr(first_seq_from(backend, wallet_id, from))
        .expr(first_seq_from(backend, wallet_id, to))
        .to_owned();
    let row = conn
        .query_one(&query)
        .await?
        .ok_or_else(|| DbErr::Custom("no row from the window search".into()))?;
    // A wallet that does not exist has no rows: an empty window.
    let first = row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(1);
    let end = row.try_get_by_index::<Option<i64>>(1)?.unwrap_or(first);
    Ok((first, Ord::max(end, first)))
}

/// What a wallet's operations with sequence numbers in `[first, end)` add
/// up to, in one statement: a walk of `(wallet_id, seq)` for the totals and
/// a probe each for the balances on either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSummary {
    pub count: i64,
    pub total_in: i64,
    pub total_out: i64,
    /// The balance after row `first - 1` (0 before the first row).
    pub opening: i64,
    /// The balance after row `end - 1`.
    pub closing: i64,
}

pub async fn window_summary<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    (first, end): (i64, i64),
) -> Result<WindowSummary, DbErr> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            conn.get_database_backend(),
            "SELECT COUNT(*), \
                 CAST(COALESCE(SUM(CASE WHEN kind IN ('DEPOSIT', 'TRANSFER_IN') THEN amount ELSE 0 END), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(CASE WHEN kind IN ('WITHDRAWAL', 'TRANSFER_OUT') THEN amount ELSE 0 END), 0) AS BIGINT), \
                 COALESCE((SELECT balance_after FROM operation WHERE wallet_id = $1 AND seq = $4), 0), \
                 COALESCE((SELECT balance_after FROM operation WHERE wallet_id = $1 AND seq = $5), 0) \
             FROM operation WHERE wallet_id = $1 AND seq >= $2 AND seq < $3",
            [
                wallet_id.into(),
                first.into(),
                end.into(),
                (first - 1).into(),
                (end - 1).into(),
            ],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("no row from the window summary".into()))?;
    Ok(WindowSummary {
        count: row.try_get_by_index(0)?,
        total_in: row.try_get_by_index(1)?,
        total_out: row.try_get_by_index(2)?,
        opening: row.try_get_by_index(3)?,
        closing: row.try_get_by_index(4)?,
    })
}

/// One line of a statement: a ledger row with its transfer's description
/// and metadata (stored once, on the transfer).
#[derive(Clone, Debug, sea_orm::FromQueryResult)]
pub struct StatementLine {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub kind: OperationKind,
    pub amount: i64,
    pub balance_after: i64,
    pub available_after: Option<i64>,
    pub transfer_id: Option<Uuid>,
    pub counterparty_wallet_id: Option<Uuid>,
    pub description: Option<String>,
    pub metadata: Option<String>,
}

/// Up to `limit` statement lines from sequence number `from` (inclusive)
/// to `end` (exclusive), oldest first: one keyset page of `(wallet_id,
/// seq)`, each transfer looked up by id.
pub async fn statement_page<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    from: i64,
    end: i64,
    limit: u64,
) -> Result<Vec<StatementLine>, DbErr> {
    StatementLine::find_by_statement(sea_orm::Statement::from_sql_and_values(
        conn.get_database_backend(),
        "SELECT o.seq, o.created_at, o.kind, o.amount, o.balance_after, o.available_after, \
             o.transfer_id, o.counterparty_wallet_id, \
             COALESCE(o.description, t.description) AS description, \
             COALESCE(o.metadata, t.metadata) AS metadata \
         FROM operation o LEFT JOIN transfer t ON t.id = o.transfer_id \
         WHERE o.wallet_id = $1 AND o.seq >= $2 AND o.seq < $3 ORDER BY o.seq LIMIT $4",
        [
            wallet_id.into(),
            from.into(),
            end.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    ))
    .all(conn)
    .await
}

/// One transfer by id.
pub async fn transfer_by_id<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
) -> Result<Option<transfer::Model>, DbErr> {
    transfer::Entity::find_by_id(id).one(conn).await
}

/// A wallet's open holds, as payer or as payee, soonest deadline first,
/// after the `(expires_at, id)` position: two walks of partial indexes
/// (`transfer_pending_from_idx`, `transfer_pending_to_idx`), merged here.
pub async fn pending_transfers<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    fetch: u64,
) -> Result<Vec<transfer::Model>, DbErr> {
    let mut rows = Vec::new();
    for side in [transfer::Column::FromWalletId, transfer::Column::ToWalletId] {
        let mut query = transfer::Entity::find()
            .filter(transfer::Column::Status.eq(transfer::TransferStatus::Pending))
            .filter(side.eq(wallet_id));
        if let Some((at, id)) = after {
            query = query.filter(
                Condition::any()
                    .add(transfer::Column::ExpiresAt.gt(at))
                    .add(
                        Condition::all()
                            .add(transfer::Column::ExpiresAt.eq(at))
                            .add(transfer::Column::Id.gt(id)),
                    ),
            );
        }
        rows.extend(
            query
                .order_by_asc(transfer::Column::ExpiresAt)
                .order_by_asc(transfer::Column::Id)
                .limit(fetch)
                .all(conn)
                .await?,
        );
    }
    rows.sort_by_key(|t| (t.expires_at, t.id));
    rows.truncate(usize::try_from(fetch).unwrap_or(usize::MAX));
    Ok(rows)
}

/// Which of a wallet's transfers a list shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferFilter {
    pub statuses: Option<Vec<transfer::TransferStatus>>,
    pub kinds: Option<Vec<transfer::TransferKind>>,
    /// `Some(true)`: only what it received; `Some(false)`: only what it
    /// paid; `None`: both.
    pub incoming: Option<bool>,
    /// Only transfers carrying this `(key, value)` pair.
    pub metadata: Option<(String, String)>,
}

/// A wallet's transfers, paid or received, newest first by `(created_at,
/// id)`, from a keyset cursor: one walk per side of `transfer_from_time_idx`
/// and `transfer_to_time_idx`, merged here. Status and kind filters are
/// applied along the walk.
pub async fn transfer_page<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    page: &PageQuery<(DateTime<Utc>, Uuid)>,
    filter: &TransferFilter,
) -> Result<Vec<transfer::Model>, DbErr> {
    let key = || {
        Expr::tuple([
            Expr::col(transfer::Column::CreatedAt),
            Expr::col(transfer::Column::Id),
        ])
    };
    let at = |(time, id): (DateTime<Utc>, Uuid)| Expr::tuple([Expr::value(time), Expr::value(id)]);
    let sides = match filter.incoming {
        Some(true) => vec![transfer::Column::ToWalletId],
        Some(false) => vec![transfer::Column::FromWalletId],
        None => vec![transfer::Column::FromWalletId, transfer::Column::ToWalletId],
    };
    // An empty list matches nothing (and `IN ()` is no SQL).
    if filter.statuses.as_ref().is_some_and(Vec::is_empty)
        || filter.kinds.as_ref().is_some_and(Vec::is_empty)
    {
        return Ok(Vec::new());
    }
    // Kinds and statuses are written into the statement, not bound: a
    // prepared statement's generic plan cannot prove `kind = $1` matches a
    // partial index's `kind = 'REFUND'`, and would walk every transfer.
    let literal = |column: &str, values: Vec<&'static str>| {
        let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
        Expr::cust(format!("{column} IN ({})", list.join(", ")))
    };
    let statuses = (filter.statuses.as_ref())
        .map(|s| literal("status", s.iter().map(|s| s.as_str()).collect()));
    let kinds =
        (filter.kinds.as_ref()).map(|k| literal("kind", k.iter().map(|k| k.as_str()).collect()));
    if let Some((key, value)) = &filter.metadata {
        return tagged_transfer_page(conn, wallet_id, page, filter, (statuses, kinds), key, value)
            .await;
    }
    let mut rows = Vec::new();
    for side in sides {
        let query = transfer::Entity::find()
            .filter(side.eq(wallet_id))
            .apply_if(statuses.clone(), QueryFilter::filter)
            .apply_if(kinds.clone(), QueryFilter::filter)
            // Newest first: "after" a cursor means older, "before" newer.
            .apply_if(page.after, |q, after| q.filter(key().lt(at(after))))
            .apply_if(page.before, |q, before| q.filter(key().gt(at(before))))
            .limit(page.fetch);
        let query = match page.direction {
            Direction::Forward => query
                .order_by_desc(transfer::Column::CreatedAt)
                .order_by_desc(transfer::Column::Id),
            Direction::Backward => query
                .order_by_asc(transfer::Column::CreatedAt)
                .order_by_asc(transfer::Column::Id),
        };
        rows.extend(query.all(conn).await?);
    }
    // Keep the page's `fetch` rows nearest the cursor, newest first.
    match page.direction {
        Direction::Forward => {
            rows.sort_unstable_by_key(|t| std::cmp::Reverse((t.created_at, t.id)))
        }
        Direction::Backward => rows.sort_unstable_by_key(|t| (t.created_at, t.id)),
    }
    rows.truncate(usize::try_from(page.fetch).unwrap_or(usize::MAX));
    rows.sort_unstable_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    Ok(rows)
}

/// `transfer_page` for transfers carrying a metadata pair: one walk of
/// `transfer_tag`'s `(wallet_id, key, value, created_at, transfer_id)` from
/// the cursor (one tag row per party, so both sides come in one walk),
/// each transfer looked up by id; direction, statuses and kinds narrow
/// along the walk.
async fn tagged_transfer_page<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    page: &PageQuery<(DateTime<Utc>, Uuid)>,
    filter: &TransferFilter,
    (statuses, kinds): (Option<Expr>, Option<Expr>),
    key: &str,
    value: &str,
) -> Result<Vec<transfer::Model>, DbErr> {
    let tag = Alias::new("transfer_tag");
    let column = |name: &str| Expr::col((tag.clone(), Alias::new(name)));
    let position = || Expr::tuple([column("created_at"), column("transfer_id")]);
    let at = |(time, id): (DateTime<Utc>, Uuid)| Expr::tuple([Expr::value(time), Expr::value(id)]);
    let side = match filter.incoming {
        Some(true) => Some(transfer::Column::ToWalletId.eq(wallet_id)),
        Some(false) => Some(transfer::Column::FromWalletId.eq(wallet_id)),
        None => None,
    };
    let mut query = transfer::Entity::find()
        .filter(column("wallet_id").eq(wallet_id))
        .filter(column("key").eq(key))
        .filter(column("value").eq(value))
        .apply_if(side, QueryFilter::filter)
        .apply_if(statuses, QueryFilter::filter)
        .apply_if(kinds, QueryFilter::filter)
        .apply_if(page.after, |q, after| q.filter(position().lt(at(after))))
        .apply_if(page.before, |q, before| q.filter(position().gt(at(before))))
        .limit(page.fetch);
    QuerySelect::query(&mut query).inner_join(
        tag.clone(),
        Expr::col((transfer::Entity, transfer::Column::Id))
            .equals((tag.clone(), Alias::new("transfer_id"))),
    );
    let query = match page.direction {
        Direction::Forward => query
            .order_by_desc(column("created_at"))
            .order_by_desc(column("transfer_id")),
        Direction::Backward => query
            .order_by_asc(column("created_at"))
            .order_by_asc(column("transfer_id")),
    };
    let mut rows = query.all(conn).await?;
    rows.sort_unstable_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    Ok(rows)
}

/// A wallet's status changes, newest first, at most `limit`
/// (`wallet_status_change_wallet_idx`).
pub async fn status_changes<C: ConnectionTrait>(
    conn: &C,
    wallet_id: Uuid,
    limit: u64,
) -> Result<Vec<wallet_status_change::Model>, DbErr> {
    wallet_status_change::Entity::find()
        .filter(wallet_status_change::Column::WalletId.eq(wallet_id))
        .order_by_desc(wallet_status_change::Column::CreatedAt)
        .order_by_desc(wallet_status_change::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// The time of each wallet's newest status change, for those that have one.
pub async fn newest_status_changes<C: ConnectionTrait>(
    conn: &C,
    wallet_ids: &[Uuid],
) -> Result<HashMap<Uuid, DateTime<Utc>>, DbErr> {
    let rows: Vec<(Uuid, Option<DateTime<Utc>>)> = wallet_status_change::Entity::find()
        .select_only()
        .column(wallet_status_change::Column::WalletId)
        .column_as(wallet_status_change::Column::CreatedAt.max(), "newest")
        .filter(wallet_status_change::Column::WalletId.is_in(wallet_ids.iter().copied()))
        .group_by(wallet_status_change::Column::WalletId)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, at)| Some((id, at?)))
        .collect())
}

/// The refunds of these payments, oldest first (`transfer_refund_of_idx`).
pub async fn refunds_of<C: ConnectionTrait>(
    conn: &C,
    payment_ids: &[Uuid],
) -> Result<Vec<transfer::Model>, DbErr> {
    transfer::Entity::find()
        .filter(transfer::Column::RefundOf.is_in(payment_ids.iter().copied()))
        .order_by_asc(transfer::Column::Id)
        .all(conn)
        .await
}
