//! The test harness: a real walletql server on a fresh database of its own,
//! driven over real HTTP.
//!
//! PostgreSQL tests each get a database cloned from a migrated template
//! (`CREATE DATABASE ... TEMPLATE`), dropped when the test ends. When
//! PostgreSQL is unreachable they print that they were skipped, unless
//! `REQUIRE_POSTGRES=1`, which makes them fail instead.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use migration::MigratorTrait;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;
use walletql::config::{ApiLimits, RateLimits, WsLimits};
use walletql::ledger::{Ledger, LedgerOptions};
use walletql::server::{AppState, serve};
use walletql::store::{Store, StoreOptions};

pub const OPERATOR: &str = "test-operator-token-0123456789abcdef";

/// Small, so the slow-subscriber test needs few events to overflow it.
pub const TEST_EVENT_BUFFER: usize = 64;
/// Likewise for the kernel's buffer of a connection whose client stops reading.
pub const TEST_SOCKET_SEND_BUFFER: usize = 16 * 1024;

/// The migrations' source, so a changed migration gets a new template.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migration/src/m20261127_000001_ledger.rs"),
    include_str!("../../migration/src/m20261129_000001_constraints.rs"),
    include_str!("../../migration/src/m20261130_000001_batch_writes.rs"),
    include_str!("../../migration/src/m20261130_000002_history_indexes.rs"),
    include_str!("../../migration/src/m20261130_000003_ledger_verbs.rs"),
    include_str!("../../migration/src/m20261206_000001_transfer_lists.rs"),
    include_str!("../../migration/src/m20261206_000002_incoming_holds.rs"),
    include_str!("../../migration/src/m20261207_000001_ledger_batch.rs"),
    include_str!("../../migration/src/m20261207_000002_time_by_sequence.rs"),
    include_str!("../../migration/src/m20261208_000001_metadata.rs"),
    include_str!("../../migration/src/m20261208_000002_wallet_controls.rs"),
    include_str!("../../migration/src/m20261209_000001_credit_lines.rs"),
    include_str!("../../migration/src/rules.rs"),
];

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// An empty database (no migration applied), gone with the value: for
/// testing upgrades. PostgreSQL when reachable, else SQLite.
pub struct EmptyDb {
    pub url: String,
    _db: TestDb,
}

impl EmptyDb {
    pub async fn postgres() -> Option<EmptyDb> {
        let admin = admin_connection().await.ok()?;
        let name = format!("walletql_up_{}", Uuid::new_v4().simple());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create database");
        let _ = admin.close().await;
        Some(EmptyDb {
            url: database_url(&name),
            _db: TestDb::Postgres { name },
        })
    }

    pub fn sqlite() -> EmptyDb {
        let path = std::env::temp_dir().join(format!("walletql-up-{}.db", Uuid::new_v4().simple()));
        EmptyDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            _db: TestDb::Sqlite { path },
        }
    }
}

/// A database that disappears with the test.
enum TestDb {
    Postgres { name: String },
    Sqlite { path: PathBuf },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Postgres { name } => {
                let name = name.clone();
                // Drop runs outside async code: use a runtime of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(runtime) = runtime {
                        runtime.block_on(async {
                            if let Ok(admin) = admin_connection().await {
                                let _ = admin
                                    .execute_unprepared(&format!(
                                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                                    ))
                                    .await;
                            }
                        });
                    }
                })
                .join();
            }
            TestDb::Sqlite { path } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}

async fn admin_connection() -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut options = ConnectOptions::new(admin_url());
    // One connection, so the advisory lock and its release share a session.
    options
        .max_connections(1)
        .connect_timeout(Duration::from_secs(3))
        .sqlx_logging(false);
    Database::connect(options).await
}

fn template_name() -> String {
    // FNV-1a: stable across runs, unlike std's hasher.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in MIGRATIONS.iter().flat_map(|m| m.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3);
    }
    format!("walletql_tpl_{hash:016x}")
}

