//! Widely used SSE clients that dispatch every block a blank line ends, data or not
//! (`@microsoft/fetch-event-source`, Python's `httpx-sse`): against factlog they see only
//! the facts, never an empty event for the `retry:` line or a keep-alive comment, which an
//! application's `JSON.parse` would throw on.
//!
//! The clients are installed by `.ci/run` under `target/clients` (a Python virtual
//! environment and `node_modules`). Where they are missing the test says so and passes;
//! with `FACTLOG_REQUIRE_CLIENTS=1` (as `.ci/run` sets) a missing client is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use factlog_testkit::*;

/// Seconds each client reads: several keep-alive comments (one a second here) go by.
const READ_SECONDS: &str = "3.5";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients")
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The client's command, or `None` (after saying why) when it is not installed here.
fn client(name: &str, installed: &Path, command: impl FnOnce() -> Command) -> Option<Command> {
    if installed.exists() {
        return Some(command());
    }
    assert!(
        std::env::var_os("FACTLOG_REQUIRE_CLIENTS").is_none(),
        "{name} is not installed at {} (.ci/run installs it)",
        installed.display()
    );
    eprintln!(
        "skipped: {name} is not installed at {}",
        installed.display()
    );
    None
}

/// Runs `command` against a stream holding facts 1..=3 and returns what it dispatched.
async fn dispatched(mut command: Command) -> Vec<Value> {
    let app = spawn_with(|c| c.keep_alive_secs = 1).await;
    for n in 1..=3 {
        app.append(&json!({ "n": n })).await;
    }
    let url = app.url("/events");
    let output = tokio::task::spawn_blocking(move || command.arg(url).arg(READ_SECONDS).output())
        .await
        .expect("the client ran")
        .expect("the client started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).expect("a JSON list of events")
}

fn ids_and_data(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_owned(),
                e["data"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn expected() -> Vec<(String, String)> {
    (1..=3)
        .map(|n| (n.to_string(), format!("{{\"n\":{n}}}")))
        .collect()
}

#[tokio::test]
async fn httpx_sse_sees_only_the_facts() {
    let python = clients_dir().join("venv/bin/python");
    let Some(command) = client("httpx-sse", &python, || {
        let mut command = Command::new(&python);
        command.arg(scripts().join("httpx_sse_client.py"));
        command
    }) else {
        return;
    };
    assert_eq!(ids_and_data(&dispatched(command).await), expected());
}

#[tokio::test]
async fn fetch_event_source_sees_only_the_facts() {
    let package = clients_dir().join("node_modules/@microsoft/fetch-event-source");
    let Some(command) = client("@microsoft/fetch-event-source", &package, || {
        let mut command = Command::new("node");
        command
            .arg(scripts().join("fetch_event_source_client.mjs"))
            .env("CLIENTS_DIR", clients_dir());
        command
    }) else {
        return;
    };
    assert_eq!(ids_and_data(&dispatched(command).await), expected());
}
