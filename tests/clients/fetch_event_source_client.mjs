// Reads a factlog stream with @microsoft/fetch-event-source, as a browser application
// would, for SECONDS (so that several keep-alive comments go by), then prints every
// message it dispatched as JSON. Exits non-zero if a message's data is not JSON: what an
// empty message for a `retry:` line or a comment would make an application do.
//
// Usage: node fetch_event_source_client.mjs URL SECONDS, with the package installed under
// $CLIENTS_DIR/node_modules.

import { createRequire } from "node:module";

// The library is written for browsers; these are the only globals it touches in Node.
globalThis.window = globalThis;
globalThis.document = { hidden: false, addEventListener() {}, removeEventListener() {} };

const require = createRequire(`${process.env.CLIENTS_DIR}/`);
const { fetchEventSource } = require("@microsoft/fetch-event-source");
const [url, seconds] = [process.argv[2], Number(process.argv[3])];
const events = [];
const failures = [];
const controller = new AbortController();
fetchEventSource(url, {
  signal: controller.signal,
  openWhenHidden: true,
  onmessage(msg) {
    events.push({ event: msg.event, id: msg.id, data: msg.data });
    try {
      JSON.parse(msg.data);
    } catch {
      failures.push(`message ${events.length} is not JSON: ${JSON.stringify(msg)}`);
    }
  },
  onerror(err) {
    failures.push(`stream error: ${err}`);
    throw err;
  },
}).catch(() => {});
await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
controller.abort();
console.log(JSON.stringify(events));
if (failures.length) {
  console.error(failures[0]);
  process.exit(1);
}