/// A fresh PostgreSQL database, cloned from the migrated template.
async fn postgres_database() -> Option<(String, TestDb)> {
    let admin = match admin_connection().await {
        Ok(admin) => admin,
        Err(err) => {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {err}");
            }
            eprintln!("skipped: PostgreSQL unreachable at {} ({err})", admin_url());
            return None;
        }
    };
    let template = template_name();
    admin
        .execute_unprepared("SELECT pg_advisory_lock(7239045)")
        .await
        .expect("advisory lock");
    let exists = admin
        .query_one_raw(Statement::from_string(
            admin.get_database_backend(),
            format!("SELECT 1 AS one FROM pg_database WHERE datname = '{template}'"),
        ))
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        // Built under another name and renamed when complete, so a test that
        // dies half-way never leaves a half-migrated template behind.
        let building = format!("{template}_building");
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
            ))
            .await
            .expect("drop stale template");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{building}\""))
            .await
            .expect("create template");
        let url = database_url(&building);
        let template_db = Database::connect(url.as_str())
            .await
            .expect("connect template");
        migration::Migrator::up(&template_db, None)
            .await
            .expect("migrate template");
        template_db.close().await.expect("close template");
        admin
            .execute_unprepared(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{template}\""
            ))
            .await
            .expect("rename template");
    }
    admin
        .execute_unprepared("SELECT pg_advisory_unlock(7239045)")
        .await
        .expect("advisory unlock");
    let name = format!("walletql_test_{}", Uuid::new_v4().simple());
    admin
        .execute_unprepared(&format!(
            "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
        ))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    Some((database_url(&name), TestDb::Postgres { name }))
}

fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Serves `store` with the given limits on a port of its own, with a ledger
/// of its own (as another server process would).
pub async fn serve_store(store: Store, api: ApiLimits, ws: WsLimits) -> SocketAddr {
    let ledger = Ledger::start(store, LedgerOptions::default())
        .await
        .expect("start a ledger");
    serve_ledger(ledger, api, ws).await
}

/// Serves `ledger` with the given limits on a port of its own (another
/// server beside a `TestApp`'s, in the same process).
pub async fn serve_ledger(ledger: Ledger, api: ApiLimits, ws: WsLimits) -> SocketAddr {
    let state = AppState::with_limits(ledger, OPERATOR, ws, api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, state, std::future::pending()));
    addr
}

/// `{ __typename }` posted to the server at `addr` from a page on
/// http://localhost:5173, as a browser would.
pub async fn cross_origin_post(addr: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("origin", "http://localhost:5173")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("post")
}

/// A client created through the API, with its token.
#[derive(Clone, Debug)]
pub struct TestClient {
    pub id: String,
    pub wallet: String,
    pub token: String,
}

pub struct TestApp {
    /// Where HTTP requests go: the in-process server unless `use_server`
    /// pointed elsewhere.
    pub addr: SocketAddr,
    pub store: Store,
    pub ledger: Ledger,
    pub db_url: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    _db: TestDb,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn postgres() -> Option<TestApp> {
        TestApp::postgres_with(LedgerOptions::default()).await
    }

    pub async fn sqlite() -> TestApp {
        TestApp::sqlite_with(LedgerOptions::default()).await
    }

    /// A test server whose ledger runs with `options` (the event buffer
    /// is the tests' own).
    pub async fn postgres_with(options: LedgerOptions) -> Option<TestApp> {
        let (url, db) = postgres_database().await?;
        Some(TestApp::spawn(&url, db, options).await)
    }

