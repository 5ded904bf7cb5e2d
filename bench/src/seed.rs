//! Fills an empty PostgreSQL database with clients, wallets and a consistent
//! ledger, fast: rows are generated in memory and streamed with COPY, and
//! foreign-key triggers are off for the load (the generator keeps the data
//! consistent; `walletql verify`-style checks confirm it afterwards).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use sea_orm::sqlx::{self, Postgres, pool::PoolConnection};
use uuid::Uuid;
use walletql::domain::auth::hash_token;
use walletql::store::Store;

use crate::ids::{client_id, token, wallet_id};

/// Every wallet starts with this deposit, in cents (one million dollars),
/// large enough that random transfers seldom run dry.
pub const INITIAL_DEPOSIT: i64 = 100_000_000;

#[derive(Clone, Debug)]
pub struct SeedConfig {
    pub database_url: String,
    pub clients: u64,
    /// Ledger rows in all: one deposit per wallet, then two per transfer.
    pub operations: u64,
    /// Share of transfers that involve wallet 0, the "whale" whose history
    /// gets deep (0.1 puts a tenth of all transfers on it).
    pub whale_share: f64,
    pub progress: bool,
    pub rng_seed: u64,
    /// Payment flows posted through the ledger after the bulk load (holds
    /// captured, voided or left pending; payments partly refunded;
    /// withdrawals), so that every verb's rows are in the data.
    pub flows: u64,
}

#[derive(Clone, Debug)]
pub struct SeedReport {
    pub clients: u64,
    pub deposits: u64,
    pub transfers: u64,
    pub operations: u64,
    /// Flows posted through the ledger (see `SeedConfig::flows`).
    pub flows: u64,
    pub elapsed: Duration,
}

/// Rows buffered before a COPY chunk is sent.
const CHUNK_BYTES: usize = 4 << 20;

pub async fn seed(config: &SeedConfig) -> anyhow::Result<SeedReport> {
    let mut report = bulk(config).await?;
    if config.flows > 0 {
        let started = Instant::now();
        let store = Store::connect(&config.database_url, 4)
            .await
            .context("connecting")?;
        report.flows = flows(&store, config).await?;
        report.elapsed += started.elapsed();
    }
    Ok(report)
}

/// Each verb's rows, posted through the ledger itself (so they are exactly
/// what the service writes): flow `i` between two random seeded wallets is
/// a hold captured in part (i % 5 == 0), a hold voided (1), a hold left
/// pending for a week (2), a payment refunded in part (3), or a withdrawal
/// (4).
async fn flows(store: &Store, config: &SeedConfig) -> anyhow::Result<u64> {
    use walletql::domain::auth::Caller;
    use walletql::domain::money::Money;
    use walletql::ledger::{
        AuthorizeRequest, Ledger, LedgerOptions, RefundRequest, TransferRequest, WithdrawRequest,
    };
    let ledger = Ledger::start(store.clone(), LedgerOptions::default()).await?;
    let mut rng = fastrand::Rng::with_seed(config.rng_seed ^ 0x5eed);
    let cents = |n: i64| Money::from_cents(n).context("amount");
    let key = |rng: &mut fastrand::Rng| format!("seed-{:016x}", rng.u64(..));
    for i in 0..config.flows {
        let from = rng.u64(..config.clients);
        let to = (from + rng.u64(1..config.clients)) % config.clients;
        let payer = Caller::Client {
            client_id: client_id(from),
            wallet_id: wallet_id(from),
        };
        let amount = cents(rng.i64(100..10_000))?;
        match i % 5 {
            0..=2 => {
                let held = ledger
                    .authorize(
                        &payer,
                        AuthorizeRequest {
                            from_wallet_id: wallet_id(from),
                            to_wallet_id: wallet_id(to),
                            amount,
                            expires_at: None,
                            description: Some(format!("order {i}")),
                            metadata: Default::default(),
                            idempotency_key: key(&mut rng),
                        },
                    )
                    .await?;
                match i % 5 {
                    0 => {
                        let part = cents(amount.cents() / 2 + 1)?;
                        ledger
                            .capture(
                                &Caller::Operator,
                                held.transfer.id,
                                Some(part),
                                key(&mut rng),
                            )
                            .await?;
                    }
                    1 => {
                        ledger
                            .void(&Caller::Operator, held.transfer.id, key(&mut rng))
                            .await?;
                    }
                    _ => {}
                }
            }
            3 => {
                let paid = ledger
                    .transfer(
                        &payer,
                        TransferRequest {
                            from_wallet_id: wallet_id(from),
                            to_wallet_id: wallet_id(to),
                            amount,
                            description: None,
                            metadata: Default::default(),
                            idempotency_key: None,
                        },
                    )
                    .await?;
                ledger
                    .refund(
                        &Caller::Operator,
                        RefundRequest {
                            transfer_id: paid.transfer.id,
                            amount: Some(cents(amount.cents() / 3 + 1)?),
                            description: Some("partial refund".into()),
                            metadata: Default::default(),
                            idempotency_key: key(&mut rng),
                        },
                    )
                    .await?;
            }
            _ => {
                ledger
                    .withdraw(
                        &Caller::Operator,
                        WithdrawRequest {
                            wallet_id: wallet_id(from),
                            amount,
                            description: Some("payout".into()),
                            metadata: Default::default(),
                            idempotency_key: key(&mut rng),
                        },
                    )
                    .await?;
            }
        }
    }
    Ok(config.flows)
}

