//! Drives a running walletql over HTTP with concurrent connections and a
//! mix of requests, then reports throughput, latency percentiles
//! (HdrHistogram) and errors by code, and audits the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use walletql::store::audit::{Audit, audit};

use crate::ids::{token, wallet_id};

/// Relative weights of the request kinds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Mix {
    pub transfer: u32,
    pub deposit: u32,
    pub wallet: u32,
    /// `me { id wallet { balance } }`: the caller's own balance.
    pub me: u32,
    pub history: u32,
    /// `authorizeTransfer`, then the payee captures half of it.
    pub hold: u32,
    /// A transfer, then the payee refunds a cent of it.
    pub refund: u32,
    /// An operator's withdrawal of a cent.
    pub withdraw: u32,
    /// One `transferBatch` of `LoadConfig::batch_size` transfers.
    pub batch: u32,
}

impl Mix {
    /// Parses `transfer=70,deposit=10,wallet=10,history=10` (missing kinds are 0).
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut mix = Mix {
            transfer: 0,
            deposit: 0,
            wallet: 0,
            me: 0,
            history: 0,
            hold: 0,
            refund: 0,
            withdraw: 0,
            batch: 0,
        };
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (kind, weight) = part.split_once('=').context("expected kind=weight")?;
            let weight: u32 = weight
                .trim()
                .parse()
                .context("weight must be a whole number")?;
            match kind.trim() {
                "transfer" => mix.transfer = weight,
                "deposit" => mix.deposit = weight,
                "wallet" => mix.wallet = weight,
                "me" => mix.me = weight,
                "history" => mix.history = weight,
                "hold" => mix.hold = weight,
                "refund" => mix.refund = weight,
                "withdraw" => mix.withdraw = weight,
                "batch" => mix.batch = weight,
                other => anyhow::bail!("unknown request kind {other:?}"),
            }
        }
        anyhow::ensure!(mix.total() > 0, "the mix is empty");
        Ok(mix)
    }

    fn total(&self) -> u32 {
        self.weights().iter().map(|(_, w)| w).sum()
    }

    fn weights(&self) -> [(Kind, u32); 9] {
        [
            (Kind::Transfer, self.transfer),
            (Kind::Deposit, self.deposit),
            (Kind::Wallet, self.wallet),
            (Kind::Me, self.me),
            (Kind::History, self.history),
            (Kind::Hold, self.hold),
            (Kind::Refund, self.refund),
            (Kind::Withdraw, self.withdraw),
            (Kind::Batch, self.batch),
        ]
    }

    fn pick(&self, rng: &mut fastrand::Rng) -> Kind {
        let mut roll = rng.u32(..self.total());
        for (kind, weight) in self.weights() {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        Kind::Transfer
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Transfer,
    Deposit,
    Wallet,
    Me,
    History,
    Hold,
    Refund,
    Withdraw,
    Batch,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::Deposit => "deposit",
            Kind::Wallet => "wallet",
            Kind::Me => "me",
            Kind::History => "history",
            Kind::Hold => "hold+capture",
            Kind::Refund => "pay+refund",
            Kind::Withdraw => "withdraw",
            Kind::Batch => "batch",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    pub mix: Mix,
    /// Seeded clients to act as (0..clients).
    pub clients: u64,
    /// With `hot_wallets > 0`, `hot_share` of transfers touch only the
    /// first `hot_wallets` wallets.
    pub hot_wallets: u64,
    pub hot_share: f64,
    pub operator_token: String,
    /// For the ledger audit at the end; `None` skips it.
    pub database_url: Option<String>,
    pub rng_seed: u64,
    /// Transfers per `transferBatch` request.
    pub batch_size: usize,
}

/// Latency summary of one kind of request, in microseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub count: u64,
    pub per_second: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub connections: usize,
    pub seconds: f64,
    pub total: Latency,
    pub by_kind: BTreeMap<String, Latency>,
    pub errors: BTreeMap<String, u64>,
    /// Transfers that posted (a batch counts each of its items).
    pub transfers_posted: u64,
    pub transfers_per_second: f64,
    pub audit_clean: Option<bool>,
    #[serde(skip)]
    pub audit: Option<Audit>,
}