    pub async fn sqlite_with(options: LedgerOptions) -> TestApp {
        let path =
            std::env::temp_dir().join(format!("walletql-test-{}.db", Uuid::new_v4().simple()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        TestApp::spawn(&url, TestDb::Sqlite { path }, options).await
    }

    async fn spawn(url: &str, db: TestDb, options: LedgerOptions) -> TestApp {
        walletql::telemetry::init(walletql::config::LogFormat::Text);
        walletql::metrics::init();
        let pool = StoreOptions {
            max_connections: 8,
            ..StoreOptions::default()
        };
        let store = Store::connect_with(url, pool)
            .await
            .expect("connect test database");
        let ledger = Ledger::start(
            store.clone(),
            LedgerOptions {
                event_buffer: TEST_EVENT_BUFFER,
                ..options
            },
        )
        .await
        .expect("start the ledger");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let limits = WsLimits {
            socket_send_buffer: TEST_SOCKET_SEND_BUFFER,
            ..WsLimits::default()
        };
        // Tests create clients and call far faster than any rate limit
        // allows; the limits have tests of their own.
        let api_limits = ApiLimits {
            rate_limits: RateLimits::OFF,
            ..ApiLimits::default()
        };
        let state = AppState::with_limits(ledger.clone(), OPERATOR, limits, api_limits);
        let server = tokio::spawn(async move {
            let _ = serve(listener, state, std::future::pending()).await;
        });
        TestApp {
            addr,
            store,
            ledger,
            db_url: url.to_owned(),
            http: reqwest::Client::new(),
            server,
            _db: db,
        }
    }

    /// Runs SQL as the PostgreSQL superuser, outside the test database
    /// (for switching the database off and on).
    pub async fn admin_sql(&self, sql: &str) {
        let admin = admin_connection().await.expect("admin connection");
        admin.execute_unprepared(sql).await.expect("admin SQL");
        let _ = admin.close().await;
    }

    /// The test database's name.
    pub fn db_name(&self) -> &str {
        self.db_url.rsplit('/').next().unwrap_or_default()
    }

    pub fn is_postgres(&self) -> bool {
        self.db_url.starts_with("postgres")
    }

    /// Sends later HTTP requests to another server (on the same database).
    pub fn use_server(&mut self, addr: SocketAddr) {
        self.addr = addr;
    }

    /// Another walletql server, a separate OS process on this test's database.
    pub fn spawn_process(&self) -> ServerProcess {
        ServerProcess::spawn(&self.db_url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a GraphQL request; returns the HTTP status and the JSON body.
    pub async fn post(&self, auth: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(self.url("/graphql")).json(&body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON response"))
    }

    /// Runs a GraphQL document with an optional bearer token.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        let auth = token.map(|t| format!("Bearer {t}"));
        self.post(
            auth.as_deref(),
            json!({ "query": query, "variables": variables }),
        )
        .await
        .1
    }

    /// Runs the shared operation `name` (`documents/`), as a client sends
    /// it: that operation and the fragments it spreads.
    pub async fn run(&self, token: Option<&str>, name: &str, variables: Value) -> Value {
        let document = walletql::documents::operation(name)
            .unwrap_or_else(|| panic!("no operation {name} in documents/"));
        self.gql(token, document, variables).await
    }

    pub async fn create_client(&self, name: &str) -> TestClient {
        let response = self
            .run(None, "CreateClient", json!({ "input": { "name": name } }))
            .await;
        let created = &data(&response)["createClient"];
        TestClient {
            id: text(&created["client"]["id"]),
            wallet: text(&created["wallet"]["id"]),
            token: text(&created["token"]),
        }
    }

    pub async fn deposit(&self, wallet: &str, amount: &str) -> Value {
        self.deposit_with(wallet, json!(amount), None).await
    }

    pub async fn deposit_with(&self, wallet: &str, amount: Value, key: Option<&str>) -> Value {
        self.run(
            Some(OPERATOR),
            "Deposit",
            json!({ "input": { "walletId": wallet, "amount": amount, "idempotencyKey": key } }),
        )
        .await
    }

    pub async fn transfer(&self, from: &TestClient, to: &str, amount: &str) -> Value {
        self.transfer_with(from, to, amount, None).await
    }

    pub async fn transfer_with(
        &self,
        from: &TestClient,
        to: &str,
        amount: &str,
        key: Option<&str>,
    ) -> Value {
        self.run(
            Some(&from.token),
            "Transfer",
            json!({ "input": { "fromWalletId": from.wallet, "toWalletId": to, "amount": amount, "idempotencyKey": key } }),
        )
        .await
    }

    /// A wallet's balance as the operator sees it.
    pub async fn balance(&self, wallet: &str) -> String {
        let response = self
            .run(Some(OPERATOR), "Wallet", json!({ "id": wallet }))
            .await;
        text(&data(&response)["wallet"]["balance"])
    }

    /// Overwrites a wallet's balance, bypassing the ledger (for setting up
    /// edge cases only).
    pub async fn set_balance(&self, wallet: &str, cents: i64) {
        use entity::wallet;
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let id = Uuid::parse_str(wallet).expect("wallet id");
        wallet::Entity::update_many()
            .col_expr(wallet::Column::Balance, Expr::value(cents))
            .filter(wallet::Column::Id.eq(id))
            .exec(self.store.db())
            .await
            .expect("set balance");
    }

    /// Runs a scalar SQL query (an integer result) against the test database.
    pub async fn sql_i64(&self, sql: &str) -> i64 {
        let db = self.store.db();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("run SQL")
            .expect("one row");
        row.try_get_by_index::<Option<i64>>(0)
            .expect("integer")
            .unwrap_or(0)
    }

    /// Checks every invariant of the ledger (`store::audit`), panicking with
    /// the report if any is broken.
    pub async fn assert_ledger_consistent(&self) {
        let audit = walletql::store::audit::audit(self.store.db())
            .await
            .expect("audit");
        assert!(audit.is_clean(), "ledger audit failed:\n{}", audit.report());
    }
}

/// POSTs a GraphQL document as `token` to the server at `addr`.
pub async fn post_to(addr: SocketAddr, token: &str, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json")
}

/// The `data` of a response, failing the test on any error.
pub fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none(),
        "unexpected errors: {response}"
    );
    &response["data"]
}

/// The `extensions.code` of the response's first error, which must be a
/// value of the schema's `ErrorCode` enum (so every test that looks at a
/// code checks that too).
pub fn error_code(response: &Value) -> &str {
    let code = response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error with a code: {response}"));
    assert!(
        schema_error_codes().iter().any(|c| c == code),
        "{code} is not a value of the schema's ErrorCode: {response}"
    );
    code
}

/// The values of `enum ErrorCode` in the checked-in `schema.graphql`.
pub fn schema_error_codes() -> Vec<String> {
    let sdl = include_str!("../../schema.graphql");
    let body = sdl
        .split("enum ErrorCode {")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .expect("schema.graphql has enum ErrorCode");
    let mut in_description = false;
    body.lines()
        .map(str::trim)
        .filter(|line| {
            if *line == "\"\"\"" {
                in_description = !in_description;
                return false;
            }
            !in_description && !line.is_empty()
        })
        .map(str::to_owned)
        .collect()
}

pub fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
        .to_owned()
}

/// Declares each listed `async fn(TestApp)` as a test on PostgreSQL and on
/// the embedded SQLite backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(app) = $crate::helpers::TestApp::postgres().await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::TestApp::sqlite().await).await;
                }
            )*
        }
    };
}

