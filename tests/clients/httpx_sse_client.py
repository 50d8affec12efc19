"""Reads a factlog stream with httpx-sse, as a Python application would, for SECONDS (so
that several keep-alive comments go by), then prints every event it dispatched as JSON.
Exits non-zero if an event's data is not JSON: what an empty event for a `retry:` line or
a comment would make an application do.

Usage: httpx_sse_client.py URL SECONDS
"""

import json
import os
import sys
import threading

import httpx
from httpx_sse import connect_sse

url, seconds = sys.argv[1], float(sys.argv[2])
events = []
failure = []


def read():
    with httpx.Client(timeout=30) as client:
        with connect_sse(client, "GET", url) as source:
            for sse in source.iter_sse():
                events.append({"event": sse.event, "id": sse.id, "data": sse.data})
                try:
                    json.loads(sse.data)
                except ValueError:
                    failure.append(f"event {len(events)} is not JSON: {events[-1]}")


threading.Thread(target=read, daemon=True).start()
threading.Event().wait(seconds)
print(json.dumps(events), flush=True)
if failure:
    print(failure[0], file=sys.stderr, flush=True)
os._exit(1 if failure else 0)
