//! `factlog tail` and `factlog publish`, run as a user runs them: the binary as a child
//! process against a real server, its output read line by line.

use std::io::{BufRead as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::{Value, json};

use factlog_testkit::*;

/// A port free now, for a server that must come back on the same address.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `factlog tail` running, its lines arriving on a channel.
struct Tail {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Tail {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(factlog_binary())
            .arg("tail")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tail starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&self) -> String {
        self.lines.recv_timeout(WAIT).expect("tail prints a line")
    }

    fn ids(&self, n: usize) -> Vec<i64> {
        (0..n)
            .map(|_| {
                let record: Value = serde_json::from_str(&self.next()).expect("a JSON line");
                record["id"].as_i64().expect("an id")
            })
            .collect()
    }

    /// Stops it as Ctrl-C or systemd would, and checks it exits cleanly.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exited = self.child.wait().expect("tail exits");
        assert!(exited.success(), "{exited:?}");
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server in a process of its own: the commands' calls block this test's thread, which
/// must not be the one serving them.
fn server() -> (tempfile::TempDir, Process) {
    let dir = tempfile::TempDir::new().expect("a directory");
    let server = Process::start(&dir.path().join("facts.db"), "127.0.0.1:0", &[]);
    (dir, server)
}

async fn post(base: &str, fact: &Value) -> i64 {
    post_at(base, "/facts", fact).await
}

async fn post_at(base: &str, path: &str, fact: &Value) -> i64 {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(fact)
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.expect("a record")["id"]
        .as_i64()
        .expect("an id")
}

#[tokio::test]
async fn tail_resumes_exactly_across_its_own_restarts_and_the_servers() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let db = dir.path().join("facts.db");
    let listen = format!("127.0.0.1:{}", free_port());
    let server = Process::start(&db, &listen, &["--retry-ms", "200"]);
    let base = server.base();
    let state = dir.path().join("tail.state");
    let state_arg = state.to_str().expect("UTF-8").to_owned();
    for n in 1..=3 {
        post(&base, &json!({ "n": n })).await;
    }

    let tail = Tail::start(&[&base, "--state", &state_arg]);
    assert_eq!(tail.ids(3), [1, 2, 3]);
    tail.stop();
    assert_eq!(std::fs::read_to_string(&state).expect("saved"), "3\n");

    // Facts posted while no tail runs come first when it starts again; then the server
    // restarts under it, and it follows on after the retry delay.
    for n in 4..=5 {
        post(&base, &json!({ "n": n })).await;
    }
    let tail = Tail::start(&[&base, "--state", &state_arg, "--format", "fact"]);
    let facts: Vec<String> = (0..2).map(|_| tail.next()).collect();
    assert_eq!(facts, [r#"{"n":4}"#, r#"{"n":5}"#]);
    server.signal("TERM");
    assert!(server.wait(WAIT));
    let server = Process::start(&db, &listen, &["--retry-ms", "200"]);
    for n in 6..=7 {
        post(&base, &json!({ "n": n })).await;
    }
    let facts: Vec<String> = (0..2).map(|_| tail.next()).collect();
    assert_eq!(facts, [r#"{"n":6}"#, r#"{"n":7}"#]);
    tail.stop();
    assert_eq!(std::fs::read_to_string(&state).expect("saved"), "7\n");
    drop(server);
}

#[tokio::test]
async fn tail_follows_topics_from_a_start_and_says_why_it_cannot() {
    let (_dir, server) = server();
    let base = &server.base();
    for (topic, n) in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)] {
        post_at(base, &format!("/topics/{topic}/facts"), &json!({ "n": n })).await;
    }
    let tail = Tail::start(&[base, "--topic", "a", "--topic", "b", "--after", "1"]);
    assert_eq!(tail.ids(3), [2, 3, 5]);
    let record: Value = {
        post_at(base, "/topics/b/facts", &json!({"n": 6})).await;
        serde_json::from_str(&tail.next()).expect("JSON")
    };
    assert_eq!(
        (&record["id"], &record["topic"], &record["fact"]),
        (&json!(6), &json!("b"), &json!({"n": 6}))
    );
    tail.stop();

    let newest = Tail::start(&[base, "--tail", "1", "--format", "fact"]);
    assert_eq!(newest.next(), r#"{"n":6}"#);
    newest.stop();

    // A refusal that retrying cannot mend ends the command, with the server's reason.
    let refused = Command::new(factlog_binary())
        .args(["tail", base, "--topic", "no spaces"])
        .output()
        .expect("tail runs");
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("400"), "{said}");
}

/// Runs `factlog publish` with `input` on its standard input.
fn publish(args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(factlog_binary())
        .arg("publish")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("publish starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("the input is written");
    let output = child.wait_with_output().expect("publish ends");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn publishing_lines_twice_appends_them_once_identical_lines_included() {
    let (_dir, server) = server();
    let base = &server.base();
    let input = "{\"n\":1}\n{\"same\":true}\n\n{\"same\":true}\r\n{\"n\":2}\n";
    let (ok, out, err) = publish(&[base, "--topic", "jobs", "--event", "done"], input);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 4, "one record per fact: {out}");
    assert!(err.contains("4 appended, 0 already"), "{err}");

    // A rerun, and a longer input of which the first lines were published already.
    let (ok, _, err) = publish(&[base, "--topic", "jobs", "--event", "done"], input);
    assert!(ok && err.contains("0 appended, 4 already"), "{err}");
    let longer = format!("{input}{{\"n\":3}}\n");
    let (ok, _, err) = publish(&[base, "--topic", "jobs", "--event", "done"], &longer);
    assert!(ok && err.contains("1 appended, 4 already"), "{err}");

    let page: Value = reqwest::get(format!("{base}/topics/jobs/facts"))
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON");
    let facts: Vec<&Value> = page["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .inspect(|r| assert_eq!(r["event"], "done"))
        .map(|r| &r["fact"])
        .collect();
    assert_eq!(
        facts,
        [
            &json!({"n": 1}),
            &json!({"same": true}),
            &json!({"same": true}),
            &json!({"n": 2}),
            &json!({"n": 3})
        ]
    );
}

#[tokio::test]
async fn publishing_stops_at_a_bad_line_and_a_corrected_rerun_goes_on() {
    let (_dir, server) = server();
    let base = &server.base();
    let (ok, _, err) = publish(&[base], "{\"n\":1}\n{\"n\":2}\n{oops\n{\"n\":4}\n");
    assert!(!ok);
    assert!(
        err.contains("line 3 was not published (2 before it were)") && err.contains("400"),
        "{err}"
    );
    let (ok, _, err) = publish(&[base], "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n{\"n\":4}\n");
    assert!(ok && err.contains("2 appended, 2 already"), "{err}");
    assert_eq!(all_ids(&reqwest::Client::new(), base).await, [1, 2, 3, 4]);

    // One fact as an argument, with a key of one's own: a second run is the same fact.
    for _ in 0..2 {
        let (ok, out, err) = publish(&[base, "--key", "deploy-7", r#"{"deployed":7}"#], "");
        assert!(ok, "{err}");
        let record: Value = serde_json::from_str(out.trim()).expect("the record");
        assert_eq!(record["id"], 5);
    }
}

#[tokio::test]
async fn publish_waits_for_a_server_that_is_not_up_yet() {
    let dir = tempfile::TempDir::new().expect("a directory");
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let mut child = Command::new(factlog_binary())
        .args(["publish", &base])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("publish starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"{\"n\":1}\n{\"n\":2}\n")
        .expect("written");
    // It says it is waiting before the server exists.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("a line");
    assert!(first.contains("trying again"), "{first}");
    let server = Process::start(&dir.path().join("facts.db"), &listen, &[]);
    assert!(child.wait().expect("publish ends").success());
    assert_eq!(
        all_ids(&reqwest::Client::new(), &server.base()).await,
        [1, 2]
    );
}

#[tokio::test]
async fn tail_over_https_renews_its_token_from_the_file_and_stops_when_it_cannot() {
    use factlog_testkit::tls::TestCert;
    use factlog_testkit::token::{self, claims, hs256};

    let dir = tempfile::TempDir::new().expect("a directory");
    let cert = TestCert::write(dir.path(), "tail");
    let server = Process::start(
        &dir.path().join("facts.db"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.cert.to_str().expect("UTF-8"),
            "--tls-key",
            cert.key.to_str().expect("UTF-8"),
            "--jwt-key",
            token::SECRET,
            "--jwt-leeway-secs",
            "0",
            "--public-topics",
            "",
            "--retry-ms",
            "200",
        ],
    );
    let base = server.base();
    let cacert = cert.cert.to_str().expect("UTF-8");
    let publisher = hs256(&claims(600, &[], &["orders.*"]));
    let publish_one = |n: u32| {
        let fact = format!("{{\"n\":{n}}}");
        let (ok, out, err) = publish(
            &[
                &base,
                "--topic",
                "orders.eu",
                "--cacert",
                cacert,
                "--token",
                &publisher,
                &fact,
            ],
            "",
        );
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(out.trim()).expect("a record")["id"]
            .as_i64()
            .expect("an id")
    };
    let first = [publish_one(1), publish_one(2)];

    // A token that expires in two to three seconds, in a file the tail reads again.
    let short = claims(3, &["orders.*"], &[]);
    let expires = short["exp"].as_i64().expect("exp");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, hs256(&short)).expect("written");
    let tail = Tail::start(&[
        &base,
        "--topic",
        "orders.eu",
        "--cacert",
        cacert,
        "--token-file",
        token_file.to_str().expect("UTF-8"),
    ]);
    assert_eq!(tail.ids(2), first);
    std::fs::write(&token_file, hs256(&claims(600, &["orders.*"], &[]))).expect("renewed");
    // Past the first token's end: its stream has ended, and the tail went on with the file's.
    while token::now() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let later = [publish_one(3), publish_one(4)];
    assert_eq!(tail.ids(2), later);
    tail.stop();

    // With --token there is nothing to renew from: it stops, and says why.
    let short = hs256(&claims(2, &["orders.*"], &[]));
    let output = Command::new(factlog_binary())
        .args([
            "tail",
            &base,
            "--topic",
            "orders.eu",
            "--cacert",
            cacert,
            "--token",
            &short,
            "--tail",
            "0",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("tail runs to its end");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("the token expired"), "{said}");
}
