// factlog.js: follow a factlog log from a browser page. One ES module, no dependencies, no
// build step: import it from the server (`/factlog.js`) or copy this file next to your page.
//
//   import { follow } from "http://127.0.0.1:3001/factlog.js";
//   const log = follow("http://127.0.0.1:3001", {
//     topics: ["orders.eu", "chat.lobby"],    // none: every topic
//     tail: 100,                              // or `after: id`; neither: the whole log
//     token: async () => (await fetch("/token")).text(),  // leave out on an open server
//     onFact: (record) => show(record),       // {id, topic, event, fact, created_at}
//     onReset: (info) => clearShown(),        // what follows rebuilds the view
//     onState: (state) => { status.textContent = state; },
//   });
//   // later: log.close(); log.lastId is the newest id seen.
//
// Every fact arrives once, in id order, across network drops, server restarts, expired
// tokens and tabs closing. Options of follow(baseUrl, options):
// - topics: names to follow (`?topic=a&topic=b`); empty or absent follows every topic.
// - events: event types to keep (`?event=`); a fact posted without one is "message".
// - after: start after this id; tail: start with the newest n; neither: the whole log.
// - format: "record" (default: onFact gets the whole record, topic included) or "fact"
//   (the server sends the bare fact; onFact gets {id, topic: null, event, fact}).
// - token(reason): returns the token to present (a string, or null for none), or a
//   promise of it. Asked with reason null before the first connection, then again with
//   {status, error} when the server refuses the token (401, 403), or {expired: true, ...}
//   when it ends the stream with `token-expired`; the stream then resumes right after the
//   last id seen.
// - onFact(record, event): each fact. onEvent(event): every event the stream carries,
//   facts of any type and the server's own (`reset`, `token-expired`, ones to come):
//   {type, data, id, lastEventId}, where id is null for events that are not facts.
// - onReset(info): the server said `reset`: {reason: "unknown" | "expired", first_id,
//   last_id}. Clear what you show; the facts that follow rebuild it (with `tail`, the
//   newest `tail` facts again, so a wiped and refilled log is not replayed whole).
// - onState(state): "connecting", "live", "reconnecting", "needs token" or "closed".
// - share: true (default) shares one stream among the tabs of this origin (below).
//
// One stream per browser. Tabs of the same origin that follow the same base URL, topics,
// event types and format share one server stream: the first takes a Web Lock named after
// them and streams, handing every event and state to the others over a BroadcastChannel
// of the same name. A tab that opens later catches up on its own with `GET /facts` pages
// (with its own token) and then takes what the holder hands on. When the holder closes,
// another tab gets the lock and resumes after the last id it has itself seen. Every tab
// drops ids it has already seen, so no tab sees a gap or a duplicate. Tokens: the holder
// streams, and each follower catches up, with its own token; when a tab needs a new one
// and its own callback has not answered within a second, the other tabs are asked too
// (each offers its own token if the asker has not tried it, or else asks its callback) and
// the first answer is used. Tabs of one origin run the same application, so nothing is shared that a tab could
// not read for itself. Where Web Locks or BroadcastChannel are missing (or with
// `share: false`), each tab streams on its own. `log.role` says "holder", "follower" or
// "alone".

/** A WHATWG `text/event-stream` parser: feed it text or bytes in chunks of any size. */
export class SseParser {
  constructor() {
    this.lastEventId = "";
    this.retry = null;      // the newest `retry:` hint, in milliseconds
    this.data = [];
    this.type = "";
    this.id = null;         // the `id:` of the event being read, if it has one
    this.partial = "";      // the unfinished line
    this.cr = false;        // the last chunk ended with CR: an LF next is the same break
    this.start = true;
    this.decoder = null;
  }

