//! `factlog tail`: prints a server's facts as they come, one per line, resuming as a
//! browser does. Across dropped connections and server restarts it reconnects after the
//! server's `retry:` delay with `Last-Event-ID`; across its own restarts it starts after
//! the id its state file holds. The id is saved only after the lines before it are
//! written out, so a tail that is stopped (Ctrl-C, SIGTERM, a closed pipe) continues
//! exactly; one killed between writing and saving prints those facts again, never skips.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use eventsource_stream::{Event, Eventsource as _};
use futures_util::{FutureExt as _, StreamExt as _};
use tokio_util::sync::CancellationToken;

use super::connection::{Server, ServerArgs, refusal};

/// The delay before reconnecting until the server's `retry:` says otherwise.
const FIRST_RETRY: Duration = Duration::from_secs(2);

/// The longest silence on a stream before it is taken for dead: well above the server's
/// keep-alive comments (every 15 s unless --keep-alive-secs says otherwise).
const SILENCE: Duration = Duration::from_secs(60);

/// What each printed line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The record: `{"id","topic","event","fact","created_at"}`.
    Record,
    /// The fact alone, as it was posted.
    Fact,
}

/// `factlog tail`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: ServerArgs,

    /// A topic to follow (repeat for several); every topic when none is given.
    #[arg(long = "topic")]
    topics: Vec<String>,

    /// Only facts of this event type (repeat for several).
    #[arg(long = "event")]
    events: Vec<String>,

    /// Print each fact as its whole record, or the bare fact.
    #[arg(long, value_enum, default_value_t = Output::Record)]
    format: Output,

    /// Keep the last id printed in this file, and start after the id it holds: a
    /// restarted tail continues where it stopped.
    #[arg(long)]
    state: Option<PathBuf>,

    /// Without a state file (or with an empty one), start after this id (0, the default,
    /// is the whole log).
    #[arg(long, conflicts_with = "tail")]
    after: Option<i64>,

    /// Without a state file (or with an empty one), start with the newest N facts (0:
    /// only those to come).
    #[arg(long)]
    tail: Option<u64>,
}

/// Why one connection ended.
enum Ended {
    /// The stream ended or broke: reconnect after the delay.
    Reconnect,
    /// Stop asked, or nobody reads the output any more.
    Stop,
}