async fn bulk(config: &SeedConfig) -> anyhow::Result<SeedReport> {
    if config.clients < 2 {
        bail!("need at least 2 clients");
    }
    let started = Instant::now();
    let store = Store::connect(&config.database_url, 4)
        .await
        .context("connecting")?;
    if store.backend() == sea_orm::DbBackend::Sqlite {
        return seed_sqlite(&store, config.clients, started).await;
    }
    let pool = store.db().get_postgres_connection_pool().clone();
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM wallet")
        .fetch_one(&pool)
        .await?;
    if existing > 0 {
        bail!("the database already has {existing} wallets: seed an empty one");
    }
    let mut ops_conn = loading_connection(&pool).await?;
    let mut transfers_conn = loading_connection(&pool).await?;

    let now = Utc::now();
    let start = now - chrono::Duration::days(30);
    let clients = config.clients;
    let mut copy = ops_conn
        .copy_in_raw("COPY client (id, name, email, token_hash, created_at) FROM STDIN")
        .await?;
    let mut buffer = String::with_capacity(CHUNK_BYTES + 1024);
    for n in 0..clients {
        buffer.push_str(&format!(
            "{}\tclient {n}\t\\N\t{}\t{}\n",
            client_id(n),
            hash_token(&token(n)),
            timestamp(start)
        ));
        if buffer.len() >= CHUNK_BYTES {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
        }
    }
    copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
    copy.finish().await?;

    let progress = if config.progress {
        let bar = ProgressBar::new(config.operations);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} operations ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut ops = ops_conn
        .copy_in_raw(
            "COPY operation (id, wallet_id, seq, kind, amount, balance_after, transfer_id, counterparty_wallet_id, description, created_at) FROM STDIN",
        )
        .await?;
    let mut transfers = transfers_conn
        .copy_in_raw("COPY transfer (id, from_wallet_id, to_wallet_id, amount, description, created_at) FROM STDIN")
        .await?;
    let mut ops_buffer = String::with_capacity(CHUNK_BYTES + 1024);
    let mut transfers_buffer = String::with_capacity(CHUNK_BYTES + 1024);
    let mut balance = vec![0i64; clients as usize];
    let mut seq = vec![0i64; clients as usize];
    // Each wallet's newest operation's time: its `updated_at`.
    let mut last_at = vec![String::new(); clients as usize];
    let mut rng = fastrand::Rng::with_seed(config.rng_seed);
    let step =
        (now - start).num_microseconds().unwrap_or(1).max(1) / config.operations.max(1) as i64;
    let mut written = 0u64;
    let (mut deposits, mut transfer_count) = (0u64, 0u64);

    while written < config.operations {
        let at = timestamp(start + chrono::Duration::microseconds(step * written as i64));
        let deposit_due = deposits < clients;
        if deposit_due || config.operations - written < 2 {
            let w = (deposits % clients) as usize;
            balance[w] += INITIAL_DEPOSIT;
            seq[w] += 1;
            last_at[w].clone_from(&at);
            ops_buffer.push_str(&format!(
                "{}\t{}\t{}\tDEPOSIT\t{INITIAL_DEPOSIT}\t{}\t\\N\t\\N\t\\N\t{at}\n",
                Uuid::now_v7(),
                wallet_id(w as u64),
                seq[w],
                balance[w]
            ));
            deposits += 1;
            written += 1;
        } else {
            let (mut from, mut to) = pick_pair(&mut rng, clients, config.whale_share);
            let mut amount = rng.i64(1..=5_000);
            if balance[from] < amount {
                std::mem::swap(&mut from, &mut to);
            }
            // Never overdraw: send what there is, or pick another pair.
            amount = amount.min(balance[from]);
            if amount == 0 {
                continue;
            }
            let transfer_id = Uuid::now_v7();
            transfers_buffer.push_str(&format!(
                "{transfer_id}\t{}\t{}\t{amount}\t\\N\t{at}\n",
                wallet_id(from as u64),
                wallet_id(to as u64)
            ));
            balance[from] -= amount;
            balance[to] += amount;
            for (wallet, kind, counterparty) in
                [(from, "TRANSFER_OUT", to), (to, "TRANSFER_IN", from)]
            {
                seq[wallet] += 1;
                last_at[wallet].clone_from(&at);
                ops_buffer.push_str(&format!(
                    "{}\t{}\t{}\t{kind}\t{amount}\t{}\t{transfer_id}\t{}\t\\N\t{at}\n",
                    Uuid::now_v7(),
                    wallet_id(wallet as u64),
                    seq[wallet],
                    balance[wallet],
                    wallet_id(counterparty as u64)
                ));
            }
            transfer_count += 1;
            written += 2;
        }
        if ops_buffer.len() >= CHUNK_BYTES {
            ops.send(std::mem::take(&mut ops_buffer).into_bytes())
                .await?;
            progress.set_position(written);
        }
        if transfers_buffer.len() >= CHUNK_BYTES {
            transfers
                .send(std::mem::take(&mut transfers_buffer).into_bytes())
                .await?;
        }
    }
    ops.send(ops_buffer.into_bytes()).await?;
    transfers.send(transfers_buffer.into_bytes()).await?;
    ops.finish().await?;
    transfers.finish().await?;
    progress.finish();

    let mut copy = ops_conn
        .copy_in_raw("COPY wallet (id, client_id, currency, balance, last_seq, created_at, updated_at) FROM STDIN")
        .await?;
    let created = timestamp(start);
    for n in 0..clients {
        let updated = match last_at[n as usize].as_str() {
            "" => created.as_str(),
            at => at,
        };
        buffer.push_str(&format!(
            "{}\t{}\tUSD\t{}\t{}\t{created}\t{updated}\n",
            wallet_id(n),
            client_id(n),
            balance[n as usize],
            seq[n as usize],
        ));
        if buffer.len() >= CHUNK_BYTES {
            copy.send(std::mem::take(&mut buffer).into_bytes()).await?;
        }
    }
    copy.send(buffer.into_bytes()).await?;
    copy.finish().await?;
    drop((ops_conn, transfers_conn));
    sqlx::query("ANALYZE").execute(&pool).await?;
    Ok(SeedReport {
        clients,
        deposits,
        transfers: transfer_count,
        operations: written,
        flows: 0,
        elapsed: started.elapsed(),
    })
}

