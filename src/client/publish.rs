//! `factlog publish`: posts one fact given on the command line, or one fact per line of
//! standard input, in order, each with an idempotency key, and retries what the server or
//! a proxy could not take. A retry, or a rerun of the same input after a failure, never
//! appends a fact twice: the key of a line is derived from the line (its text, how many
//! identical lines came before it, the topic and the event type), so the same input gives
//! the same keys, and identical lines are still distinct facts.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncBufReadExt as _;

use super::connection::{Server, ServerArgs, refusal};

/// How often one fact is tried before the command gives up.
const ATTEMPTS: u32 = 8;

/// The first pause between attempts; it doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The longest pause between attempts (unless the server's `Retry-After` asks for more).
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// How long one POST may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `factlog publish`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// The topic to publish to.
    #[arg(long, default_value = "default")]
    topic: String,

    /// The facts' SSE event type.
    #[arg(long)]
    event: Option<String>,

    /// The idempotency key of the fact given as an argument (one is made up for it
    /// otherwise, good for this command's own retries); facts from standard input get
    /// keys derived from their lines.
    #[arg(long, requires = "fact")]
    key: Option<String>,

    /// The fact, as JSON; without it, one fact per line of standard input (blank lines
    /// are skipped).
    fact: Option<String>,
}

/// What publishing came to.
#[derive(Debug, Default)]
pub struct Published {
    /// Facts the server appended.
    pub appended: u64,
    /// Facts it already had under their keys (a rerun).
    pub already: u64,
}

/// Publishes the argument's fact or standard input's, printing each record the server
/// answers with as a line.
///
/// # Errors
/// At the first fact the server refuses (it names the line), or cannot take after
/// [`ATTEMPTS`] tries; facts before it stay published, and a rerun skips them.
pub async fn publish(args: PublishArgs) -> anyhow::Result<Published> {
    let server = Server::new(&args.server, None)?;
    let mut url = server.url(&format!("topics/{}/facts", args.topic))?;
    if let Some(event) = &args.event {
        url.query_pairs_mut().append_pair("event", event);
    }
    let mut published = Published::default();
    if let Some(fact) = &args.fact {
        let key = args
            .key
            .clone()
            .unwrap_or_else(|| format!("cli:{}", uuid::Uuid::new_v4()));
        post(&server, &url, fact, &key, &mut published)
            .await
            .context("the fact was not published")?;
        return Ok(published);
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut seen: HashMap<[u8; 32], u64> = HashMap::new();
    let mut number = 0u64;
    while let Some(line) = lines
        .next_line()
        .await
        .context("cannot read standard input")?
    {
        number += 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let text = Sha256::digest(line.as_bytes());
        let occurrence = seen.entry(text.into()).or_insert(0);
        *occurrence += 1;
        let key = line_key(&args.topic, args.event.as_deref(), &text, *occurrence);
        post(&server, &url, line, &key, &mut published)
            .await
            .with_context(|| {
                format!(
                    "line {number} was not published ({} before it were)",
                    published.appended + published.already
                )
            })?;
    }
    Ok(published)
}

/// The key of the `occurrence`-th line whose text hashes to `text`.
fn line_key(topic: &str, event: Option<&str>, text: &[u8], occurrence: u64) -> String {
    let mut hash = Sha256::new();
    for part in [topic.as_bytes(), event.unwrap_or("").as_bytes(), text] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.update(occurrence.to_be_bytes());
    let digest = hash.finalize();
    let mut key = String::with_capacity(5 + 2 * digest.len());
    key.push_str("line:");
    for byte in digest {
        key.push_str(&format!("{byte:02x}"));
    }
    key
}

/// Posts one fact under `key`, retrying while the server (or a proxy) cannot take it:
/// with the key, a fact whose answer was lost is not appended again.
async fn post(
    server: &Server,
    url: &url::Url,
    fact: &str,
    key: &str,
    published: &mut Published,
) -> anyhow::Result<()> {
    let mut pause = FIRST_PAUSE;
    let mut attempt = 1;
    loop {
        let mut request = server
            .client
            .post(url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(fact.to_owned());
        if let Some(token) = server.token()? {
            request = request.bearer_auth(token);
        }
        let (why, asked) = match request.send().await {
            Ok(response) if response.status().is_success() => {
                if response.status() == reqwest::StatusCode::OK {
                    published.already += 1;
                } else {
                    published.appended += 1;
                }
                let record = response.text().await.context("the answer broke off")?;
                println!("{}", record.trim_end());
                return Ok(());
            }
            Ok(response) if response.status().is_server_error() || response.status() == 429 => {
                let asked = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                (refusal(response).await, asked)
            }
            Ok(response) => anyhow::bail!("{}", refusal(response).await),
            Err(err) => (format!("{:#}", anyhow::Error::from(err)), None),
        };
        if attempt == ATTEMPTS {
            anyhow::bail!("{why} (tried {ATTEMPTS} times)");
        }
        let wait = asked.map_or(pause, |asked| asked.max(pause));
        eprintln!(
            "factlog publish: {why}; trying again in {} ms",
            wait.as_millis()
        );
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_PAUSE);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_key_depends_on_the_text_its_occurrence_the_topic_and_the_event() {
        let text = Sha256::digest(b"{\"n\":1}");
        let key = line_key("t", None, &text, 1);
        assert_eq!(key, line_key("t", None, &text, 1));
        assert!(key.starts_with("line:") && key.len() == 69);
        for other in [
            line_key("t", None, &text, 2),
            line_key("u", None, &text, 1),
            line_key("t", Some("e"), &text, 1),
            line_key("t", None, &Sha256::digest(b"{\"n\":2}"), 1),
            // Parts are length-prefixed: no two splits of the same bytes collide.
            line_key("te", None, &text, 1),
        ] {
            assert_ne!(key, other);
        }
    }
}
