//! Crash safety: SIGKILL the server while many clients transfer. After a
//! restart every acknowledged transfer is in the ledger, none is half
//! written, and clients retrying with their idempotency keys end with each
//! transfer applied exactly once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{TestApp, TestClient, data};

/// Every key tried: payer index, payee index, and the transfer id the
/// server acknowledged, if it did.
type Attempts = BTreeMap<String, (usize, usize, Option<String>)>;

const TRANSFER: &str =
    "mutation($input: TransferInput!) { transfer(input: $input) { transfer { id } } }";

async fn attempt(
    http: &reqwest::Client,
    url: &str,
    from: &TestClient,
    to: &str,
    key: &str,
) -> Option<String> {
    let input = json!({ "fromWalletId": from.wallet, "toWalletId": to, "amount": "0.01", "idempotencyKey": key });
    let response = http
        .post(url)
        .bearer_auth(&from.token)
        .json(&json!({ "query": TRANSFER, "variables": { "input": input } }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["data"]["transfer"]["transfer"]["id"]
        .as_str()
        .map(str::to_owned)
}

async fn a_killed_server_loses_no_acknowledged_transfer(mut app: TestApp) {
    let mut server = app.spawn_process();
    app.use_server(server.addr);
    let mut clients = Vec::new();
    for i in 0..6 {
        let client = app.create_client(&format!("c{i}")).await;
        data(&app.deposit(&client.wallet, "1000").await);
        clients.push(client);
    }
    let url = format!("http://{}/graphql", server.addr);
    let http = reqwest::Client::new();
    // Every key tried, with the transfer id the server acknowledged (if any).
    let attempted: Arc<Mutex<Attempts>> = Arc::default();
    let workers = (0..clients.len()).map(|i| {
        let (http, url, clients, attempted) = (&http, &url, &clients, attempted.clone());
        async move {
            for n in 0.. {
                let to = (i + 1 + n % (clients.len() - 1)) % clients.len();
                let key = format!("w{i}-t{n}");
                let acknowledged = attempt(http, url, &clients[i], &clients[to].wallet, &key).await;
                let stop = acknowledged.is_none();
                attempted
                    .lock()
                    .expect("lock")
                    .insert(key, (i, to, acknowledged));
                if stop {
                    break;
                }
            }
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        server.crash();
    };
    tokio::join!(join_all(workers), killer);

    let restarted = app.spawn_process();
    app.use_server(restarted.addr);
    let attempted = attempted.lock().expect("lock").clone();
    let acknowledged: Vec<&String> = attempted
        .values()
        .filter_map(|(_, _, id)| id.as_ref())
        .collect();
    assert!(
        acknowledged.len() >= 6,
        "some transfers were acknowledged before the crash"
    );
    assert!(
        attempted.values().any(|(_, _, id)| id.is_none()),
        "some were cut off by the crash"
    );

    // Every acknowledged transfer survived.
    let ids: Vec<uuid::Uuid> = acknowledged
        .iter()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok())
        .collect();
    let stored = walletql::store::reads::transfers_by_ids(app.store.db(), &ids)
        .await
        .expect("read");
    assert_eq!(
        stored.len(),
        ids.len(),
        "acknowledged transfers missing after the crash"
    );
    app.assert_ledger_consistent().await;

    // Clients retry everything with the same keys: each is applied once.
    let url = format!("http://{}/graphql", restarted.addr);
    for (key, (from, to, first)) in &attempted {
        let again = attempt(&http, &url, &clients[*from], &clients[*to].wallet, key)
            .await
            .unwrap_or_else(|| panic!("retry of {key} failed"));
        if let Some(first) = first {
            assert_eq!(&again, first, "a retry returns the acknowledged transfer");
        }
    }
    assert_eq!(
        app.sql_i64("SELECT COUNT(*) FROM transfer").await,
        attempted.len() as i64,
        "each key applied exactly once"
    );
    app.assert_ledger_consistent().await;
    let total = app
        .sql_i64("SELECT CAST(SUM(balance) AS BIGINT) FROM wallet")
        .await;
    assert_eq!(total, 6 * 100_000);
}

both_backends!(a_killed_server_loses_no_acknowledged_transfer);
