//! The `walletql` binary as a new user runs it: no configuration at all.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{lines_of, listening_address};

/// With nothing set, the server starts on an embedded SQLite file in its
/// working directory, prints an operator token that works, and stops
/// cleanly on SIGTERM.
#[tokio::test]
async fn runs_with_no_configuration_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("walletql-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("OPERATOR_TOKEN")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start walletql");

    // Both pipes are read to the end on threads of their own, so the server
    // never writes into a closed pipe.
    let wait = Duration::from_secs(30);
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let mut stdout_lines = Vec::new();
    let addr = loop {
        let line = stdout
            .recv_timeout(wait)
            .expect("listening address in the log");
        stdout_lines.push(line.clone());
        if let Some(addr) = listening_address(&line) {
            break addr;
        }
    };

    // The generated token is in a file only its owner may read, and in no
    // log: stderr is a pipe here, not a terminal.
    let token_file = dir.join("walletql.operator-token");
    let token = std::fs::read_to_string(&token_file)
        .expect("the generated operator token is written to a file")
        .trim()
        .to_owned();
    assert!(token.len() >= 32, "{token}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("token file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "token file mode {mode:o}");
    }
    let logged: Vec<String> = stdout_lines
        .iter()
        .chain(stderr.try_iter().collect::<Vec<_>>().iter())
        .cloned()
        .collect();
    assert!(
        logged.iter().any(|l| l.contains("walletql.operator-token")),
        "the log names the token file: {logged:?}"
    );
    assert!(
        !logged.iter().any(|l| l.contains(&token)),
        "the token itself never reaches the log"
    );

    let http = reqwest::Client::new();
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let me: serde_json::Value = http
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(&token)
        .json(&json!({ "query": "{ wallets { nodes { id } } }" }))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert!(me.get("errors").is_none(), "{me}");
    assert!(
        dir.join("walletql.db").exists(),
        "the embedded database file is created"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(exit) = child.try_wait().expect("wait") {
            status = Some(exit);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let status = status.expect("walletql exits after SIGTERM");
    assert!(
        status.success(),
        "graceful shutdown exits with 0, got {status}"
    );
}

#[test]
fn help_lists_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_walletql"))
        .arg("--help")
        .output()
        .expect("run --help");
    let help = String::from_utf8_lossy(&output.stdout);
    for setting in [
        "DATABASE_URL",
        "LISTEN_ADDR",
        "OPERATOR_TOKEN",
        "DB_MAX_CONNECTIONS",
    ] {
        assert!(help.contains(setting), "--help does not mention {setting}");
    }
}