  /** Takes the next chunk (a string, or bytes as UTF-8); returns the events it completes. */
  feed(chunk) {
    let text = typeof chunk === "string"
      ? chunk : (this.decoder ??= new TextDecoder()).decode(chunk, { stream: true });
    if (this.start && text) {
      this.start = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.cr && text) {
      this.cr = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    const events = [];
    const breaks = /\r\n|\r|\n/g;
    let from = 0, match;
    while ((match = breaks.exec(text))) {
      const line = this.partial + text.slice(from, match.index);
      this.partial = "";
      from = match.index + match[0].length;
      if (match[0] === "\r" && from === text.length) this.cr = true;
      this.line(line, events);
    }
    this.partial += text.slice(from);
    return events;
  }

  line(line, events) {
    if (line === "") {
      const id = this.id;
      this.id = null;
      if (this.data.length) {
        events.push({ type: this.type || "message", data: this.data.join("\n"),
                      id, lastEventId: this.lastEventId });
      }
      this.data = [];
      this.type = "";
      return;
    }
    if (line[0] === ":") return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.type = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = this.id = value;
    else if (field === "retry" && /^[0-9]+$/.test(value)) this.retry = Number(value);
  }
}

const FACT_PAGE = 1000;

/** JSON data, or the text itself where it is not JSON (a server other than factlog's). */
function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/** Follows a log at `baseUrl` (see the top of this file); returns {close(), lastId, role}. */
export function follow(baseUrl, options = {}) {
  const subscription = new Subscription(baseUrl, options);
  subscription.start();
  return subscription;
}

class Subscription {
  constructor(baseUrl, options) {
    this.base = new URL(baseUrl, globalThis.location?.href).href.replace(/\/+$/, "");
    this.o = { format: "record", share: true, ...options };
    this.topics = [...new Set(this.o.topics || [])].sort();
    this.events = [...new Set(this.o.events || [])].sort();
    this.lastId = null;       // the newest id this tab has seen; null before the first
    this.role = "alone";
    this.state = null;
    this.closed = false;
    this.retryMs = 2000;
    this.token = undefined;   // undefined until asked
    this.wakers = new Set();
    this.asks = new Map();    // this tab's requests for a token to the other tabs, by tag
  }

  start() {
    const shareable = this.o.share && globalThis.navigator?.locks
      && typeof BroadcastChannel === "function";
    if (!shareable) return void this.stream();
    const name = `factlog ${JSON.stringify([this.base, this.topics, this.events, this.o.format])}`;
    this.channel = new BroadcastChannel(name);
    this.channel.onmessage = (message) => this.receive(message.data);
    this.lockAbort = new AbortController();
    navigator.locks.request(name, { ifAvailable: true }, (lock) => {
      if (lock) return this.hold();
      this.role = "follower";
      this.caughtUp = this.catchUp();
      this.channel.postMessage({ t: "hello" });
      navigator.locks.request(name, { signal: this.lockAbort.signal }, () => this.hold())
        .catch(() => {});     // aborted by close()
    });
  }

  /** Holds the lock, streaming for every tab, until this tab closes or close() is called. */
  async hold() {
    if (this.closed) return;
    await this.caughtUp;
    this.role = "holder";
    await this.stream();
  }

  close() {
    this.closed = true;
    this.controller?.abort();
    this.lockAbort?.abort();
    this.channel?.close();
    for (const wake of this.wakers) wake();
    this.setState("closed");
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    if (this.role === "holder") this.post({ t: "state", state });
    this.o.onState?.(state);
  }

  post(message) {
    if (!this.closed && this.channel) this.channel.postMessage(message);
  }

