//! `steady serve`, the main job: it bootstraps the admin, publishes the runbooks folder, answers
//! over HTTP, drives runs, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{repo, scratch};

#[test]
fn serve_bootstraps_publishes_answers_and_stops_cleanly() {
    let dir = scratch("serve");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["serve", "--listen", "127.0.0.1:0", "--runbooks"])
        .arg(repo().join("runbooks"))
        .current_dir(&dir)
        .env("STEADY_ADMIN_PASSWORD", "a-long-admin-password")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("steady serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let address = loop {
        let line = lines.next().expect("serve prints where it listens").expect("a line");
        if let Some(rest) = line.strip_prefix("steady listening on http://") {
            break rest.split_whitespace().next().expect("an address").to_owned();
        }
        seen.push(line);
    };
    assert_eq!(seen[0], "created user `admin` with the password in STEADY_ADMIN_PASSWORD");
    assert_eq!(seen.iter().filter(|line| line.starts_with("published ")).count(), 6, "{seen:?}");

    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = client.get(format!("http://{address}/healthz")).send().await.expect("healthz");
        assert_eq!(health.status(), 200);
        let login = client
            .post(format!("http://{address}/api/v1/session"))
            .json(&serde_json::json!({ "name": "admin", "password": "a-long-admin-password" }))
            .send()
            .await
            .expect("sign in");
        assert_eq!(login.status(), 200);
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let runbooks: serde_json::Value = client
            .get(format!("http://{address}/api/v1/runbooks"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("runbooks")
            .json()
            .await
            .expect("json");
        assert_eq!(runbooks.as_array().map(Vec::len), Some(6));
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|line| line.starts_with("steady stopped")), "{rest:?}");
    std::thread::sleep(Duration::from_millis(10));
}

const RESTART_V1: &str = "name: restart\nsteps:\n  - id: nap\n    sleep: 1ms\n";
const RESTART_V2: &str =
    "name: restart\ntitle: Restart, as the author fixed it\nsteps:\n  - id: nap\n    sleep: 2ms\n";

/// An author published v2 while the server's folder still holds v1: a restart must not turn
/// v1 back into the latest version as v3, and says that the folder is behind.
#[test]
fn a_restart_with_an_older_file_keeps_the_authors_newer_version() {
    let dir = scratch("serve-behind");
    std::fs::create_dir_all(dir.join("runbooks")).expect("folder");
    crate::write(&dir.join("runbooks"), "restart.yaml", RESTART_V1);
    crate::write(&dir, "restart-v2.yaml", RESTART_V2);
    assert_eq!(crate::steady(&dir, &["publish", "runbooks/restart.yaml"]).code, 0);
    let v2 = crate::steady(&dir, &["publish", "restart-v2.yaml"]);
    assert!(v2.stdout.contains("published restart version 2"), "{}", v2.stdout);

    let stderr = std::fs::File::create(dir.join("serve.stderr")).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["serve", "--listen", "127.0.0.1:0", "--runbooks", "runbooks"])
        .current_dir(&dir)
        .env("STEADY_ADMIN_PASSWORD", "a-long-admin-password")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("steady serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    let address = loop {
        let line = lines.next().expect("serve prints where it listens").expect("a line");
        if let Some(rest) = line.strip_prefix("steady listening on http://") {
            break rest.split_whitespace().next().expect("an address").to_owned();
        }
        seen.push(line);
    };
    assert!(!seen.iter().any(|line| line.starts_with("published ")), "{seen:?}");

    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (versions, page) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let login = client
            .post(format!("http://{address}/api/v1/session"))
            .json(&serde_json::json!({ "name": "admin", "password": "a-long-admin-password" }))
            .send()
            .await
            .expect("sign in");
        let cookie = login.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let versions: serde_json::Value = client
            .get(format!("http://{address}/api/v1/runbooks/restart"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("versions")
            .json()
            .await
            .expect("json");
        let page = client
            .get(format!("http://{address}/runbooks"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("runbooks page")
            .text()
            .await
            .expect("html");
        (versions, page)
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    assert!(child.wait().expect("serve exits").success());

    let listed = versions.to_string();
    assert!(listed.contains("\"version\":2") && !listed.contains("\"version\":3"), "{listed}");
    let said = "the folder is behind the database: file matches v1, latest is v2";
    assert!(page.contains(said), "{page}");
    let stderr = std::fs::read_to_string(dir.join("serve.stderr")).expect("stderr");
    assert!(stderr.contains(&format!("runbooks/restart.yaml: warning: {said}")), "{stderr}");
}

/// An operator's browser left open on a run keeps event streams open for as long as it likes;
/// a deploy's SIGTERM still stops the server at once: every stream ends, and the process exits.
#[test]
fn sigterm_ends_open_event_streams_and_the_server_exits() {
    let dir = scratch("serve-streams");
    crate::write(
        &dir,
        "gated.yaml",
        "name: gated\nroles:\n  approver: {}\nsteps:\n  - id: go\n    approval: { role: approver }\n",
    );
    let started = crate::steady(&dir, &["run", "gated.yaml"]);
    assert_eq!(started.code, 0, "{}", started.stderr);
    let run = started.stdout.lines().find_map(|line| line.strip_prefix("run ")).expect("run id");
    let run = run.split(':').next().expect("id").to_owned();

    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["serve", "--listen", "127.0.0.1:0", "--runbooks", "no-runbooks-here"])
        .current_dir(&dir)
        .env("STEADY_ADMIN_PASSWORD", "a-long-admin-password")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("steady serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let address = loop {
        let line = lines.next().expect("serve prints where it listens").expect("a line");
        if let Some(rest) = line.strip_prefix("steady listening on http://") {
            break rest.split_whitespace().next().expect("an address").to_owned();
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let readers = runtime.block_on(async {
        let client = reqwest::Client::new();
        let login = client
            .post(format!("http://{address}/api/v1/session"))
            .json(&serde_json::json!({ "name": "admin", "password": "a-long-admin-password" }))
            .send()
            .await
            .expect("sign in");
        let cookie = login.headers()["set-cookie"].to_str().expect("cookie").to_owned();
        let cookie = cookie.split(';').next().expect("pair").to_owned();
        let mut readers = Vec::new();
        for path in [format!("/api/v1/runs/{run}/events"), "/api/v1/events".to_owned()] {
            let mut stream = client
                .get(format!("http://{address}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("a stream opens");
            assert_eq!(stream.status(), 200, "{path}");
            // The reader reads until the server ends the stream.
            readers.push(tokio::spawn(async move {
                let mut received = 0;
                while let Ok(Some(chunk)) = stream.chunk().await {
                    received += chunk.len();
                }
                received
            }));
        }
        // The run's stream sends what already happened before anything else.
        tokio::time::sleep(Duration::from_millis(300)).await;
        readers
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let exited = loop {
        match child.try_wait().expect("wait") {
            Some(status) => break Some(status),
            None if std::time::Instant::now() > deadline => break None,
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let status = exited.expect("steady serve exits within 5 s of SIGTERM with streams open");
    assert!(status.success(), "{status:?}");
    assert!(lines.map_while(Result::ok).any(|line| line.starts_with("steady stopped")));
    let received = runtime.block_on(async {
        let mut received = Vec::new();
        for reader in readers {
            let ended = tokio::time::timeout(Duration::from_secs(2), reader).await;
            received.push(ended.expect("the stream ended").expect("reader"));
        }
        received
    });
    assert!(received[0] > 0, "the run's stream sent its events before it ended");
}
