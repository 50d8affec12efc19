//! Many subscribers and publishers at once, and the facts they exchange.
//!
//! Every fact carries a run number, its publisher, its index and the time it was posted:
//! `{"r":7,"p":2,"n":41,"t":123456,"x":"…"}`. Subscribers check delivery from these (each
//! index exactly once, each publisher's facts in the order it posted them, ids strictly
//! increasing), so the same check works for factlog and for the peers. With topics (see
//! [`Spread`]), fact `n` goes to topic `n % topics` and subscriber `i` follows topic
//! `i % topics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::client::{Event, Poster, Subscription};
use crate::now_us;

/// The publisher number of the marker fact that tells a subscriber it has caught up.
const READY: u32 = u32::MAX;
/// Connections opened at once; more would overflow the listen backlog.
const CONNECTS_IN_FLIGHT: usize = 256;
/// Subscribers whose every delivery's latency is recorded (the others only count).
const LATENCY_SAMPLED_SUBSCRIBERS: usize = 64;
/// How facts and subscribers spread over topics. With none (`topics` 0) every fact is
/// posted to `/fact` and every stream reads `/events`, as the tutorial's clients do; with
/// `n`, fact `i` goes to the topic `t{i % n}` and subscriber `j` follows the topic
/// `t{j % n}` alone.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spread {
    /// How many topics; 0 for none.
    pub(crate) topics: u64,
    /// What the clients present, on a server that checks tokens.
    pub(crate) credentials: Credentials,
}

/// The tokens the generator's clients present (none by default).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Credentials {
    /// Streams present it as `?access_token=`, as a cross-site `EventSource` does.
    pub(crate) subscribe: Option<&'static str>,
    /// Posts present it as `Authorization: Bearer`.
    pub(crate) publish: Option<&'static str>,
}

impl Spread {
    /// Where fact `n` is posted.
    pub(crate) fn post_path(self, n: u64) -> String {
        match self.topics {
            0 => "/fact".to_owned(),
            topics => format!("/topics/t{}/facts", n % topics),
        }
    }

    /// What subscriber `index` reads.
    pub(crate) fn events_path(self, index: usize) -> String {
        let path = match self.topics {
            0 => "/events".to_owned(),
            topics => format!("/topics/t{}/events", index as u64 % topics),
        };
        match self.credentials.subscribe {
            Some(token) => format!("{path}?access_token={token}"),
            None => path,
        }
    }

    /// How many of the facts `0..count` subscriber `index` receives.
    pub(crate) fn expected(self, index: usize, count: u64) -> u64 {
        match self.topics {
            0 => count,
            topics => {
                let topic = index as u64 % topics;
                count / topics + u64::from(count % topics > topic)
            }
        }
    }

    /// Where fact `n` falls among the facts its subscribers receive.
    fn position(self, n: u64) -> usize {
        usize::try_from(n.checked_div(self.topics).unwrap_or(n)).unwrap_or(usize::MAX)
    }

    /// One fact for each topic a crowd of `size` follows: what every subscriber of it reads.
    fn marker_paths(self, size: usize) -> Vec<String> {
        match self.topics {
            0 => vec!["/fact".to_owned()],
            topics => (0..topics.min(size as u64))
                .map(|t| self.post_path(t))
                .collect(),
        }
    }
}

/// How long a subscriber that only counts waits between reads: 10 to 30 ms, different for
/// each, so that a thousand of them do not all wake at once and disturb the timed ones.
fn unsampled_read_pause(index: usize) -> Duration {
    Duration::from_millis(10 + (index as u64 * 7919) % 21)
}

pub(crate) fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// The `q` quantile of sorted microsecond figures, in milliseconds.
pub(crate) fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[index]) / 1e3
}