  /** Waits `ms`, or less if the subscription is closed meanwhile. */
  pause(ms) {
    return new Promise((resolve) => {
      const wake = () => { clearTimeout(timer); this.wakers.delete(wake); resolve(); };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  /** Every event, from this tab's stream or catch-up or another tab's stream, comes here. */
  handle(ev) {
    if (this.closed) return;
    if (ev.id !== null) {
      const id = Number(ev.id);
      if (this.lastId !== null && id <= this.lastId) return;   // seen: drop
      this.lastId = id;
      this.o.onEvent?.(ev);
      const data = parse(ev.data);
      const record = this.o.format === "record" ? data
        : { id, topic: null, event: ev.type === "message" ? null : ev.type, fact: data };
      this.o.onFact?.(record, ev);
      return;
    }
    this.o.onEvent?.(ev);
    if (ev.type === "reset") {
      this.lastId = 0;        // the rebuilt log follows, whatever its ids
      this.o.onReset?.(parse(ev.data));
    } else if (ev.type === "token-expired") {
      const last = parse(ev.data)?.last_id;
      if (Number.isInteger(last) && (this.lastId === null || last > this.lastId)) this.lastId = last;
    }
  }

  /** Messages of the other tabs following the same thing. */
  receive(message) {
    const holding = this.role === "holder";
    if (message.t === "events" && !holding) {
      if (this.buffer) this.buffer.push(...message.events);
      else for (const ev of message.events) this.handle(ev);
    } else if (message.t === "state" && !holding) {
      this.holderState = message.state;
      if (!this.buffer) this.setState(message.state);
    } else if (message.t === "hello") {
      // A tab that just opened missed what was said before: the holder's state, and any
      // request for a token still unanswered.
      if (holding) this.post({ t: "state", state: this.state });
      for (const ask of this.asks.values()) if (ask.sent) this.post(ask.message);
    } else if (message.t === "need-token") {
      // A token of this tab's own that the asking tab has not tried goes at once; only
      // otherwise is this tab's callback asked (on the live page: its prompt).
      const answer = (token) => { if (token) this.post({ t: "token", token, ask: message.ask }); };
      if (this.token && this.token !== message.refused) answer(this.token);
      else if (this.o.token) {
        Promise.resolve().then(() => this.o.token(message.reason)).then(answer, () => {});
      }
    } else if (message.t === "token") {
      this.asks.get(message.ask)?.resolve(message.token);
    }
  }

  /** Asks for a token: this tab's callback, and after a second the other tabs too. */
  async askToken(reason) {
    if (!this.o.token) return null;
    if (reason) this.setState("needs token");
    // A callback that fails (its backend is down) counts as no token: the refusal that
    // follows asks again, after the retry delay.
    const own = Promise.resolve().then(() => this.o.token(reason)).catch(() => null);
    if (!reason || !this.channel) return own;
    const ask = `${Date.now()}-${Math.random()}`;
    const message = { t: "need-token", reason, refused: this.token, ask };
    let timer;
    const others = new Promise((resolve) => {
      const pending = { resolve, message, sent: false };
      this.asks.set(ask, pending);
      timer = setTimeout(() => { pending.sent = true; this.post(message); }, 1000);
    });
    try {
      return await Promise.race([own, others]);
    } finally {
      clearTimeout(timer);
      this.asks.delete(ask);
    }
  }

  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : extra;
  }

  query(extra) {
    const query = new URLSearchParams(extra);
    for (const topic of this.topics) query.append("topic", topic);
    return query;
  }

  /** The holder's (or a lone tab's) loop: stream, and reconnect until closed. */
  async stream() {
    let connected = false;
    while (!this.closed) {
      this.setState(connected ? "reconnecting" : "connecting");
      const query = this.query(this.o.format === "record" ? { format: "record" } : {});
      for (const event of this.events) query.append("event", event);
      this.controller = new AbortController();
      let next = "retry";
      try {
        if (this.token === undefined) this.token = await this.askToken(null);
        const headers = this.headers({ Accept: "text/event-stream" });
        if (this.lastId !== null) headers["Last-Event-ID"] = String(this.lastId);
        else if (this.o.after != null) query.set("after", this.o.after);
        else if (this.o.tail != null) query.set("tail", this.o.tail);
        const response = await fetch(`${this.base}/events?${query}`,
          { headers, cache: "no-store", signal: this.controller.signal });
        if (response.status === 401 || response.status === 403) {
          next = await this.refused(response);
        } else if (response.ok && response.body) {
          connected = true;
          this.setState("live");
          next = await this.read(response.body);
        } else if (response.status >= 400 && response.status < 500 && response.status !== 429) {
          // A request this server will never accept (a bad topic name, say): give up.
          const body = await response.json().catch(() => ({}));
          this.o.onError?.(new Error(`${response.status}: ${body.error || response.statusText}`));
          this.close();
        }
      } catch (err) {
        // The network, or close(): reconnect below unless closed.
      }
      if (this.closed) break;
      if (next === "retry") {
        this.setState("reconnecting");
        await this.pause(this.retryMs);
      } else if (next === "token") {
        const reason = { status: null, error: "the token has expired", expired: true };
        this.token = await this.askToken(reason);
      }
    }
  }

  /** A refused read: asks for another token; retries at once if it differs. */
  async refused(response) {
    const body = await response.json().catch(() => ({}));
    const refused = this.token;
    this.token = await this.askToken({ status: response.status, error: body.error || "" });
    return this.token && this.token !== refused ? "now" : "retry";
  }

  /** Reads one stream until it ends; says what to do next. */
  async read(body) {
    const parser = new SseParser();
    const reader = body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return "retry";
      const events = parser.feed(value);
      if (parser.retry !== null) this.retryMs = parser.retry;
      if (!events.length) continue;
      // A stream that ends with `token-expired`, or that is started over after a reset, is
      // handed on up to that event only: what follows it is not what this tab will show.
      const stop = events.findIndex((ev) => ev.id === null
        && (ev.type === "token-expired" || (ev.type === "reset" && this.o.tail != null)));
      const passed = stop < 0 ? events : events.slice(0, stop + 1);
      this.post({ t: "events", events: passed });
      for (const ev of passed) this.handle(ev);
      if (stop < 0) continue;
      reader.cancel().catch(() => {});
      if (passed[stop].type === "token-expired") return "token";
      // Start over from the newest facts rather than replaying the rebuilt log.
      this.lastId = null;
      return "now";
    }
  }

  /** A follower's catch-up from its start position to the holder's stream, by pages. */
  async catchUp() {
    this.buffer = [];
    this.setState("connecting");
    while (!this.closed) {
      try {
        if (this.token === undefined) this.token = await this.askToken(null);
        await this.pages();
        break;
      } catch (err) {
        if (err.status === 401 || err.status === 403) {
          const refused = this.token;
          this.token = await this.askToken({ status: err.status, error: err.message });
          if (this.token && this.token !== refused) continue;
        }
        await this.pause(this.retryMs);
      }
    }
    const buffered = this.buffer;
    this.buffer = null;
    for (const ev of buffered) this.handle(ev);
    if (this.holderState) this.setState(this.holderState);
  }

  async page(query) {
    const response = await fetch(`${this.base}/facts?${query}`, { headers: this.headers() });
    const body = await response.json().catch(() => ({}));
    if (response.ok || response.status === 410) return { status: response.status, ...body };
    throw Object.assign(new Error(body.error || response.statusText), { status: response.status });
  }

  /** The facts after this tab's position (or its newest `tail`), as events. */
  async pages() {
    let after = this.lastId ?? this.o.after ?? null;
    if (after === null && this.o.tail != null) {
      let before = "9223372036854775807", newest = [];
      while (newest.length < this.o.tail && before !== null) {
        const limit = Math.min(FACT_PAGE, Math.max(1, this.o.tail - newest.length));
        const page = await this.page(this.query({ before, limit }));
        newest = this.kept(page.facts).concat(newest);
        before = page.prev;
      }
      for (const record of newest.slice(-this.o.tail || newest.length)) this.handle(this.event(record));
      after = this.lastId ?? 0;
    }
    after ??= 0;
    for (let first = true; ; first = false) {
      const page = await this.page(this.query({ after, limit: FACT_PAGE }));
      if (page.status === 410) {
        this.handle({ type: "reset", id: null, lastEventId: "", data: JSON.stringify(
          { reason: "expired", first_id: page.first_id ?? null, last_id: null }) });
        after = page.first_id ? page.first_id - 1 : 0;
        continue;
      }
      if (first && after > 0 && !page.facts.length) {
        const status = await (await fetch(`${this.base}/status`)).json();
        if (status.last_id < after) {
          this.handle({ type: "reset", id: null, lastEventId: "", data: JSON.stringify(
            { reason: "unknown", last_id: status.last_id }) });
          after = 0;
          continue;
        }
      }
      for (const record of this.kept(page.facts)) this.handle(this.event(record));
      if (page.next === null) return;
      after = page.next;
    }
  }

  kept(records) {
    return this.events.length
      ? records.filter((r) => this.events.includes(r.event ?? "message")) : records;
  }

  /** A record of `GET /facts` as the event its stream frame would have been. */
  event(record) {
    const data = JSON.stringify(this.o.format === "record" ? record : record.fact);
    const id = String(record.id);
    return { type: record.event ?? "message", data, id, lastEventId: id };
  }
}
