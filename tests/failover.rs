//! Failover: walletql given a primary and its synchronous standby
//! (`deploy/ha/pair.sh`) keeps serving when the primary dies and the
//! standby is promoted, and loses no acknowledged payment.
//!
//! The bank workload: 16 clients pay each other with idempotency keys
//! while readers check that the money in all wallets never changes. The
//! primary is killed mid-load and the standby promoted; afterwards every
//! acknowledged transfer is on the new primary exactly once, every outcome
//! a client never learned settles by retrying with its key, the total is
//! what it was, and `walletql verify` is clean.
//!
//! It starts PostgreSQL clusters of its own (as the postgres user when run
//! as root), so it is `#[ignore]`d and run alone by `.ci/faults`.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;
use uuid::Uuid;

use helpers::{OPERATOR, Pair, ServerProcess, pg_scalar};

const CLIENTS: usize = 16;
const FUNDS_CENTS: i64 = 100_000;

/// Two PostgreSQL nodes under Patroni with etcd (`deploy/ha/up.sh`),
/// removed when dropped.
struct Patroni {
    dir: PathBuf,
}

/// Patroni's REST API of each node, and its PostgreSQL port.
const PATRONI_NODES: [(u16, u16); 2] = [(28008, 25532), (28009, 25533)];

impl Patroni {
    fn up() -> Patroni {
        let dir = std::env::temp_dir().join(format!("walletql-ha-{}", Uuid::new_v4().simple()));
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ha/up.sh"))
            .arg(&dir)
            .status()
            .expect("run deploy/ha/up.sh");
        let cluster = Patroni { dir };
        assert!(status.success(), "deploy/ha/up.sh");
        cluster
    }

    /// The cluster as a node's REST API reports it.
    async fn cluster(&self) -> Value {
        for (api, _) in PATRONI_NODES {
            let answer = reqwest::get(format!("http://127.0.0.1:{api}/cluster")).await;
            if let Ok(body) = answer
                && let Ok(cluster) = body.json::<Value>().await
            {
                return cluster;
            }
        }
        Value::Null
    }

    /// The leader's node name and PostgreSQL port.
    async fn leader(&self) -> Option<(String, u16)> {
        let cluster = self.cluster().await;
        cluster["members"].as_array()?.iter().find_map(|m| {
            (m["role"] == "leader").then(|| {
                let port = m["port"].as_u64().and_then(|p| u16::try_from(p).ok());
                (
                    m["name"].as_str().unwrap_or_default().to_owned(),
                    port.unwrap_or(0),
                )
            })
        })
    }
}

impl Topology for Patroni {
    const NAME: &str = "Patroni";

    fn url(&self) -> String {
        let hosts: Vec<String> = PATRONI_NODES
            .iter()
            .map(|(_, pg)| format!("127.0.0.1:{pg}"))
            .collect();
        format!(
            "postgres://postgres@{}/postgres?target_session_attrs=read-write",
            hosts.join(",")
        )
    }

    /// A crash: SIGKILL of the leader's PostgreSQL (postmaster and
    /// backends) and of its Patroni (a SIGTERM would hand over cleanly).
    fn fail_primary(&self) -> (Instant, Instant) {
        let leader = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(self.leader())
        });
        let Some((name, _)) = leader else {
            panic!("no Patroni leader");
        };
        let config = self.dir.join(format!("{name}.yml"));
        let pid = std::fs::read_to_string(self.dir.join(&name).join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_default();
        let run = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .status()
                .unwrap_or_else(|err| panic!("{program} {args:?}: {err}"))
                .success()
        };
        // The whole server at once, as a machine's crash takes it: a
        // postmaster killed alone leaves its backends running for a moment
        // (they notice its death at their next wait), and one of them could
        // still acknowledge a write sent after the "crash". The postmaster
        // is stopped first, so that it restarts nothing killed under it;
        // the crash is timed from when its backends are gone.
        assert!(
            run("kill", &["-STOP", &pid]),
            "stop the leader's postmaster {pid}"
        );
        run("pkill", &["-9", "-P", &pid]);
        let killed = Instant::now();
        let patroni = format!("patroni {}", config.display());
        assert!(
            run("pkill", &["-9", "-f", &patroni]),
            "kill the leader's Patroni"
        );
        assert!(
            run("kill", &["-9", &pid]),
            "kill the leader's postmaster {pid}"
        );
        (killed, killed)
    }

    async fn primary_now(&self) -> String {
        let port = self.leader().await.map(|(_, port)| port).unwrap_or(0);
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ha/up.sh"))
            .arg("down")
            .arg(&self.dir)
            .status();
    }
}