/// Follows the log until `stop` fires, or a refusal that a retry cannot mend.
///
/// # Errors
/// When the server refuses the request (a bad topic, no or a bad token), the token expires
/// without a token file to renew it, or the state file cannot be read or written.
pub async fn tail(args: TailArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let server = Server::new(&args.server, Some(SILENCE))?;
    let mut state = State::load(args.state.clone())?;
    let mut follow = Follow {
        last: state.saved.or(args.after),
        tail: if state.saved.is_some() {
            None
        } else {
            args.tail
        },
        delay: FIRST_RETRY,
        out: std::io::BufWriter::new(std::io::stdout()),
    };
    loop {
        match follow.connect(&server, &args, &mut state, &stop).await {
            Ok(Ended::Stop) => return Ok(()),
            Ok(Ended::Reconnect) => {}
            Err(Trouble::Fatal(err)) => return Err(err),
            Err(Trouble::Passing(err)) => {
                eprintln!(
                    "factlog tail: {err:#}; reconnecting in {} ms",
                    follow.delay.as_millis()
                );
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(follow.delay) => {}
        }
    }
}

/// What went wrong with one connection.
enum Trouble {
    /// Worth a reconnection (the server is away, the connection broke).
    Passing(anyhow::Error),
    /// Not: the request itself is refused.
    Fatal(anyhow::Error),
}

/// Where the tail is.
struct Follow {
    /// The id of the last fact printed.
    last: Option<i64>,
    /// `?tail=` for the first connection only.
    tail: Option<u64>,
    /// The reconnection delay, from the server's `retry:`.
    delay: Duration,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Follow {
    /// One connection: prints its facts until it ends.
    async fn connect(
        &mut self,
        server: &Server,
        args: &TailArgs,
        state: &mut State,
        stop: &CancellationToken,
    ) -> Result<Ended, Trouble> {
        let mut url = server.url("events").map_err(Trouble::Fatal)?;
        {
            let mut query = url.query_pairs_mut();
            for topic in &args.topics {
                query.append_pair("topic", topic);
            }
            for event in &args.events {
                query.append_pair("event", event);
            }
            query.append_pair("format", "record");
            if let Some(tail) = self.tail.take() {
                query.append_pair("tail", &tail.to_string());
            }
        }
        let mut request = server.client.get(url).header("accept", "text/event-stream");
        if let Some(last) = self.last {
            request = request.header("last-event-id", last.to_string());
        }
        if let Some(token) = server.token().map_err(Trouble::Fatal)? {
            request = request.bearer_auth(token);
        }
        let response = tokio::select! {
            () = stop.cancelled() => return Ok(Ended::Stop),
            sent = request.send() => sent
                .context("cannot reach the server")
                .map_err(Trouble::Passing)?,
        };
        let status = response.status();
        if !status.is_success() {
            let why = anyhow::anyhow!("{}", refusal(response).await);
            // The server or a proxy in front is away or busy; anything else will not mend.
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                Trouble::Passing(why)
            } else {
                Trouble::Fatal(why)
            });
        }

        let mut events = response.bytes_stream().eventsource();
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => None,
                next = events.next() => Some(next),
            };
            let first = match next {
                None => return self.written(state).map(|()| Ended::Stop),
                Some(None) => return self.written(state).map(|()| Ended::Reconnect),
                Some(Some(event)) => event,
            };
            // Everything already received is printed before the id is saved once: one
            // write and one save per burst, not per fact.
            let mut ready = vec![first];
            while let Some(Some(event)) = events.next().now_or_never() {
                ready.push(event);
            }
            for event in ready {
                let event = match event {
                    Ok(event) => event,
                    Err(err) => {
                        self.written(state)?;
                        return Err(Trouble::Passing(anyhow::anyhow!("the stream broke: {err}")));
                    }
                };
                if let Some(ended) = self.take(event, server, args.format)? {
                    self.written(state)?;
                    return Ok(ended);
                }
            }
            if self.out.flush().is_err() {
                return Ok(Ended::Stop);
            }
            state.save(self.last).map_err(Trouble::Fatal)?;
        }
    }

    /// Takes one event: prints a fact, heeds `retry:`, `reset` and `token-expired`.
    /// `Some` when the connection should end.
    fn take(
        &mut self,
        event: Event,
        server: &Server,
        format: Output,
    ) -> Result<Option<Ended>, Trouble> {
        if let Some(retry) = event.retry {
            self.delay = retry;
        }
        match event.event.as_str() {
            "reset" => {
                // The server follows a reset with the log as it now is; a consumer that
                // keeps derived state should know it missed or must forget facts.
                eprintln!("factlog tail: the server reset this stream: {}", event.data);
                return Ok(None);
            }
            "token-expired" if server.token_renews() => {
                return Ok(Some(Ended::Reconnect));
            }
            "token-expired" => {
                return Err(Trouble::Fatal(anyhow::anyhow!(
                    "the token expired: start again with a new one (with --state it continues where it stopped), or give --token-file"
                )));
            }
            _ => {}
        }
        if event.data.is_empty() {
            return Ok(None);
        }
        let record: serde_json::Value = serde_json::from_str(&event.data)
            .with_context(|| {
                format!(
                    "the server sent an event that is not a record: {}",
                    event.data
                )
            })
            .map_err(Trouble::Fatal)?;
        let id = record["id"]
            .as_i64()
            .context("the server sent a record without an id")
            .map_err(Trouble::Fatal)?;
        let written = match format {
            Output::Record => writeln!(self.out, "{}", event.data),
            Output::Fact => writeln!(self.out, "{}", record["fact"]),
        };
        if written.is_err() {
            return Ok(Some(Ended::Stop));
        }
        self.last = Some(id);
        Ok(None)
    }

    /// Flushes what was printed and saves its last id: before every end of a connection.
    fn written(&mut self, state: &mut State) -> Result<(), Trouble> {
        if self.out.flush().is_ok() {
            state.save(self.last).map_err(Trouble::Fatal)?;
        }
        Ok(())
    }
}

/// The state file: the last id printed, as a decimal line.
struct State {
    path: Option<PathBuf>,
    saved: Option<i64>,
}

impl State {
    fn load(path: Option<PathBuf>) -> anyhow::Result<Self> {
        let saved = match &path {
            None => None,
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) if text.trim().is_empty() => None,
                Ok(text) => Some(text.trim().parse::<i64>().with_context(|| {
                    format!("{} does not hold a fact id: {text:?}", path.display())
                })?),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot read {}", path.display()));
                }
            },
        };
        Ok(Self { path, saved })
    }

    /// Saves `last` if it moved: written beside the file, synced, renamed over it, so that
    /// the file always holds a whole id.
    fn save(&mut self, last: Option<i64>) -> anyhow::Result<()> {
        let (Some(path), Some(last)) = (&self.path, last) else {
            return Ok(());
        };
        if self.saved == Some(last) {
            return Ok(());
        }
        write_atomically(path, &format!("{last}\n"))
            .with_context(|| format!("cannot save the position in {}", path.display()))?;
        self.saved = Some(last);
        Ok(())
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}
