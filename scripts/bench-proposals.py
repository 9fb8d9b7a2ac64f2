#!/usr/bin/env python3
"""From an alert to the proposal on a waiting *my work* page: the figure of issue 17.

Starts the release `steady serve` on a fresh SQLite file with one runbook that an alert
proposes (with a dry run gathering its facts), then delivers 100 alerts one after another to
`POST /api/v1/hooks/json` while a responder's *my work* waits on `GET /api/v1/events` (the
Server-Sent Events stream the page follows). For each alert it measures:

- hook → SSE: from sending the hook request to the `run.proposed` event arriving on the
  stream the page listens to;
- hook → page: that, plus fetching `/work` as the page does on an event, until the page lists
  the proposal;
- hook → facts: until the proposal's dry run has finished (its read-only step measured).

By default the responder dismisses each proposal once measured, so that *my work* waits with
the one proposal that just arrived, as on a normal night; `--storm` keeps them all open, so
that the page fills up as in an alert storm (it shows the ten newest).

Prints p50, p99 and max of each, in milliseconds. Standard library only.

    cargo build --release && python3 scripts/bench-proposals.py [--alerts 100] [--storm]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "steady")

RUNBOOK = """name: bench-failover
lock: "pg/{{ params.cluster }}"
params:
  cluster: { type: string, required: true, pattern: "^[a-z0-9-]+$" }
roles:
  approver: {}
triggers:
  - source: json
    when: "alert.alertname == 'PostgresPrimaryDown'"
    params: { cluster: "{{ alert.cluster }}" }
    then: dry-run
steps:
  - id: lag
    run: ["echo", "0"]
    read_only: true
    timeout: 5s
  - id: go
    approval: { role: approver }
  - id: promote
    run: ["echo", "promoted"]
    timeout: 5s
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(db, *args, stdin=None):
    done = subprocess.run([BINARY, *args, "--db", db], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"steady {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def token(db, user):
    out = cli(db, "token", "create", user, "--label", "bench")
    # "token ID for `USER`: SECRET  (shown once)"
    return out.split(": ", 1)[1].split()[0]


def request(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, response.getheader("set-cookie"), data


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=100)
    parser.add_argument("--storm", action="store_true", help="keep every proposal open")
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} is missing: run cargo build --release first")
    work = tempfile.mkdtemp(prefix="steady-bench-proposals-")
    os.makedirs(os.path.join(work, "runbooks"))
    with open(os.path.join(work, "runbooks", "bench-failover.yaml"), "w") as f:
        f.write(RUNBOOK)
    db = f"sqlite://{work}/steady.db"
    port = free_port()
    env = dict(os.environ, STEADY_ADMIN_PASSWORD="bench-admin-password", STEADY_LOG="warn")
    server = subprocess.Popen(
        [BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--db", db,
         "--runbooks", os.path.join(work, "runbooks")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        cli(db, "user", "add", "alerts", "--role", "trigger")
        cli(db, "user", "add", "rita", "--role", "responder", "--password-stdin",
            stdin="rita-password-long\n")
        trigger = token(db, "alerts")
        rita = token(db, "rita")
        status, cookie, _ = request(
            port, "POST", "/api/v1/session",
            json.dumps({"name": "rita", "password": "rita-password-long"}),
            {"content-type": "application/json"})
        assert status == 200, status
        session = cookie.split(";", 1)[0]

        # The stream my work follows, read on its own thread.
        arrived = {}
        finished = {}
        ready = threading.Event()

        def follow():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            conn.request("GET", "/api/v1/events", headers={"authorization": f"Bearer {rita}"})
            response = conn.getresponse()
            ready.set()
            for line in response:
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                if event.get("action") == "run.proposed":
                    arrived.setdefault(event["run_id"], time.perf_counter())
                elif event.get("action") == "run.finished":
                    finished.setdefault(event["run_id"], time.perf_counter())

        threading.Thread(target=follow, daemon=True).start()
        ready.wait(10)
        time.sleep(0.3)

        to_sse, to_page, to_facts = [], [], []
        for n in range(args.alerts):
            body = json.dumps({"alertname": "PostgresPrimaryDown", "cluster": f"c{n}"})
            started = time.perf_counter()
            status, _, answer = request(
                port, "POST", "/api/v1/hooks/json", body,
                {"authorization": f"Bearer {trigger}", "content-type": "application/json"})
            assert status == 200, (status, answer)
            outcome = json.loads(answer)["outcomes"][0]
            assert outcome["outcome"] == "proposed", outcome
            run, dry_run = outcome["run_id"], outcome["dry_run_id"]
            while run not in arrived:
                time.sleep(0.0005)
            to_sse.append(arrived[run] - started)
            # The page fetches itself again on an event, and shows the proposal.
            status, _, page = request(port, "GET", "/work", headers={"cookie": session})
            assert status == 200 and run[:13].encode() in page, status
            to_page.append(time.perf_counter() - started)
            deadline = time.perf_counter() + 10
            while dry_run not in finished and time.perf_counter() < deadline:
                time.sleep(0.001)
            to_facts.append(finished.get(dry_run, deadline) - started)
            if not args.storm:
                status, _, answer = request(
                    port, "POST", f"/api/v1/runs/{run}/dismiss",
                    json.dumps({"reason": "measured"}),
                    {"authorization": f"Bearer {rita}", "content-type": "application/json"})
                assert status == 200, (status, answer)

        kept = "all kept open (storm)" if args.storm else "each dismissed once measured"
        print(f"{args.alerts} alerts, each proposing bench-failover with a dry run, {kept} (SQLite, release build)")
        for name, values in [("hook → SSE event", to_sse), ("hook → my work page", to_page),
                             ("hook → facts gathered", to_facts)]:
            ms = [v * 1000 for v in values]
            print(f"  {name:24} p50 {statistics.median(ms):7.1f} ms   p99 {percentile(ms, 99):7.1f} ms   max {max(ms):7.1f} ms")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
