//! Several instances on one database: one gap-free sequence, with restarts and kills.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use factlog_testkit::pg;
use factlog_testkit::*;

/// Reads a stream until it has seen id `last`, reconnecting with `Last-Event-ID` (as a
/// browser does) whenever the stream ends because its instance stopped.
async fn follow(
    client: reqwest::Client,
    base: String,
    mut stream: SseStream,
    last: i64,
) -> Vec<i64> {
    let mut ids = Vec::new();
    loop {
        while let Some(event) = stream.next_event().await {
            ids.push(event.id());
            if event.id() >= last {
                return ids;
            }
        }
        let deadline = Instant::now() + WAIT;
        stream = loop {
            assert!(Instant::now() < deadline, "{base} did not come back");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut request = client.get(format!("{base}/events"));
            if let Some(id) = ids.last() {
                request = request.header("last-event-id", id.to_string());
            }
            if let Ok(response) = request.send().await {
                if response.status() == 200 {
                    break SseStream::new(response);
                }
            }
        };
    }
}

/// Posts until the server acknowledges, retrying with the same idempotency key through
/// refused connections and 503s (an instance restarting): the fact is appended once.
async fn post_until_acknowledged(client: &reqwest::Client, base: &str, key: &str, fact: &Value) {
    let deadline = Instant::now() + WAIT;
    loop {
        let sent = client
            .post(format!("{base}/facts"))
            .header("idempotency-key", key)
            .json(fact)
            .send()
            .await;
        if let Ok(response) = sent {
            if matches!(response.status().as_u16(), 200 | 201) {
                return;
            }
            assert_eq!(response.status(), 503, "only unavailability is retried");
        }
        assert!(Instant::now() < deadline, "{key} was never acknowledged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Three instances (real processes) on one database; publishers post to all of them and
/// a worker publishes through SQL; subscribers follow every instance, from the start and
/// live only; one instance restarts midway, another is killed and restarted. Every
/// subscriber sees the same strictly increasing, gap-free sequence, equal to the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    no_postgres,
    ignore = "needs PostgreSQL: install Debian's postgresql, or set FACTLOG_TEST_POSTGRES_URL"
)]
async fn instances_share_one_gap_free_sequence() {
    let Some(db) = pg::database("instances_share_one_gap_free_sequence") else {
        return;
    };
    const PUBLISHERS_PER_INSTANCE: usize = 2;
    const FACTS_PER_PUBLISHER: usize = 100;
    const WORKER_FACTS: usize = 100;
    let total = (3 * PUBLISHERS_PER_INSTANCE * FACTS_PER_PUBLISHER + WORKER_FACTS) as i64;

    let mut processes: Vec<Process> = (0..3)
        .map(|_| Process::spawn(factlog_command_url(&db.url, "127.0.0.1:0", &[])))
        .collect();
    let bases: Vec<String> = processes.iter().map(Process::base).collect();
    let client = reqwest::Client::new();

    let mut subscribers = Vec::new();
    for base in &bases {
        for query in ["", "tail=0"] {
            let response = client
                .get(format!("{base}/events?{query}"))
                .send()
                .await
                .expect("a stream");
            assert_eq!(response.status(), 200);
            let stream = SseStream::new(response);
            subscribers.push(tokio::spawn(follow(
                client.clone(),
                base.clone(),
                stream,
                total,
            )));
        }
    }

    let mut publishers = Vec::new();
    for (i, base) in bases.iter().enumerate() {
        for p in 0..PUBLISHERS_PER_INSTANCE {
            let (client, base) = (client.clone(), base.clone());
            publishers.push(tokio::spawn(async move {
                for n in 0..FACTS_PER_PUBLISHER {
                    let key = format!("instance{i}-publisher{p}-{n}");
                    let fact = json!({"instance": i, "publisher": p, "n": n});
                    post_until_acknowledged(&client, &base, &key, &fact).await;
                }
            }));
        }
    }
    let mut worker = db.connect().await;
    publishers.push(tokio::spawn(async move {
        for n in 0..WORKER_FACTS {
            let key = format!("worker-{n}");
            publish_sql(
                &mut worker,
                &json!({"worker": n}).to_string(),
                None,
                Some(&key),
            )
            .await
            .expect("the worker publishes");
        }
    }));

    // A third of the way, instance 1 stops (SIGTERM) and starts again on the same address;
    // two thirds of the way, instance 2 is killed (SIGKILL) and started again.
    let mut observer = db.connect().await;
    for (nth, signal) in [(1, "TERM"), (2, "KILL")] {
        let after = total * nth / 3;
        until_count(
            &mut observer,
            &format!("SELECT least(count(*), {after}) FROM facts"),
            after,
        )
        .await;
        let stopping = processes.remove(nth as usize);
        let addr = stopping.addr.to_string();
        let url = db.url.clone();
        let restarted = tokio::task::spawn_blocking(move || {
            stopping.signal(signal);
            let clean = stopping.wait(WAIT);
            assert!(clean || signal == "KILL", "instance {nth} stops cleanly");
            Process::spawn(factlog_command_url(&url, &addr, &[]))
        })
        .await
        .expect("the instance restarts");
        processes.insert(nth as usize, restarted);
    }

    for publisher in publishers {
        publisher.await.expect("a publisher");
    }
    let table = table_ids(&mut observer).await;
    let expected: Vec<i64> = (1..=total).collect();
    assert_eq!(
        table, expected,
        "the table holds every fact once, ids without a gap"
    );
    for subscriber in subscribers {
        let seen = tokio::time::timeout(WAIT, subscriber)
            .await
            .expect("every subscriber catches up")
            .expect("a subscriber");
        assert_eq!(seen, expected);
    }
}