/// The lines a child process writes, read on a thread of their own so the
/// child never blocks on a full pipe.
pub fn lines_of(reader: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(reader)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                // Nobody listens any more; keep draining.
                continue;
            }
        }
    });
    rx
}

/// The address in walletql's "listening" log line, if this is it.
pub fn listening_address(line: &str) -> Option<String> {
    line.split("address=")
        .nth(1)?
        .split_whitespace()
        .next()
        .map(str::to_owned)
}

/// A `walletql` server run as its own process, killed when dropped.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl ServerProcess {
    pub fn spawn(db_url: &str) -> ServerProcess {
        ServerProcess::spawn_with(db_url, &[])
    }

    /// With more settings in its environment.
    pub fn spawn_with(db_url: &str, env: &[(&str, &str)]) -> ServerProcess {
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_walletql"))
            .envs(env.iter().copied())
            .env("DATABASE_URL", db_url)
            .env("OPERATOR_TOKEN", OPERATOR)
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("SUBSCRIPTION_BUFFER", TEST_EVENT_BUFFER.to_string())
            .env("SOCKET_SEND_BUFFER", TEST_SOCKET_SEND_BUFFER.to_string())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start walletql");
        let lines = lines_of(child.stdout.take().expect("stdout"));
        let addr = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("server process reports its address");
            if let Some(addr) = listening_address(&line) {
                break addr;
            }
        };
        let addr = addr.parse().expect("socket address");
        ServerProcess { addr, child }
    }
}

impl ServerProcess {
    /// SIGKILL: no graceful shutdown, in-flight requests cut off.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `sql` on the PostgreSQL server at `url` (a cluster of a test's
/// own); the first column of the first row, as text. Used by the cluster
/// tests (failover, replicas, restore), not by this crate.
#[allow(dead_code)]
pub async fn pg_scalar(url: &str, sql: &str) -> String {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
    let db = Database::connect(url).await.expect("connect");
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .expect("query")
        .expect("a row");
    let value: String = row.try_get_by_index(0).expect("a text column");
    let _ = db.close().await;
    value
}

/// A PostgreSQL primary and its synchronous streaming standby of a test's
/// own (`deploy/ha/pair.sh`), on `ports`; removed when dropped.
#[allow(dead_code)]
pub struct Pair {
    dir: std::path::PathBuf,
    ports: (u16, u16),
}

#[allow(dead_code)]
impl Pair {
    pub fn up(ports: (u16, u16)) -> Pair {
        let dir = std::env::temp_dir().join(format!("walletql-pair-{}", Uuid::new_v4().simple()));
        let pair = Pair { dir, ports };
        pair.run("up");
        pair
    }

    /// `deploy/ha/pair.sh COMMAND` on this pair.
    pub fn run(&self, command: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ha/pair.sh");
        let status = std::process::Command::new(script)
            .arg(command)
            .arg(&self.dir)
            .arg(self.ports.0.to_string())
            .arg(self.ports.1.to_string())
            .status()
            .expect("run deploy/ha/pair.sh");
        assert!(status.success(), "pair.sh {command}");
    }

    /// Both hosts, asking for the writable one.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
            self.ports.0, self.ports.1
        )
    }

    pub fn primary_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.ports.0)
    }

    pub fn standby_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.ports.1)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| self.run("down"));
    }
}