impl Report {
    /// Errors other than the expected refusal of an overdraft.
    pub fn unexpected_errors(&self) -> u64 {
        self.errors
            .iter()
            .filter(|(code, _)| code.as_str() != "INSUFFICIENT_FUNDS")
            .map(|(_, n)| n)
            .sum()
    }

    pub fn render(&self) -> String {
        let mut out = format!(
            "{} connections, {:.1} s\n{:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}\n",
            self.connections,
            self.seconds,
            "kind",
            "requests",
            "per sec",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        let row = |name: &str, l: &Latency| {
            format!(
                "{name:<10} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                l.count,
                l.per_second,
                l.p50_us as f64 / 1000.0,
                l.p90_us as f64 / 1000.0,
                l.p99_us as f64 / 1000.0,
                l.max_us as f64 / 1000.0
            )
        };
        for (name, latency) in &self.by_kind {
            out.push_str(&row(name, latency));
        }
        out.push_str(&row("all", &self.total));
        out.push_str(&format!(
            "transfers posted: {} ({:.0}/s)\n",
            self.transfers_posted, self.transfers_per_second
        ));
        if self.errors.is_empty() {
            out.push_str("errors: none\n");
        } else {
            out.push_str(&format!("errors: {:?}\n", self.errors));
        }
        match &self.audit {
            Some(audit) => out.push_str(&format!("ledger audit:\n{}\n", audit.report())),
            None => out.push_str("ledger audit: skipped (no database URL)\n"),
        }
        out
    }
}

struct Worker {
    histograms: BTreeMap<Kind, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    transfers: u64,
}

/// The documents the load sends (`documents/load.graphql`).
fn document(name: &str) -> &'static str {
    walletql::documents::operation(name)
        .unwrap_or_else(|| panic!("documents/load.graphql has no {name}"))
}

static TRANSFER: LazyLock<&str> = LazyLock::new(|| document("LoadTransfer"));
static DEPOSIT: LazyLock<&str> = LazyLock::new(|| document("LoadDeposit"));
static ME: LazyLock<&str> = LazyLock::new(|| document("LoadMe"));
static WALLET: LazyLock<&str> = LazyLock::new(|| document("LoadWallet"));
static AUTHORIZE: LazyLock<&str> = LazyLock::new(|| document("LoadAuthorize"));
static CAPTURE: LazyLock<&str> = LazyLock::new(|| document("LoadCapture"));
static REFUND: LazyLock<&str> = LazyLock::new(|| document("LoadRefund"));
static WITHDRAW: LazyLock<&str> = LazyLock::new(|| document("LoadWithdraw"));
static BATCH: LazyLock<&str> = LazyLock::new(|| document("LoadBatch"));
static HISTORY: LazyLock<&str> = LazyLock::new(|| document("LoadHistory"));
static BALANCE_AT: LazyLock<&str> = LazyLock::new(|| document("LoadBalanceAt"));
static TRANSFERS: LazyLock<&str> = LazyLock::new(|| document("LoadTransfers"));
static HISTORY_TRANSFERS: LazyLock<&str> = LazyLock::new(|| document("LoadHistoryTransfers"));

