//! Load: 50 concurrent API clients for 60 s against one node (SQLite) and against three nodes
//! (PostgreSQL). 40 of them each start runs, wait for the gate, approve it as a second person
//! and read the run until it finishes; 10 follow every run's events over SSE. Reported:
//! requests, errors (any non-2xx answer or failed connection), latency percentiles per kind of
//! request, and whether every event of the period reached every stream, in order, once.
//!
//! Run with `cargo bench --bench load` (both), or `cargo bench --bench load -- three`;
//! `STEADY_LOAD_SECONDS` shortens the period.

// A benchmark either measures or stops: a failed unwrap ends it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use steady_testkit::cluster::Cluster;

const WRITERS: usize = 40;
const STREAMS: usize = 10;

const GATED: &str = r#"
name: gated
roles:
  approver: { description: Signs the change off }
steps:
  - id: before
    check: "1 == 1"
  - id: go
    approval: { role: approver }
  - id: after
    check: "steps.go.approved_by | length == 1"
"#;

/// Latencies in milliseconds by kind of request, and errors.
#[derive(Default)]
struct Record {
    latencies: BTreeMap<&'static str, Vec<f64>>,
    errors: Vec<String>,
}

fn main() {
    let wanted: Vec<String> =
        std::env::args().skip(1).filter(|arg| !arg.starts_with('-')).collect();
    let seconds =
        std::env::var("STEADY_LOAD_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_steady"));
    if wanted.is_empty() || wanted.iter().any(|w| w == "one") {
        let cluster = Cluster::start_on(
            binary,
            "sqlite://steady.db".to_owned(),
            "load-one",
            1,
            Duration::from_secs(10),
            &[("gated.yaml", GATED)],
            &[],
        );
        runtime.block_on(load("one node, SQLite", &cluster, seconds));
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == "three") {
        let cluster = Cluster::start(
            binary,
            "load-three",
            3,
            Duration::from_secs(10),
            &[("gated.yaml", GATED)],
        );
        runtime.block_on(load("three nodes, PostgreSQL", &cluster, seconds));
    }
}

async fn load(label: &str, cluster: &Cluster, seconds: u64) {
    let mut tokens = Vec::new();
    for index in 0..WRITERS {
        tokens.push(cluster.person(&format!("user{index:02}"), "responder"));
    }
    let auditor = cluster.person("audrey", "auditor");
    let start_seq = audit_after(cluster, &auditor, 0).await.last().map_or(0, |(seq, _)| *seq);
    let record = Arc::new(Mutex::new(Record::default()));
    let until = Instant::now() + Duration::from_secs(seconds);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let nodes: Vec<String> = cluster.nodes.iter().flatten().map(|node| node.url("")).collect();

    let mut streams = Vec::new();
    for index in 0..STREAMS {
        let url = format!("{}/api/v1/events?after={start_seq}", nodes[index % nodes.len()]);
        streams.push(tokio::spawn(follow(client.clone(), url, auditor.clone(), until)));
    }
    let mut writers = Vec::new();
    for index in 0..WRITERS {
        let me = tokens[index].clone();
        let partner_index = (index + 1) % WRITERS;
        let partner = (format!("user{partner_index:02}"), tokens[partner_index].clone());
        let node = nodes[index % nodes.len()].clone();
        // The approver answers through another node than the one the run started on.
        let other = nodes[(index + 1) % nodes.len()].clone();
        writers.push(tokio::spawn(write_loop(
            client.clone(),
            [node, other],
            me,
            partner,
            until,
            record.clone(),
        )));
    }
    let mut runs = 0;
    for writer in writers {
        runs += writer.await.unwrap();
    }
    let mut streamed = Vec::new();
    for stream in streams {
        streamed.push(stream.await.unwrap());
    }

    // Every event about a run, from the start to the last one a stream saw, reached every
    // stream exactly once and in order.
    let expected: Vec<i64> = audit_after(cluster, &auditor, start_seq)
        .await
        .into_iter()
        .filter(|(_, about_a_run)| *about_a_run)
        .map(|(seq, _)| seq)
        .collect();
    let mut lost = 0;
    for (index, seen) in streamed.iter().enumerate() {
        let last = seen.last().copied().unwrap_or(start_seq);
        let due: Vec<i64> = expected.iter().copied().filter(|seq| *seq <= last).collect();
        if *seen != due {
            lost += 1;
            eprintln!(
                "stream {index}: saw {} events, {} were due up to seq {last}",
                seen.len(),
                due.len()
            );
        }
    }

    let record = record.lock().unwrap();
    let requests: usize = record.latencies.values().map(Vec::len).sum();
    println!(
        "load, {label}: {seconds} s, {WRITERS} writers + {STREAMS} streams: {runs} runs approved and finished, \
         {requests} requests ({:.0}/s), {} errors, {} streams × up to {} events, {lost} streams missing events",
        requests as f64 / seconds as f64,
        record.errors.len(),
        STREAMS,
        expected.len(),
    );
    for (kind, latencies) in &record.latencies {
        let mut sorted = latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "  {kind:<10} {:>6} requests  p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms  max {:>7.1} ms",
            sorted.len(),
            at(0.5),
            at(0.95),
            at(0.99),
            at(1.0)
        );
    }
    for error in record.errors.iter().take(10) {
        println!("  error: {error}");
    }
}