/// Each payment, what its client learned, and when it was sent and answered.
type Log = Vec<(Payment, Outcome, (Instant, Instant))>;

/// What a client learned of one payment.
#[derive(Clone, Debug)]
enum Outcome {
    /// Acknowledged: the transfer's id.
    Paid(String),
    /// Refused with a code that says nothing moved (e.g. not enough money).
    Refused(String),
    /// No answer, or one that does not say (unavailable, timed out).
    Unknown(String),
}

#[derive(Clone, Debug)]
struct Payment {
    key: String,
    from: usize,
    to: usize,
    cents: i64,
}

struct Client {
    token: String,
    wallet: String,
}

struct Bank {
    base: String,
    http: reqwest::Client,
    clients: Vec<Client>,
}

impl Bank {
    async fn post(&self, token: &str, query: &str, variables: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        response.json().await.map_err(|e| format!("body: {e}"))
    }

    async fn pay(&self, payment: &Payment) -> Outcome {
        let document = walletql::documents::operation("Transfer").unwrap_or_default();
        let (Some(from), Some(to)) = (self.clients.get(payment.from), self.clients.get(payment.to))
        else {
            return Outcome::Refused("NO_SUCH_CLIENT".into());
        };
        let input = json!({ "input": {
            "fromWalletId": from.wallet, "toWalletId": to.wallet,
            "amount": format!("{}.{:02}", payment.cents / 100, payment.cents % 100),
            "idempotencyKey": payment.key } });
        match self.post(&from.token, document, input).await {
            Err(e) => Outcome::Unknown(e),
            Ok(body) => match body["data"]["transfer"]["transfer"]["id"].as_str() {
                Some(id) => Outcome::Paid(id.to_owned()),
                None => {
                    let code = body["errors"][0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("NO_CODE")
                        .to_owned();
                    match code.as_str() {
                        // Nothing moved: not enough money, or too fast.
                        "INSUFFICIENT_FUNDS" | "RATE_LIMITED" => Outcome::Refused(code),
                        _ => Outcome::Unknown(code),
                    }
                }
            },
        }
    }

    /// The money in all wallets, read in one request (one snapshot).
    async fn total(&self) -> Result<i64, String> {
        let ids: Vec<&str> = self.clients.iter().map(|c| c.wallet.as_str()).collect();
        let body = self
            .post(
                OPERATOR,
                "query($ids: [ID!]!) { nodes(ids: $ids) { ... on Wallet { balance } } }",
                json!({ "ids": ids }),
            )
            .await?;
        let nodes = body["data"]["nodes"]
            .as_array()
            .ok_or_else(|| format!("no nodes: {body}"))?;
        nodes
            .iter()
            .map(|n| n["balance"].as_str().and_then(cents).ok_or("no balance"))
            .sum::<Result<i64, _>>()
            .map_err(str::to_owned)
    }
}

fn cents(amount: &str) -> Option<i64> {
    let (units, fraction) = amount.split_once('.')?;
    Some(units.parse::<i64>().ok()? * 100 + fraction.parse::<i64>().ok()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn a_promoted_standby_takes_over_without_losing_a_payment() {
    let pair = Pair::up((25432, 25433));
    bank_survives(&pair, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn patroni_fails_over_without_losing_a_payment() {
    let cluster = Patroni::up();
    // Patroni promotes once the dead leader's key expires: its ttl, + 5 s.
    bank_survives(&cluster, Duration::from_secs(25)).await;
}

/// A primary and its synchronous standby, however they are run.
trait Topology {
    /// Which: for the report.
    const NAME: &str;
    /// `DATABASE_URL` naming both nodes.
    fn url(&self) -> String;
    /// Makes the primary fail; returns when it was killed and the moment
    /// recovery is timed from (a promotion by hand, or the kill).
    fn fail_primary(&self) -> (Instant, Instant);
    /// The URL of the node that is the primary now.
    async fn primary_now(&self) -> String;
}

impl Topology for Pair {
    const NAME: &str = "pg_ctl promote";

    fn url(&self) -> String {
        self.multi_host_url()
    }

    fn fail_primary(&self) -> (Instant, Instant) {
        let killed = Instant::now();
        self.run("kill-primary");
        self.run("promote");
        (killed, Instant::now())
    }

    async fn primary_now(&self) -> String {
        self.standby_url()
    }
}

/// The bank workload through a failover of `topology`: writes must be
/// back within `budget` of the moment recovery is timed from.
async fn bank_survives<T: Topology>(topology: &T, budget: Duration) {
    let url = topology.url();
    let (server, bank) = open_bank(&url, CLIENTS, Duration::from_secs(10)).await;
    let expected_total = FUNDS_CENTS * CLIENTS as i64;
    assert_eq!(bank.total().await, Ok(expected_total));

    // The load: each client pays others, one payment at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let log: Arc<Mutex<Log>> = Arc::default();
    let mut workers = Vec::new();
    for from in 0..CLIENTS {
        let (bank, stop, log) = (bank.clone(), stop.clone(), log.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let payment = Payment {
                    key: Uuid::new_v4().to_string(),
                    from,
                    to: (from + 1 + fastrand::usize(..CLIENTS - 1)) % CLIENTS,
                    cents: fastrand::i64(1..500),
                };
                let sent = Instant::now();
                let outcome = bank.pay(&payment).await;
                if matches!(outcome, Outcome::Unknown(_)) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                log.lock()
                    .await
                    .push((payment, outcome, (sent, Instant::now())));
            }
        }));
    }
    // Readers: the total never changes, whatever they read it from.
    let wrong_totals: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (bank, stop, wrong) = (bank.clone(), stop.clone(), wrong_totals.clone());
        readers.push(tokio::spawn(async move {
            let mut read = 0;
            while !stop.load(Ordering::Relaxed) {
                match bank.total().await {
                    Ok(total) if total != expected_total => wrong.lock().await.push(total),
                    Ok(_) => read += 1,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            read
        }));
    }

    tokio::time::sleep(Duration::from_secs(3)).await;
    let (killed, promoted) = topology.fail_primary();
    // Serve on for a while after the first write on the new primary.
    let deadline = promoted + budget + Duration::from_secs(20);
    let first_write = loop {
        let acknowledged = log
            .lock()
            .await
            .iter()
            // Sent after it: one in flight before may commit before the kill.
            .filter(|(_, outcome, (sent, _))| {
                matches!(outcome, Outcome::Paid(_)) && *sent > promoted
            })
            .map(|(_, _, (_, answered))| *answered)
            .min();
        if let Some(at) = acknowledged {
            break at;
        }
        assert!(
            Instant::now() < deadline,
            "no write acknowledged within 20 s of the promotion"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("a worker");
    }
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.expect("a reader");
    }

    // Every payment whose outcome its client never learned: retried with
    // its key until it answers (the first answer if it had committed).
    let log = std::mem::take(&mut *log.lock().await);
    let mut settled: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut unknown = 0;
    let mut retried_paid = 0;
    let settle_by = Instant::now() + Duration::from_secs(60);
    for (payment, outcome, _) in &log {
        let outcome = match outcome {
            Outcome::Unknown(_) => {
                unknown += 1;
                let known = loop {
                    match bank.pay(payment).await {
                        Outcome::Unknown(why) => {
                            assert!(
                                Instant::now() < settle_by,
                                "{payment:?} never settled: {why}"
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        known => break known,
                    }
                };
                retried_paid += usize::from(matches!(known, Outcome::Paid(_)));
                known
            }
            known => known.clone(),
        };
        settled.insert(payment.key.clone(), outcome);
    }
    let paid: BTreeSet<&str> = settled
        .values()
        .filter_map(|o| match o {
            Outcome::Paid(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let mut why_unknown: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, outcome, _) in &log {
        if let Outcome::Unknown(why) = outcome {
            *why_unknown
                .entry(why.split(':').next().unwrap_or_default())
                .or_default() += 1;
        }
    }
    let mut refused: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in settled.values() {
        if let Outcome::Refused(code) = outcome {
            *refused.entry(code.as_str()).or_default() += 1;
        }
    }
    let acknowledged = log
        .iter()
        .filter(|(_, o, _)| matches!(o, Outcome::Paid(_)))
        .count();

    // On the new primary: each transfer paid once, nothing else, no money
    // made or lost.
    let standby = topology.primary_now().await;
    let stored: i64 = pg_scalar(&standby, "SELECT count(*)::text FROM transfer")
        .await
        .parse()
        .unwrap_or(-1);
    assert_eq!(stored, paid.len() as i64, "transfers stored vs paid");
    let ids = paid
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let found: i64 = pg_scalar(
        &standby,
        &format!("SELECT count(*)::text FROM transfer WHERE id IN ({ids})"),
    )
    .await
    .parse()
    .unwrap_or(-1);
    assert_eq!(found, paid.len() as i64, "every paid transfer is stored");
    let total: i64 = pg_scalar(&standby, "SELECT sum(balance)::text FROM wallet")
        .await
        .parse()
        .unwrap_or(-1);
    assert_eq!(total, expected_total, "money in all wallets");
    assert_eq!(
        *wrong_totals.lock().await,
        Vec::<i64>::new(),
        "totals read during the load"
    );
    assert!(reads > 0, "the readers read");
    let verify = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .arg("verify")
        .env("DATABASE_URL", &url)
        .output()
        .expect("walletql verify");
    assert!(
        verify.status.success(),
        "walletql verify: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    println!(
        "failover ({}): {} payments, {acknowledged} acknowledged, {unknown} unknown \
         {why_unknown:?} then settled by retrying with their keys ({retried_paid} paid: replayed, or run then), {} paid in all; \
         refused {refused:?}; first write acknowledged {} ms after the promotion, {} ms after \
         the kill; {reads} total reads",
        T::NAME,
        log.len(),
        paid.len(),
        first_write.duration_since(promoted).as_millis(),
        first_write.duration_since(killed).as_millis(),
    );
    assert!(
        first_write.duration_since(promoted) < budget,
        "writes back within {budget:?}"
    );
    drop(server);
}

/// walletql on `pair`, with `clients` clients of `FUNDS_CENTS` each.
async fn open_bank(url: &str, clients: usize, timeout: Duration) -> (ServerProcess, Arc<Bank>) {
    let server = ServerProcess::spawn(url);
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("http client");
    let mut bank = Bank {
        base: format!("http://{}", server.addr),
        http,
        clients: Vec::new(),
    };
    let create = walletql::documents::operation("CreateClient").unwrap_or_default();
    let deposit = walletql::documents::operation("Deposit").unwrap_or_default();
    for i in 0..clients {
        let created = bank
            .post(
                OPERATOR,
                create,
                json!({ "input": { "name": format!("Client {i}") } }),
            )
            .await
            .expect("create a client");
        let created = &created["data"]["createClient"];
        let client = Client {
            token: created["token"].as_str().unwrap_or_default().to_owned(),
            wallet: created["wallet"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        };
        let amount = format!("{}.00", FUNDS_CENTS / 100);
        let funded = bank
            .post(
                OPERATOR,
                deposit,
                json!({ "input": { "walletId": client.wallet, "amount": amount } }),
            )
            .await
            .expect("deposit");
        assert!(funded["data"]["deposit"].is_object(), "{funded}");
        bank.clients.push(client);
    }
    (server, Arc::new(bank))
}

/// The backend on `url` whose COMMIT waits for the synchronous standby.
async fn committing(url: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid: i64 = pg_scalar(
            url,
            "SELECT coalesce(min(pid), 0)::text FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        )
        .await
        .parse()
        .unwrap_or(0);
        if pid != 0 {
            return pid;
        }
        assert!(Instant::now() < deadline, "no COMMIT waits for the standby");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One payment of 12.34 from client 0 to client 1, whose COMMIT the
/// primary holds (its standby is stopped) until `cut_off` breaks its
/// connection; what the client is told.
async fn pay_while<F: std::future::Future<Output = ()>>(
    pair: &Pair,
    bank: &Arc<Bank>,
    cut_off: impl FnOnce(i64) -> F,
) -> Outcome {
    pair.run("stop-standby");
    let payment = Payment {
        key: Uuid::new_v4().to_string(),
        from: 0,
        to: 1,
        cents: 1234,
    };
    let paying = {
        let bank = bank.clone();
        tokio::spawn(async move { bank.pay(&payment).await })
    };
    let pid = committing(&pair.primary_url()).await;
    cut_off(pid).await;
    paying.await.expect("the payment's task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn a_commit_cut_off_on_the_same_server_is_answered_as_it_ended() {
    let pair = Pair::up((25434, 25435));
    let (server, bank) = open_bank(&pair.url(), 2, Duration::from_secs(40)).await;
    let primary = pair.primary_url();
    // The connection is terminated while COMMIT waits for the standby: the
    // transaction has committed on the primary, and the client is told so.
    let outcome = pay_while(&pair, &bank, |pid| {
        let primary = primary.clone();
        async move {
            pg_scalar(
                &primary,
                &format!("SELECT pg_terminate_backend({pid})::text"),
            )
            .await;
        }
    })
    .await;
    let Outcome::Paid(id) = outcome else {
        panic!("the client was told {outcome:?}");
    };
    let stored = pg_scalar(
        &primary,
        &format!("SELECT count(*)::text FROM transfer WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(stored, "1");
    assert_eq!(
        pg_scalar(&primary, "SELECT count(*)::text FROM transfer").await,
        "1"
    );
    pair.run("start-standby");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn a_commit_lost_with_the_old_primary_runs_again_on_the_new_one() {
    let pair = Pair::up((25436, 25437));
    let (server, bank) = open_bank(&pair.url(), 2, Duration::from_secs(40)).await;
    // The primary dies while COMMIT waits for the (stopped) standby, which
    // then comes back and is promoted without the batch: a newer timeline,
    // so the batch never committed there and runs again.
    let outcome = pay_while(&pair, &bank, |_| async {
        pair.run("kill-primary");
        pair.run("start-standby");
        pair.run("promote");
    })
    .await;
    let Outcome::Paid(id) = outcome else {
        panic!("the client was told {outcome:?}");
    };
    let standby = pair.standby_url();
    assert_eq!(
        pg_scalar(&standby, "SELECT count(*)::text FROM transfer").await,
        "1"
    );
    let stored = pg_scalar(
        &standby,
        &format!("SELECT count(*)::text FROM transfer WHERE id = '{id}'"),
    )
    .await;
    assert_eq!(stored, "1");
    let payer = pg_scalar(&standby, "SELECT min(balance)::text FROM wallet").await;
    assert_eq!(payer, (FUNDS_CENTS - 1234).to_string());
    drop(server);
}