/// A fact of about `size` bytes, stamped with the time it is made.
pub(crate) fn fact_body(run: u32, publisher: u32, n: u64, size: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"r":{run},"p":{publisher},"n":{n},"t":{}"#, now_us());
    let room = size.saturating_sub(body.len() + 8);
    if room > 0 {
        body.push_str(r#","x":""#);
        body.extend(std::iter::repeat_n('x', room));
        body.push('"');
    }
    body.push('}');
    body.into_bytes()
}

/// What a subscriber reads out of a fact's data.
struct Mark {
    run: u32,
    publisher: u32,
    n: u64,
    t: u64,
}

fn parse_mark(data: &[u8]) -> Option<Mark> {
    let rest = data.strip_prefix(br#"{"r":"#)?;
    let (run, rest) = digits(rest)?;
    let (publisher, rest) = digits(rest.strip_prefix(br#","p":"#)?)?;
    let (n, rest) = digits(rest.strip_prefix(br#","n":"#)?)?;
    let (t, _) = digits(rest.strip_prefix(br#","t":"#)?)?;
    Some(Mark {
        run: u32::try_from(run).ok()?,
        publisher: u32::try_from(publisher).ok()?,
        n,
        t,
    })
}

fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let value = std::str::from_utf8(&s[..len]).ok()?.parse().ok()?;
    Some((value, &s[len..]))
}

/// An event id as a comparable pair: `17` is (17, 0); nchan's `1700000000:3` is
/// (1700000000, 3).
pub(crate) fn parse_id(id: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(id).ok()?;
    match text.split_once(':') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => Some((text.parse().ok()?, 0)),
    }
}

/// Posts facts `0..count` from `publishers` connections, back to back or at `rate` per
/// second; returns how many were refused.
pub(crate) async fn publish(
    addrs: &[SocketAddr],
    run: u32,
    count: u64,
    publishers: usize,
    size: usize,
    rate: u64,
    spread: Spread,
) -> anyhow::Result<u64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for p in 0..publishers {
        let mut poster = Poster::connect(addrs[p % addrs.len()], p)
            .await?
            .presenting(spread.credentials.publish);
        let next = Arc::clone(&next);
        tasks.spawn(async move {
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    break;
                }
                if rate > 0 {
                    let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
                    tokio::time::sleep_until(due).await;
                }
                let status = poster
                    .post(&spread.post_path(n), &fact_body(run, p as u32, n, size))
                    .await?;
                if !(200..300).contains(&status) {
                    errors += 1;
                }
            }
            anyhow::Ok(errors)
        });
    }
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        errors += done??;
    }
    Ok(errors)
}

/// What the subscribers of one crowd share with the coordinator.
pub(crate) struct Shared {
    run: u32,
    spread: Spread,
    pub(crate) measuring: AtomicBool,
    connected: AtomicUsize,
    ready: AtomicUsize,
    done: AtomicUsize,
}

/// One subscriber's account.
#[derive(Default)]
pub(crate) struct Account {
    /// How many facts this subscriber is to receive.
    expected: u64,
    seen: Vec<bool>,
    pub(crate) distinct: u64,
    pub(crate) duplicated: u64,
    pub(crate) out_of_order: u64,
    last_n: Vec<Option<u64>>,
    last_id: Option<(u64, u64)>,
    ready: bool,
    sampled: bool,
    pub(crate) latencies: Vec<u32>,
    pub(crate) last_at: Option<Instant>,
    pub(crate) error: Option<String>,
}

impl Account {
    fn on_event(&mut self, event: Event<'_>, shared: &Shared) {
        let Some(mark) = parse_mark(event.data) else {
            return;
        };
        if mark.run != shared.run {
            return; // a fact of an earlier run, still in a peer's buffer
        }
        if mark.publisher == READY {
            if !self.ready {
                self.ready = true;
                shared.ready.fetch_add(1, Ordering::AcqRel);
            }
            return;
        }
        if let Some(id) = event.id.and_then(parse_id) {
            if self.last_id.is_some_and(|last| id <= last) {
                self.out_of_order += 1;
            }
            self.last_id = Some(id);
        }
        let Some(seen) = self.seen.get_mut(shared.spread.position(mark.n)) else {
            return;
        };
        if *seen {
            self.duplicated += 1;
            return;
        }
        *seen = true;
        self.distinct += 1;
        let p = mark.publisher as usize;
        if p >= self.last_n.len() {
            self.last_n.resize(p + 1, None);
        }
        if self.last_n[p].is_some_and(|last| mark.n <= last) {
            self.out_of_order += 1;
        }
        self.last_n[p] = Some(mark.n);
        if self.sampled && shared.measuring.load(Ordering::Relaxed) {
            self.latencies
                .push(u32::try_from(now_us().saturating_sub(mark.t)).unwrap_or(u32::MAX));
        }
        if self.distinct == self.expected {
            self.last_at = Some(Instant::now());
            shared.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Many subscribers on one server, each in its own task, reading until told to stop.
pub(crate) struct Crowd {
    pub(crate) shared: Arc<Shared>,
    size: usize,
    stop: watch::Sender<bool>,
    tasks: JoinSet<Account>,
}

impl Crowd {
    /// Opens `size` streams from the start of the log, spread over `addrs` in turn and over
    /// the topics of `spread`, each expecting its part of `count` facts.
    pub(crate) async fn open(
        addrs: &[SocketAddr],
        run: u32,
        size: usize,
        count: u64,
        spread: Spread,
    ) -> anyhow::Result<Self> {
        let shared = Arc::new(Shared {
            run,
            spread,
            measuring: AtomicBool::new(false),
            connected: AtomicUsize::new(0),
            ready: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        });
        let (stop, stopped) = watch::channel(false);
        let gate = Arc::new(Semaphore::new(CONNECTS_IN_FLIGHT));
        let stride = (size / LATENCY_SAMPLED_SUBSCRIBERS).max(1);
        let mut tasks = JoinSet::new();
        for index in 0..size {
            let shared = Arc::clone(&shared);
            let gate = Arc::clone(&gate);
            let mut stopped = stopped.clone();
            let addr = addrs[index % addrs.len()];
            let expected = spread.expected(index, count);
            let path = spread.events_path(index);
            tasks.spawn(async move {
                let mut account = Account {
                    expected,
                    seen: vec![false; usize::try_from(expected).unwrap_or(0)],
                    sampled: index % stride == 0,
                    ..Account::default()
                };
                if expected == 0 {
                    shared.done.fetch_add(1, Ordering::AcqRel);
                }
                let pause = unsampled_read_pause(index);
                let opened = {
                    let _permit = gate.acquire().await;
                    Subscription::open(addr, index, &path, None, 16 * 1024).await
                };
                let mut sub = match opened {
                    Ok(sub) => sub,
                    Err(err) => {
                        account.error = Some(format!("open: {err}"));
                        shared.connected.fetch_add(1, Ordering::AcqRel);
                        return account;
                    }
                };
                shared.connected.fetch_add(1, Ordering::AcqRel);
                sub.buffered_events(|e| account.on_event(e, &shared));
                loop {
                    tokio::select! {
                        read = sub.read_events(|e| account.on_event(e, &shared)) => match read {
                            Ok(true) if account.sampled => {}
                            Ok(true) => {
                                // The subscribers that only count read in bulk: one read
                                // per pause instead of one per frame keeps the generator's
                                // own cost per delivery well below the server's. The
                                // server writes as it always does; its socket buffers
                                // hold what arrives meanwhile.
                                tokio::select! {
                                    () = tokio::time::sleep(pause) => {}
                                    _ = stopped.changed() => break,
                                }
                            }
                            Ok(false) => {
                                account.error = Some("the server ended the stream".into());
                                break;
                            }
                            Err(err) => {
                                account.error = Some(format!("read: {err}"));
                                break;
                            }
                        },
                        _ = stopped.changed() => break,
                    }
                }
                account
            });
        }
        let crowd = Self {
            shared,
            size,
            stop,
            tasks,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while crowd.shared.connected.load(Ordering::Acquire) < size {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {size} streams opened within 120 s",
                    crowd.shared.connected.load(Ordering::Acquire)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(crowd)
    }

    /// Posts the ready marker until every stream has read it: from then on each stream is
    /// live, past whatever the server held before.
    pub(crate) async fn catch_up(&self, addr: SocketAddr, run: u32) -> anyhow::Result<()> {
        let mut poster = Poster::connect(addr, 0)
            .await?
            .presenting(self.shared.spread.credentials.publish);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut next_marker = Instant::now();
        while self.shared.ready.load(Ordering::Acquire) < self.size {
            if Instant::now() >= next_marker {
                for path in self.shared.spread.marker_paths(self.size) {
                    poster.post(&path, &fact_body(run, READY, 0, 0)).await?;
                }
                next_marker = Instant::now() + Duration::from_secs(2);
            }
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} streams caught up within 120 s",
                    self.shared.ready.load(Ordering::Acquire),
                    self.size
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Waits until every stream has all its facts, or `deadline`.
    pub(crate) async fn wait_all_done(&self, deadline: Instant) {
        while self.shared.done.load(Ordering::Acquire) < self.size && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Closes every stream at once and returns their accounts.
    pub(crate) async fn close(mut self) -> Vec<Account> {
        let _ = self.stop.send(true);
        let mut accounts = Vec::with_capacity(self.size);
        while let Some(done) = self.tasks.join_next().await {
            if let Ok(account) = done {
                accounts.push(account);
            }
        }
        accounts
    }
}
