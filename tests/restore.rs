//! Backups restored to a moment: a cluster archiving its WAL with
//! pgBackRest (`deploy/backup/pgbackrest.sh`) takes payments while a named
//! restore point T is created; restored to T into a new data directory,
//! it has every payment acknowledged before T, none sent after T, a clean
//! `walletql verify`, and walletql refuses the cursors handed out after T
//! instead of resuming them at other operations.
//!
//! It starts PostgreSQL clusters of its own (as the postgres user when run
//! as root), so it is `#[ignore]`d and run by `.ci/faults`.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use helpers::{OPERATOR, ServerProcess, pg_scalar, post_to};

const PORTS: (u16, u16) = (25460, 25461);
const PAYERS: usize = 4;
const PAGE_AFTER: &str = "query($w: UUID!, $after: String) { operations(walletId: $w, first: 5, after: $after) { nodes { sequence } } }";

/// The archived cluster and its restored copy, removed when dropped.
struct Backups {
    dir: PathBuf,
    restored: PathBuf,
}

impl Backups {
    fn up() -> Backups {
        let base =
            std::env::temp_dir().join(format!("walletql-backup-{}", Uuid::new_v4().simple()));
        let backups = Backups {
            dir: base.join("primary"),
            restored: base.join("restored"),
        };
        backups.run(&["up", &PORTS.0.to_string()]);
        backups
    }

    fn run(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/backup/pgbackrest.sh");
        let mut command = Command::new(script);
        command.arg(args[0]).arg(&self.dir).args(&args[1..]);
        let status = command.status().expect("run deploy/backup/pgbackrest.sh");
        assert!(status.success(), "pgbackrest.sh {args:?}");
    }

