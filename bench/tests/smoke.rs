//! `seed` and `loadgen` on small sizes against real PostgreSQL and a real
//! walletql server: the smoke run that CI does.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database};
use walletql::server::{AppState, serve};
use walletql::store::Store;
use walletql::store::audit::audit;
use walletql_bench::loadgen::{LoadConfig, Mix, run};
use walletql_bench::seed::{INITIAL_DEPOSIT, SeedConfig, seed};

const OPERATOR: &str = "bench-operator";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh, empty database, or `None` (skipped) without PostgreSQL.
async fn fresh_database() -> Option<(String, String)> {
    let admin = match Database::connect(admin_url()).await {
        Ok(admin) => admin,
        Err(err) => {
            assert!(
                std::env::var("REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required: {err}"
            );
            eprintln!("skipped: PostgreSQL unreachable ({err})");
            return None;
        }
    };
    let name = format!("walletql_test_bench_{}", uuid::Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    let base = admin_url();
    let base = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(b, _)| b)
        .to_owned();
    Some((format!("{base}/{name}"), name))
}

async fn drop_database(name: &str) {
    if let Ok(admin) = Database::connect(admin_url()).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_then_load_keeps_the_ledger_exact() {
    let Some((url, name)) = fresh_database().await else {
        return;
    };

    let report = seed(&SeedConfig {
        database_url: url.clone(),
        clients: 40,
        operations: 2_001,
        whale_share: 0.2,
        progress: false,
        rng_seed: 7,
        flows: 50,
    })
    .await
    .expect("seed");
    assert_eq!(report.clients, 40);
    assert_eq!(report.operations, 2_001);
    assert_eq!(report.deposits + 2 * report.transfers, 2_001);
    let store = Store::connect(&url, 8).await.expect("connect");
    let seeded = audit(store.db()).await.expect("audit");
    assert!(seeded.is_clean(), "seeded ledger:\n{}", seeded.report());
    assert_eq!(report.flows, 50);
    let withdrawn: i64 = store
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            store.db().get_database_backend(),
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM operation WHERE kind = 'WITHDRAWAL'",
        ))
        .await
        .expect("sum")
        .expect("row")
        .try_get_by_index(0)
        .expect("i64");
    assert!(withdrawn > 0, "the flows withdrew");
    assert_eq!(
        seeded.total_deposited,
        INITIAL_DEPOSIT * report.deposits as i64 - withdrawn
    );
    // A second seed into the same database is refused.
    let again = seed(&SeedConfig {
        database_url: url.clone(),
        clients: 2,
        operations: 2,
        whale_share: 0.0,
        progress: false,
        rng_seed: 1,
        flows: 0,
    })
    .await;
    assert!(again.is_err());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ledger = walletql::ledger::Ledger::start(store.clone(), Default::default())
        .await
        .expect("ledger");
    let state = AppState::new(ledger, OPERATOR);
    tokio::spawn(serve(listener, state, std::future::pending()));

    let load = run(&LoadConfig {
        url: format!("http://{addr}"),
        connections: 4,
        duration: Duration::from_secs(3),
        mix: Mix::parse(
            "transfer=40,deposit=10,wallet=10,history=10,hold=10,refund=10,withdraw=5,batch=5",
        )
        .expect("mix"),
        clients: 40,
        hot_wallets: 3,
        hot_share: 0.5,
        operator_token: OPERATOR.to_owned(),
        database_url: Some(url.clone()),
        rng_seed: 3,
        batch_size: 50,
    })
    .await
    .expect("loadgen");
    print!("{}", load.render());
    assert!(
        load.by_kind.get("transfer").is_some_and(|l| l.count > 10),
        "transfers ran"
    );
    for kind in ["history", "hold+capture", "pay+refund", "withdraw", "batch"] {
        assert!(
            load.by_kind.get(kind).is_some_and(|l| l.count > 0),
            "{kind} ran"
        );
    }
    assert!(load.transfers_posted > 50, "batches posted their items");
    assert_eq!(load.unexpected_errors(), 0, "errors: {:?}", load.errors);
    assert_eq!(load.audit_clean, Some(true));
    let transfers: i64 = store
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            store.db().get_database_backend(),
            "SELECT COUNT(*) FROM transfer",
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get_by_index(0)
        .expect("i64");
    assert!(
        transfers as u64 > report.transfers,
        "the load's transfers are in the ledger"
    );
    drop(store);
    drop_database(&name).await;
}

#[test]
fn mixes_parse_and_refuse_nonsense() {
    let mix = Mix::parse("transfer=70, history=30").expect("mix");
    assert_eq!(
        (mix.transfer, mix.deposit, mix.wallet, mix.history),
        (70, 0, 0, 30)
    );
    assert!(Mix::parse("").is_err());
    assert!(Mix::parse("transfer=x").is_err());
    assert!(Mix::parse("teleport=5").is_err());
    assert!(Mix::parse("transfer=0").is_err());
}
