//! The `walletql` binary as a new user runs it: no configuration at all.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{lines_of, listening_address};

/// With nothing set, the server starts on an embedded SQLite file in its
/// working directory, writes an operator token that works to a file of its
/// own (never to the log), and stops cleanly on SIGTERM.
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
    assert_operator_works(&addr, &token).await;
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

/// The operator token of the server at `addr` lists wallets.
async fn assert_operator_works(addr: &str, token: &str) {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .bearer_auth(token)
        .json(&json!({ "query": "{ wallets { nodes { id } } }" }))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert!(response.get("errors").is_none(), "{response}");
}

/// Starts the binary in a fresh directory with `env` and waits until it
/// listens (`Ok(address)`) or exits (`Err(what it printed)`).
fn start_with(
    env: &[(&str, &str)],
) -> (
    Result<String, String>,
    std::process::Child,
    std::path::PathBuf,
) {
    let dir = std::env::temp_dir().join(format!("walletql-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_walletql"));
    command
        .current_dir(&dir)
        .env_remove("DATABASE_URL")
        .env_remove("OPERATOR_TOKEN")
        .env_remove("OPERATOR_TOKEN_FILE")
        .env_remove("CORS_ALLOWED_ORIGINS")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start walletql");
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    let mut printed = Vec::new();
    let outcome = loop {
        match stdout.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                if let Some(addr) = listening_address(&line) {
                    break Ok(addr);
                }
                printed.push(line);
            }
            Err(_) => break Err(printed.join("\n")),
        }
    };
    (outcome, child, dir)
}

fn stop(mut child: std::process::Child, dir: std::path::PathBuf) -> std::process::ExitStatus {
    let _ = child.kill();
    let status = child.wait().expect("wait");
    let _ = std::fs::remove_dir_all(dir);
    status
}

/// A guessable operator token is refused at start, with a clear message;
/// one read from a file (the container convention for secrets) works.
#[tokio::test]
async fn weak_operator_tokens_are_refused_and_files_accepted() {
    for weak in ["a", "change-me", "0123456789012345678901234567890"] {
        let (outcome, child, dir) = start_with(&[("OPERATOR_TOKEN", weak)]);
        let printed = outcome.expect_err("a short operator token must not start the server");
        assert!(printed.contains("at least 32 characters"), "{printed}");
        assert!(!stop(child, dir).success());
    }
    let secret =
        std::env::temp_dir().join(format!("walletql-secret-{}", uuid::Uuid::new_v4().simple()));
    let token = "file-token-0123456789abcdefghijklmnopqrstuvwxyz";
    std::fs::write(&secret, format!("{token}\n")).expect("secret file");
    let path = secret.display().to_string();
    let (outcome, child, dir) = start_with(&[("OPERATOR_TOKEN_FILE", path.as_str())]);
    let addr = outcome.expect("starts with a token file");
    assert_operator_works(&addr, token).await;
    assert!(
        !dir.join("walletql.operator-token").exists(),
        "no token generated"
    );
    stop(child, dir);
    let _ = std::fs::remove_file(secret);
}

/// `CORS_ALLOWED_ORIGINS='*'` starts a server that allows any origin (it
/// used to panic after logging that it listened); a malformed origin is a
/// configuration error at start.
#[tokio::test]
async fn cors_star_starts_and_bad_origins_are_refused() {
    let (outcome, child, dir) = start_with(&[("CORS_ALLOWED_ORIGINS", "*")]);
    let addr = outcome.expect("starts with CORS *");
    let response = crate::helpers::cross_origin_post(&addr).await;
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    stop(child, dir);
    let (outcome, child, dir) = start_with(&[("CORS_ALLOWED_ORIGINS", "localhost:5173")]);
    let printed = outcome.expect_err("a malformed origin must not start the server");
    assert!(printed.contains("CORS_ALLOWED_ORIGINS"), "{printed}");
    stop(child, dir);
}
