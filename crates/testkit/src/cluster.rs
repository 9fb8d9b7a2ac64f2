//! Several real `steady serve` processes on one PostgreSQL database of the test server: what
//! the cluster tests and the cluster benchmark drive.

// Used by tests and benchmarks only: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One `steady serve` process.
#[derive(Debug)]
pub struct Node {
    child: Child,
    pub address: String,
}

impl Node {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The name this node's leases carry.
    pub fn owns(&self, lease_owner: &str) -> bool {
        lease_owner.ends_with(&format!(":{}", self.pid()))
    }
}

/// A database, a folder of runbooks, and the nodes serving them.
#[derive(Debug)]
pub struct Cluster {
    /// The `steady` program the nodes run, and what else they are told.
    binary: PathBuf,
    serve_args: Vec<String>,
    /// Environment variables every node gets (`STEADY_SECRET_*`, say).
    env: Vec<(String, String)>,
    pub db: String,
    pub dir: PathBuf,
    pub nodes: Vec<Option<Node>>,
    lease: Duration,
    client: reqwest::Client,
}

impl Cluster {
    /// A fresh database with `runbooks` (file name, source) to publish, and `size` nodes of
    /// `binary` (a test's `env!("CARGO_BIN_EXE_steady")`) with leases of `lease`.
    pub fn start(
        binary: &Path,
        name: &str,
        size: usize,
        lease: Duration,
        runbooks: &[(&str, &str)],
    ) -> Cluster {
        Cluster::start_on(binary, crate::postgres_database(), name, size, lease, runbooks, &[])
    }

    /// The same on a database of your choosing (`sqlite://…` for a single node, say), with
    /// more arguments for every `steady serve` (`--notify URL`, say).
    pub fn start_on(
        binary: &Path,
        db: String,
        name: &str,
        size: usize,
        lease: Duration,
        runbooks: &[(&str, &str)],
        serve_args: &[&str],
    ) -> Cluster {
        Cluster::start_with_env(binary, db, name, size, lease, runbooks, serve_args, &[])
    }

    /// The same, with environment variables for every node.
    #[allow(clippy::too_many_arguments)]
    pub fn start_with_env(
        binary: &Path,
        db: String,
        name: &str,
        size: usize,
        lease: Duration,
        runbooks: &[(&str, &str)],
        serve_args: &[&str],
        env: &[(&str, &str)],
    ) -> Cluster {
        let dir =
            std::env::temp_dir().join(format!("steady-cluster-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("runbooks")).unwrap();
        for (file, source) in runbooks {
            std::fs::write(dir.join("runbooks").join(file), source).unwrap();
        }
        let mut cluster = Cluster {
            binary: binary.to_owned(),
            serve_args: serve_args.iter().map(|arg| (*arg).to_owned()).collect(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            lease,
            db,
            dir,
            nodes: Vec::new(),
            client: reqwest::Client::new(),
        };
        for _ in 0..size {
            let node = cluster.spawn_node();
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn spawn_node(&self) -> Node {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nodes.log"))
            .unwrap();
        let mut child = Command::new(&self.binary)
            .args(["serve", "--listen", "127.0.0.1:0", "--runbooks", "runbooks"])
            .args(["--db", &self.db, "--lease", &format!("{}ms", self.lease.as_millis())])
            .args(&self.serve_args)
            .current_dir(&self.dir)
            .env("STEADY_ADMIN_PASSWORD", "a-long-admin-password")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("steady serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("serve prints where it listens").unwrap();
            if let Some(rest) = line.strip_prefix("steady listening on http://") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep reading, so that the node never blocks on a full pipe.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        Node { child, address }
    }

    /// SIGKILLs node `index`: no goodbye, its leases simply stop being renewed.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut node) = self.nodes[index].take() {
            node.child.kill().unwrap();
            node.child.wait().unwrap();
        }
    }

    /// Starts a new process in place of node `index`.
    pub fn restart(&mut self, index: usize) {
        if self.nodes[index].is_none() {
            self.nodes[index] = Some(self.spawn_node());
        }
    }

    pub fn node(&self, index: usize) -> &Node {
        self.nodes[index].as_ref().expect("node is running")
    }

    /// Any node that is up.
    pub fn any_node(&self) -> &Node {
        self.nodes.iter().flatten().next().expect("a node is up")
    }

    /// `steady` on this database, as an operator on one of the hosts.
    pub fn cli(&self, args: &[&str]) -> (i32, String) {
        let output = Command::new(&self.binary)
            .args(args)
            .args(["--db", &self.db])
            .current_dir(&self.dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    }

    /// A user with a global role and an API token, made at the console.
    pub fn person(&self, name: &str, role: &str) -> String {
        let (code, text) = self.cli(&["user", "add", name, "--role", role]);
        assert_eq!(code, 0, "{text}");
        let (code, text) = self.cli(&["token", "create", name, "--label", "tests"]);
        assert_eq!(code, 0, "{text}");
        text.split_whitespace().find(|word| word.starts_with("stdy_")).unwrap().to_owned()
    }

    pub async fn call(
        &self,
        node: &Node,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, node.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Starts a run through `node` as `token`'s person.
    pub async fn start_run(
        &self,
        node: &Node,
        token: &str,
        runbook: &str,
        params: Value,
        assignments: Value,
    ) -> String {
        let body = json!({ "runbook": runbook, "params": params, "assignments": assignments });
        let (status, run) =
            self.call(node, token, reqwest::Method::POST, "/api/v1/runs", Some(body)).await;
        assert_eq!(status, 201, "starting a run: {run}");
        run["id"].as_str().unwrap().to_owned()
    }

    pub async fn run(&self, token: &str, id: &str) -> Value {
        let node = self.any_node();
        let (status, run) =
            self.call(node, token, reqwest::Method::GET, &format!("/api/v1/runs/{id}"), None).await;
        assert_eq!(status, 200, "reading a run: {run}");
        run
    }

    /// Waits until the run is in one of `statuses`, reading it through whichever node is up.
    pub async fn wait_for(&self, token: &str, id: &str, statuses: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = self.run(token, id).await;
            if statuses.contains(&run["status"].as_str().unwrap_or_default()) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {id} never reached {statuses:?}: {run}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The audit chain, verified at the console.
    pub fn verify_chain(&self) {
        let (code, text) = self.cli(&["audit", "verify"]);
        assert_eq!(code, 0, "the audit chain verifies: {text}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
    }
}