/// The embedded database gets the same clients and wallets, each with its
/// one deposit and no history (enough for throughput runs), in one
/// transaction.
async fn seed_sqlite(store: &Store, clients: u64, started: Instant) -> anyhow::Result<SeedReport> {
    use entity::operation::OperationKind;
    use entity::{client, operation, wallet};
    use sea_orm::{EntityTrait, TransactionTrait};
    let at = Utc::now();
    let tx = store.db().begin().await?;
    let ids: Vec<u64> = (0..clients).collect();
    for chunk in ids.chunks(500) {
        client::Entity::insert_many(chunk.iter().map(|&n| {
            client::ActiveModel::from(client::Model {
                id: client_id(n),
                name: format!("client {n}"),
                email: None,
                token_hash: hash_token(&token(n)),
                created_at: at,
            })
        }))
        .exec_without_returning(&tx)
        .await?;
        wallet::Entity::insert_many(chunk.iter().map(|&n| {
            wallet::ActiveModel::from(wallet::Model {
                balance: INITIAL_DEPOSIT,
                last_seq: 1,
                ..wallet::Model::empty(wallet_id(n), client_id(n), at)
            })
        }))
        .exec_without_returning(&tx)
        .await?;
        operation::Entity::insert_many(chunk.iter().map(|&n| {
            operation::ActiveModel::from(operation::Model {
                id: Uuid::now_v7(),
                wallet_id: wallet_id(n),
                seq: 1,
                kind: OperationKind::Deposit,
                amount: INITIAL_DEPOSIT,
                balance_after: INITIAL_DEPOSIT,
                available_after: Some(INITIAL_DEPOSIT),
                incoming_held_after: Some(0),
                transfer_id: None,
                counterparty_wallet_id: None,
                description: None,
                metadata: None,
                created_at: at,
            })
        }))
        .exec_without_returning(&tx)
        .await?;
    }
    tx.commit().await?;
    Ok(SeedReport {
        clients,
        deposits: clients,
        transfers: 0,
        operations: clients,
        flows: 0,
        elapsed: started.elapsed(),
    })
}

/// A connection for bulk loading: foreign-key triggers off (the generator
/// keeps references consistent), no waiting for WAL flushes, and no
/// statement timeout (the service's 5 s would stop a COPY of millions of
/// rows: seeding 10 million operations failed with it).
async fn loading_connection(pool: &sqlx::PgPool) -> anyhow::Result<PoolConnection<Postgres>> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    Ok(conn)
}

fn pick_pair(rng: &mut fastrand::Rng, clients: u64, whale_share: f64) -> (usize, usize) {
    let n = clients as usize;
    let (from, to) = if rng.f64() < whale_share {
        let other = rng.usize(1..n);
        if rng.bool() { (0, other) } else { (other, 0) }
    } else {
        let from = rng.usize(..n);
        (from, (from + rng.usize(1..n)) % n)
    };
    (from, to)
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}