/// Every audit event after `after`, page by page: its seq, and whether it is about a run.
async fn audit_after(cluster: &Cluster, auditor: &str, mut after: i64) -> Vec<(i64, bool)> {
    let mut events = Vec::new();
    loop {
        let path = format!("/api/v1/audit?after={after}&limit=10000");
        let (status, page) =
            cluster.call(cluster.any_node(), auditor, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        let page = page.as_array().unwrap();
        if page.is_empty() {
            return events;
        }
        for event in page {
            after = event["seq"].as_i64().unwrap();
            events.push((after, !event["run_id"].is_null()));
        }
    }
}

/// One writer: start a run, wait for its gate, approve it as the partner through another node,
/// read it until it finishes; again until time is up. Returns how many runs it finished.
async fn write_loop(
    client: reqwest::Client,
    [node, other]: [String; 2],
    me: String,
    (partner, partner_token): (String, String),
    until: Instant,
    record: Arc<Mutex<Record>>,
) -> usize {
    let mut finished = 0;
    while Instant::now() < until {
        let body = json!({ "runbook": "gated", "assignments": [{ "role": "approver", "person": partner }] });
        let Some(run) = timed(
            &client,
            &record,
            "start",
            Method::POST,
            &format!("{node}/api/v1/runs"),
            &me,
            Some(body),
        )
        .await
        else {
            continue;
        };
        let id = run["id"].as_str().unwrap_or_default().to_owned();
        let path = format!("{node}/api/v1/runs/{id}");
        let mut status = String::new();
        while status != "waiting" && Instant::now() < until {
            status = timed(&client, &record, "read", Method::GET, &path, &me, None)
                .await
                .map(|run| run["status"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if status != "waiting" {
            break;
        }
        let approve = format!("{other}/api/v1/runs/{id}/steps/go/approve");
        timed(&client, &record, "approve", Method::POST, &approve, &partner_token, Some(json!({})))
            .await;
        while status != "succeeded" && Instant::now() < until + Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            status = timed(&client, &record, "read", Method::GET, &path, &me, None)
                .await
                .map(|run| run["status"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
        }
        if status == "succeeded" {
            finished += 1;
        }
    }
    finished
}

/// One request, timed and recorded; the JSON answer when it succeeded.
async fn timed(
    client: &reqwest::Client,
    record: &Mutex<Record>,
    kind: &'static str,
    method: Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Option<Value> {
    let started = Instant::now();
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let outcome = match request.send().await {
        Ok(response) if response.status().is_success() => {
            response.json::<Value>().await.map_err(|e| e.to_string())
        }
        Ok(response) => {
            let status = response.status();
            Err(format!("{kind} {url}: {status} {}", response.text().await.unwrap_or_default()))
        }
        Err(error) => Err(format!("{kind} {url}: {error}")),
    };
    let millis = started.elapsed().as_secs_f64() * 1000.0;
    let mut record = record.lock().unwrap();
    record.latencies.entry(kind).or_default().push(millis);
    match outcome {
        Ok(value) => Some(value),
        Err(error) => {
            record.errors.push(error);
            None
        }
    }
}

/// Follows every run's events until time is up (and a little after, for the last ones): the
/// seqs received, in the order received.
async fn follow(client: reqwest::Client, url: String, token: String, until: Instant) -> Vec<i64> {
    let mut response = client.get(url).bearer_auth(token).send().await.unwrap();
    let mut seqs = Vec::new();
    let mut buffer = String::new();
    let stop = tokio::time::Instant::from_std(until + Duration::from_secs(5));
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(stop, response.chunk()).await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find('\n') {
            let line: String = buffer.drain(..=end).collect();
            if let Some(id) = line.trim_end().strip_prefix("id: ") {
                seqs.push(id.parse().unwrap());
            }
        }
    }
    seqs
}
