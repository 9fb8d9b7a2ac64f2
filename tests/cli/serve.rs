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
    assert_eq!(seen.iter().filter(|line| line.starts_with("published ")).count(), 5, "{seen:?}");

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
        assert_eq!(runbooks.as_array().map(Vec::len), Some(5));
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