pub async fn run(config: &LoadConfig) -> anyhow::Result<Report> {
    anyhow::ensure!(config.clients >= 2, "need at least 2 seeded clients");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(config.connections)
        .tcp_nodelay(true)
        .build()?;
    let endpoint = format!("{}/graphql", config.url.trim_end_matches('/'));
    let config = Arc::new(config.clone());
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut tasks = Vec::new();
    for worker in 0..config.connections {
        let (http, endpoint, config) = (http.clone(), endpoint.clone(), config.clone());
        tasks.push(tokio::spawn(async move {
            work(worker, &http, &endpoint, &config, deadline).await
        }));
    }
    let mut merged: BTreeMap<Kind, Histogram<u64>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut transfers_posted = 0;
    for task in tasks {
        let worker = task.await??;
        transfers_posted += worker.transfers;
        for (kind, histogram) in worker.histograms {
            match merged.get_mut(&kind) {
                Some(total) => total.add(&histogram)?,
                None => {
                    merged.insert(kind, histogram);
                }
            }
        }
        for (code, n) in worker.errors {
            *errors.entry(code).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut total = new_histogram()?;
    let mut by_kind = BTreeMap::new();
    for (kind, histogram) in &merged {
        total.add(histogram)?;
        by_kind.insert(kind.name().to_owned(), summarize(histogram, seconds));
    }
    let audit = match &config.database_url {
        Some(url) => {
            let db = sea_orm::Database::connect(url.as_str())
                .await
                .context("connecting for the audit")?;
            let audit = audit(&db).await?;
            db.close().await?;
            Some(audit)
        }
        None => None,
    };
    Ok(Report {
        connections: config.connections,
        seconds,
        total: summarize(&total, seconds),
        by_kind,
        errors,
        transfers_posted,
        transfers_per_second: transfers_posted as f64 / seconds.max(f64::EPSILON),
        audit_clean: audit.as_ref().map(Audit::is_clean),
        audit,
    })
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 60 s, three significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

fn summarize(histogram: &Histogram<u64>, seconds: f64) -> Latency {
    Latency {
        count: histogram.len(),
        per_second: histogram.len() as f64 / seconds.max(f64::EPSILON),
        p50_us: histogram.value_at_quantile(0.50),
        p90_us: histogram.value_at_quantile(0.90),
        p99_us: histogram.value_at_quantile(0.99),
        max_us: histogram.max(),
    }
}

async fn work(
    worker: usize,
    http: &reqwest::Client,
    endpoint: &str,
    config: &LoadConfig,
    deadline: Instant,
) -> anyhow::Result<Worker> {
    let mut rng = fastrand::Rng::with_seed(config.rng_seed.wrapping_add(worker as u64));
    let mut state = Worker {
        histograms: BTreeMap::new(),
        errors: BTreeMap::new(),
        transfers: 0,
    };
    let call = |token: String, body: Value| async move {
        match http
            .post(endpoint)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(response) => response.json::<Value>().await.unwrap_or_else(
                |_| json!({ "errors": [{ "extensions": { "code": "BAD_RESPONSE" } }] }),
            ),
            Err(_) => json!({ "errors": [{ "extensions": { "code": "HTTP_ERROR" } }] }),
        }
    };
    while Instant::now() < deadline {
        let kind = config.mix.pick(&mut rng);
        let (token, body) = request(kind, config, &mut rng);
        let started = Instant::now();
        let mut answer = call(token, body).await;
        // The second step of two-step kinds, by the operator (who may
        // capture and refund any transfer: no token lookup needed).
        let next = match kind {
            Kind::Hold => answer["data"]["authorizeTransfer"]["transfer"]["id"]
                .as_str()
                .map(|id| (&*CAPTURE, json!({ "transferId": id, "amount": "0.01", "idempotencyKey": key(&mut rng) }))),
            Kind::Refund => answer["data"]["transfer"]["transfer"]["id"]
                .as_str()
                .map(|id| (&*REFUND, json!({ "transferId": id, "amount": "0.01", "idempotencyKey": key(&mut rng) }))),
            _ => None,
        };
        if let Some((query, input)) = next {
            let body = json!({ "query": query, "variables": { "i": input } });
            answer = call(config.operator_token.clone(), body).await;
        }
        let elapsed = started.elapsed().as_micros().max(1) as u64;
        let histogram = match state.histograms.entry(kind) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => entry.insert(new_histogram()?),
        };
        histogram.saturating_record(elapsed);
        let code = answer["errors"][0]["extensions"]["code"].as_str();
        if let Some(code) = code {
            *state.errors.entry(code.to_owned()).or_default() += 1;
        }
        state.transfers += match kind {
            Kind::Transfer | Kind::Hold | Kind::Refund if code.is_none() => 1,
            Kind::Batch => answer["data"]["transferBatch"]["results"]
                .as_array()
                .map_or(0, |r| {
                    r.iter().filter(|x| x["code"].is_null()).count() as u64
                }),
            _ => 0,
        };
    }
    Ok(state)
}

fn key(rng: &mut fastrand::Rng) -> String {
    format!("lg-{:016x}{:016x}", rng.u64(..), rng.u64(..))
}

/// The token and JSON body of one request of `kind`.
fn request(kind: Kind, config: &LoadConfig, rng: &mut fastrand::Rng) -> (String, Value) {
    let pick = |rng: &mut fastrand::Rng| -> (u64, u64) {
        let pool = if config.hot_wallets >= 2 && rng.f64() < config.hot_share {
            config.hot_wallets.min(config.clients)
        } else {
            config.clients
        };
        let from = rng.u64(..pool);
        (from, (from + rng.u64(1..pool)) % pool)
    };
    let amount = |rng: &mut fastrand::Rng| format!("{}.{:02}", rng.u32(0..20), rng.u32(1..100));
    match kind {
        Kind::Transfer | Kind::Refund => {
            let (from, to) = pick(rng);
            let input = json!({ "fromWalletId": wallet_id(from), "toWalletId": wallet_id(to), "amount": amount(rng) });
            (
                token(from),
                json!({ "query": *TRANSFER, "variables": { "i": input } }),
            )
        }
        Kind::Hold => {
            let (from, to) = pick(rng);
            let input = json!({ "fromWalletId": wallet_id(from), "toWalletId": wallet_id(to), "amount": amount(rng), "idempotencyKey": key(rng) });
            (
                token(from),
                json!({ "query": *AUTHORIZE, "variables": { "i": input } }),
            )
        }
        Kind::Withdraw => {
            let (from, _) = pick(rng);
            let input = json!({ "walletId": wallet_id(from), "amount": "0.01", "idempotencyKey": key(rng) });
            (
                config.operator_token.clone(),
                json!({ "query": *WITHDRAW, "variables": { "i": input } }),
            )
        }
        Kind::Batch => {
            let (from, _) = pick(rng);
            let items: Vec<Value> = (0..config.batch_size)
                .map(|_| {
                    let to = (from + rng.u64(1..config.clients)) % config.clients;
                    json!({ "fromWalletId": wallet_id(from), "toWalletId": wallet_id(to), "amount": "0.01" })
                })
                .collect();
            (
                token(from),
                json!({ "query": *BATCH, "variables": { "i": { "transfers": items, "atomic": false } } }),
            )
        }
        Kind::Deposit => {
            let (to, _) = pick(rng);
            let input =
                json!({ "walletId": wallet_id(to), "amount": format!("{}.00", rng.u32(1..100)) });
            (
                config.operator_token.clone(),
                json!({ "query": *DEPOSIT, "variables": { "i": input } }),
            )
        }
        Kind::Me => {
            let (who, _) = pick(rng);
            (token(who), json!({ "query": *ME }))
        }
        Kind::Wallet => {
            let (who, _) = pick(rng);
            (
                token(who),
                json!({ "query": *WALLET, "variables": { "w": wallet_id(who) } }),
            )
        }
        Kind::History => {
            let (who, _) = pick(rng);
            (
                token(who),
                json!({ "query": *HISTORY, "variables": { "w": wallet_id(who), "first": 20 } }),
            )
        }
    }
}

/// Latency of single requests, one at a time: a wallet's first history page,
/// a page `depth` operations deep, its last page, and wallet reads of this
/// wallet and of a wallet with a short history. Shows that paging is keyset
/// (depth does not matter) and reads do not depend on history size.
pub async fn probe_history(
    url: &str,
    deep_wallet: u64,
    shallow_wallet: u64,
    depth: i64,
    samples: usize,
) -> anyhow::Result<Vec<(String, Latency)>> {
    use walletql::domain::cursor::OperationCursor;
    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let endpoint = format!("{}/graphql", url.trim_end_matches('/'));
    let call = |who: u64, body: Value| {
        let (http, endpoint) = (http.clone(), endpoint.clone());
        async move {
            let response: Value = http
                .post(&endpoint)
                .bearer_auth(token(who))
                .json(&body)
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(
                response.get("errors").is_none(),
                "request failed: {response}"
            );
            Ok::<Value, anyhow::Error>(response)
        }
    };
    let wallet = call(
        deep_wallet,
        json!({ "query": *WALLET, "variables": { "w": wallet_id(deep_wallet) } }),
    )
    .await?;
    let count = wallet["data"]["wallet"]["operationCount"]
        .as_i64()
        .context("operationCount")?;
    anyhow::ensure!(
        count > depth,
        "wallet {deep_wallet} has only {count} operations"
    );
    // The cursor of the operation `depth` from the newest, as a client
    // holds it (naming its operation, which the server checks).
    let above = OperationCursor {
        wallet_id: wallet_id(deep_wallet),
        seq: count - depth + 1,
        operation: None,
    }
    .encode();
    let found = call(
        deep_wallet,
        json!({
            "query": "query($w: UUID!, $after: String) { operations(walletId: $w, first: 1, after: $after) { nodes { cursor } } }",
            "variables": { "w": wallet_id(deep_wallet), "after": above },
        }),
    )
    .await?;
    let deep_cursor = found["data"]["operations"]["nodes"][0]["cursor"]
        .as_str()
        .context("the deep operation's cursor")?
        .to_owned();
    let page = &*HISTORY;
    // The wallet's oldest operation's time: windows "deep in the past".
    let oldest = call(
        deep_wallet,
        json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "last": 1 } }),
    )
    .await?;
    let oldest_at: chrono::DateTime<chrono::Utc> =
        oldest["data"]["operations"]["nodes"][0]["createdAt"]
            .as_str()
            .context("the oldest operation's createdAt")?
            .parse()?;
    let day_later = (oldest_at + chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let oldest_at = oldest_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let balance_at = &*BALANCE_AT;
    // A transfer about `depth` operations deep: its (time, id) is a
    // cursor into the wallet's transfers that deep.
    let around = call(
        deep_wallet,
        json!({ "query": *HISTORY_TRANSFERS,
            "variables": { "w": wallet_id(deep_wallet), "after": deep_cursor } }),
    )
    .await?;
    let deep_transfer = around["data"]["operations"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|node| {
            let transfer = node.get("transfer")?;
            let at: chrono::DateTime<chrono::Utc> = transfer["createdAt"].as_str()?.parse().ok()?;
            let id = transfer["id"].as_str()?.parse().ok()?;
            Some(walletql::domain::cursor::TransferCursor::encode(at, id))
        })
        .context("no transfer near the deep cursor")?;
    let transfers = &*TRANSFERS;
    let probes: Vec<(String, u64, Value)> = vec![
        (
            "transfers first page".to_owned(),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "first": 20 } }),
        ),
        (
            format!("transfers page ~{depth} operations deep"),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "first": 20, "after": deep_transfer } }),
        ),
        (
            "transfers oldest page".to_owned(),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "last": 20 } }),
        ),
        (
            "transfers, incoming only".to_owned(),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "direction": "INCOMING" } } }),
        ),
        (
            "transfers, pending only".to_owned(),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "statuses": ["PENDING"] } } }),
        ),
        (
            "transfers, refunds only".to_owned(),
            deep_wallet,
            json!({ "query": transfers, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "kinds": ["REFUND"] } } }),
        ),
        (
            format!("history first page ({count} ops)"),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "first": 20 } }),
        ),
        (
            format!("history page {depth} deep"),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "first": 20, "after": deep_cursor } }),
        ),
        (
            "history last page".to_owned(),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "last": 20 } }),
        ),
        (
            "history, kinds matching one row".to_owned(),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "kinds": ["DEPOSIT"] } } }),
        ),
        (
            "history, empty window (future)".to_owned(),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "from": "2999-01-01T00:00:00Z" } } }),
        ),
        (
            "history, first day's window".to_owned(),
            deep_wallet,
            json!({ "query": page, "variables": { "w": wallet_id(deep_wallet), "first": 20, "f": { "from": oldest_at, "to": day_later } } }),
        ),
        (
            "balanceAt a day after the first".to_owned(),
            deep_wallet,
            json!({ "query": balance_at, "variables": { "w": wallet_id(deep_wallet), "at": day_later } }),
        ),
        (
            format!("wallet read ({count} ops)"),
            deep_wallet,
            json!({ "query": *WALLET, "variables": { "w": wallet_id(deep_wallet) } }),
        ),
        (
            "wallet read (short history)".to_owned(),
            shallow_wallet,
            json!({ "query": *WALLET, "variables": { "w": wallet_id(shallow_wallet) } }),
        ),
    ];
    let mut results = Vec::new();
    for (name, who, body) in probes {
        // A server without this query (an older version) skips the probe.
        if let Err(err) = call(who, body.clone()).await {
            eprintln!("{name}: skipped ({err})");
            continue;
        }
        let mut histogram = new_histogram()?;
        let started = Instant::now();
        for _ in 0..samples {
            let at = Instant::now();
            call(who, body.clone()).await?;
            histogram.saturating_record(at.elapsed().as_micros().max(1) as u64);
        }
        results.push((name, summarize(&histogram, started.elapsed().as_secs_f64())));
    }
    Ok(results)
}