    fn url(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

impl Drop for Backups {
    fn drop(&mut self) {
        let restored = self.restored.display().to_string();
        let _ = std::panic::catch_unwind(|| self.run(&["down", &restored]));
        if let Some(base) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// Runs a shared document on the server at `addr`.
async fn run(addr: SocketAddr, token: &str, name: &str, variables: Value) -> Value {
    let query = walletql::documents::operation(name).expect("a shared document");
    post_to(addr, token, query, variables).await
}

struct Client {
    token: String,
    wallet: String,
}

/// One transfer: when it was sent, when acknowledged (if), its id and key.
struct Sent {
    from: usize,
    sent: Instant,
    acknowledged: Option<(Instant, String)>,
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts PostgreSQL clusters of its own: run by .ci/faults"]
async fn a_restore_to_a_named_point_keeps_what_was_acknowledged_before_it() {
    let backups = Backups::up();
    let primary = Backups::url(PORTS.0);
    let unlimited = [("RATE_LIMIT_PER_TOKEN", "0")];
    let server = ServerProcess::spawn_with(&primary, &unlimited);
    let api = server.addr;
    let mut clients = Vec::new();
    for i in 0..PAYERS {
        let created = run(
            api,
            OPERATOR,
            "CreateClient",
            json!({ "input": { "name": format!("Payer {i}") } }),
        )
        .await;
        let created = &helpers::data(&created)["createClient"];
        let client = Client {
            token: helpers::text(&created["token"]),
            wallet: helpers::text(&created["wallet"]["id"]),
        };
        let funded = run(
            api,
            OPERATOR,
            "Deposit",
            json!({ "input": { "walletId": client.wallet, "amount": "1000.00" } }),
        )
        .await;
        helpers::data(&funded);
        clients.push(client);
    }
    let clients = Arc::new(clients);

    // Payers pay each other in a ring while T is created.
    let log: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut payers = Vec::new();
    for i in 0..PAYERS {
        let (api, clients, log, stop) = (api, clients.clone(), log.clone(), stop.clone());
        payers.push(tokio::spawn(async move {
            let (from, to) = (&clients[i], &clients[(i + 1) % PAYERS]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = Uuid::now_v7().to_string();
                let sent = Instant::now();
                let answer = run(
                    api,
                    &from.token,
                    "Transfer",
                    json!({ "input": { "fromWalletId": from.wallet, "toWalletId": to.wallet,
                                "amount": "0.01", "idempotencyKey": key } }),
                )
                .await;
                let id = answer["data"]["transfer"]["transfer"]["id"].as_str();
                let acknowledged = id.map(|id| (Instant::now(), id.to_owned()));
                log.lock().expect("log").push(Sent {
                    from: i,
                    sent,
                    acknowledged,
                    key,
                });
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t_begun = Instant::now();
    pg_scalar(&primary, "SELECT pg_create_restore_point('T')::text").await;
    let t_done = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A cursor handed out after T: the newest operation of payer 0.
    let head = post_to(
        api,
        &clients[0].token,
        "query($id: UUID!) { wallet(id: $id) { cursor operationCount } }",
        json!({ "id": clients[0].wallet }),
    )
    .await;
    let late_cursor = helpers::text(&helpers::data(&head)["wallet"]["cursor"]);
    let late_count = helpers::data(&head)["wallet"]["operationCount"]
        .as_i64()
        .expect("operationCount");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for payer in payers {
        payer.await.expect("payer");
    }
    backups.run(&["archived"]);
    drop(server);

    let restored_dir = backups.restored.display().to_string();
    backups.run(&["restore", "T", &restored_dir, &PORTS.1.to_string()]);
    let restored = Backups::url(PORTS.1);
    let verify = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .arg("verify")
        .env("DATABASE_URL", &restored)
        .output()
        .expect("walletql verify");
    assert!(
        verify.status.success(),
        "walletql verify on the restored copy: {}",
        String::from_utf8_lossy(&verify.stdout)
    );

    let log = std::mem::take(&mut *log.lock().expect("log"));
    let present = |id: &str| {
        let (url, id) = (restored.clone(), id.to_owned());
        async move {
            pg_scalar(
                &url,
                &format!("SELECT count(*)::text FROM transfer WHERE id = '{id}'"),
            )
            .await
                == "1"
        }
    };
    let (mut before, mut after, mut in_flight) = (0, 0, 0);
    let mut late_key = None;
    for sent in &log {
        let Some((acknowledged, id)) = &sent.acknowledged else {
            continue;
        };
        if *acknowledged < t_begun {
            assert!(
                present(id).await,
                "transfer {id} acknowledged before T is missing"
            );
            before += 1;
        } else if sent.sent > t_done {
            assert!(
                !present(id).await,
                "transfer {id} sent after T is in the copy"
            );
            after += 1;
            if sent.from == 0 {
                late_key.get_or_insert(sent.key.clone());
            }
        } else {
            in_flight += 1;
        }
    }
    assert!(before > 0 && after > 0, "{before} before T, {after} after");

    // walletql on the copy: the history after T is gone, and new payments
    // take its sequence numbers; the cursor from after T is refused.
    let server = ServerProcess::spawn_with(&restored, &unlimited);
    let api = server.addr;
    let count = pg_scalar(
        &restored,
        &format!(
            "SELECT last_seq::text FROM wallet WHERE id = '{}'",
            clients[0].wallet
        ),
    )
    .await
    .parse::<i64>()
    .expect("a count");
    assert!(
        count < late_count,
        "payer 0 had {late_count} operations after T, {count} at T"
    );
    for _ in count..=late_count {
        let paid = run(
            api,
            &clients[0].token,
            "Transfer",
            json!({ "input": { "fromWalletId": clients[0].wallet,
                        "toWalletId": clients[1].wallet, "amount": "0.01" } }),
        )
        .await;
        helpers::data(&paid);
    }
    let page = post_to(
        api,
        &clients[0].token,
        PAGE_AFTER,
        json!({ "w": clients[0].wallet, "after": late_cursor }),
    )
    .await;
    assert_eq!(helpers::error_code(&page), "INVALID_INPUT", "{page}");
    let message = page["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("cursor no longer valid"), "{message}");
    // A key first used after T is unknown to the copy: a retry pays afresh.
    if let Some(key) = late_key {
        let before = pg_scalar(&restored, "SELECT count(*)::text FROM transfer").await;
        let again = run(
            api,
            &clients[0].token,
            "Transfer",
            json!({ "input": { "fromWalletId": clients[0].wallet, "toWalletId": clients[1].wallet,
                        "amount": "0.01", "idempotencyKey": key } }),
        )
        .await;
        helpers::data(&again);
        let now = pg_scalar(&restored, "SELECT count(*)::text FROM transfer").await;
        assert_eq!(
            now.parse::<i64>().ok(),
            before.parse::<i64>().ok().map(|n| n + 1)
        );
    }
    println!(
        "restore to T: {} transfers sent, {before} acknowledged before T (all restored), \
         {after} sent after T (none restored), {in_flight} in flight at T (either)",
        log.len()
    );
}
