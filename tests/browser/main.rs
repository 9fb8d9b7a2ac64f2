//! Browser tests: real headless Chromium, driven over WebDriver (chromedriver) with fantoccini,
//! against the real `steady serve` on port 0 with the shipped runbooks. The commands the
//! PostgreSQL runbook calls (`psql`, `ssh`) are stand-ins on the server's PATH.
//!
//! - the commander dry-runs the PostgreSQL failover, starts it live and assigns the approver;
//! - the approver, in a second browser, sees it appear in *my work* without reloading and
//!   approves with a comment, while the commander's page follows the run without reloading;
//! - the commander sees why they may not approve their own run;
//! - the auditor reads the history, filters the audit log, exports CSV and sees the chain intact;
//! - `cockpit`: the commander runs an incident from the run page (header, decision, abort).
//!
//! - `accessibility`: every page passes axe-core in the light and the dark theme.
//!
//! Screenshots of the main pages land in `target/screenshots/`.
//!
//! - `authoring`: an author publishes a fixed version; the commander's *my work*.
//! - `lanes`: a `parallel` group's lanes and a fan-out's grid of items on the run page.
//! - `figures`: rehearsal figures against `rto`; a step marked slower than any rehearsal
//!   the moment it outlasts the drill, with no event to announce it.
//! - `proposals`: an alert proposes the failover; *my work* shows it without reloading; the
//!   proposal's page with its facts; taking command through the confirmation page, and
//!   dismissing another through the reason dialog, each page checked by axe in both themes.

mod accessibility;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

mod authoring;
mod cockpit;
mod figures;
mod lanes;
mod proposals;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("steady-browser-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

/// Stand-ins for the database tools, answering like a healthy standby would.
fn stand_ins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin folder");
    let psql = r#"#!/bin/sh
case "$*" in
  *pg_is_in_recovery*) echo t ;;
  *lsn_diff*) echo 0 ;;
  *returning*) echo ok ;;
  *) echo ok ;;
esac
"#;
    for (name, script) in [("psql", psql), ("ssh", "#!/bin/sh\necho \"promoted via $1\"\n")] {
        let path = bin.join(name);
        std::fs::write(&path, script).expect("stand-in");
        let mut permissions = std::fs::metadata(&path).expect("metadata").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).expect("chmod");
    }
    bin
}

/// A process killed when the test ends, however it ends.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn steady(dir: &Path, args: &[&str], stdin: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("steady runs");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin.as_bytes())
        .expect("password");
    assert!(child.wait().expect("steady exits").success(), "steady {args:?}");
}

/// `steady serve` on a free port; returns the process and its base URL.
fn serve(dir: &Path, path: &Path) -> (Process, String) {
    for (name, role) in [("carol", "responder"), ("alice", "responder"), ("audrey", "auditor")] {
        steady(
            dir,
            &["user", "add", name, "--role", role, "--password-stdin"],
            &format!("{name}-password-long"),
        );
    }
    let runbooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut child = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["serve", "--listen", "127.0.0.1:0", "--runbooks"])
        .arg(&runbooks)
        .current_dir(dir)
        .env("PATH", format!("{}:{}", path.display(), std::env::var("PATH").unwrap_or_default()))
        // The failover announces itself to a webhook nobody listens on (`on_failure: continue`).
        .env("STEADY_SECRET_SLACK_WEBHOOK", "http://127.0.0.1:9/hooks/announce")
        .stdout(Stdio::piped())
        .spawn()
        .expect("steady serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let process = Process(child);
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line");
        if let Some(rest) = line.strip_prefix("steady listening on ") {
            let url = rest.split_whitespace().next().expect("url").to_owned();
            return (process, url);
        }
    }
    panic!("steady serve did not say where it listens");
}

/// chromedriver on a free port. Chromium and chromedriver come from Debian's packages, which
/// the test command installs when they are missing.
fn chromedriver() -> (Process, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver is installed (scripts/test.sh installs chromium and chromium-driver)",
        );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Process(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1000", format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

async fn sign_in(browser: &Client, base: &str, name: &str) {
    browser.goto(&format!("{base}/login")).await.expect("login page");
    browser
        .find(Locator::Css("input[name=name]"))
        .await
        .expect("name")
        .send_keys(name)
        .await
        .expect("type");
    let password = format!("{name}-password-long");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("password")
        .send_keys(&password)
        .await
        .expect("type");
    browser
        .find(Locator::Css("button[type=submit].primary"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    wait_for_text(browser, "My work").await;
}

/// Waits until the page shows `text`, without navigating.
async fn wait_for_text(browser: &Client, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let source = browser.source().await.expect("page source");
        if source.contains(text) {
            if std::env::var_os("STEADY_BROWSER_TRACE").is_some() {
                eprintln!(
                    "{:>6} ms  {text}",
                    (Instant::now() + Duration::from_secs(20) - deadline).as_millis()
                );
            }
            return source;
        }
        assert!(Instant::now() < deadline, "the page never showed {text:?}:\n{source}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(browser: &Client, name: &str) {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&folder).expect("screenshots folder");
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(folder.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn fill(browser: &Client, name: &str, value: &str) {
    let field = browser.find(Locator::Css(&format!("[name='{name}']"))).await.expect(name);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn click(browser: &Client, selector: &str) {
    browser
        .find(Locator::Css(selector))
        .await
        .unwrap_or_else(|_| panic!("{selector}"))
        .click()
        .await
        .expect("click");
}

/// Fills the start form of the PostgreSQL runbook and goes through the confirmation page.
async fn start_failover(browser: &Client, base: &str, mode: &str, approvers: &str) -> String {
    browser.goto(&format!("{base}/runbooks/postgres-failover")).await.expect("runbook page");
    fill(browser, "param.cluster", "main").await;
    fill(browser, "param.standby_host", "db2").await;
    fill(browser, "role.approver", approvers).await;
    fill(browser, "role.dba", "carol").await;
    click(browser, &format!("input[name=mode][value='{mode}']")).await;
    click(browser, "form[action$='/start'] button.primary").await;
    wait_for_text(browser, "This is exactly what will run").await;
    if mode == "live" {
        screenshot(browser, "confirm-live-run").await;
    }
    click(browser, "form[action$='/start'] button[type=submit]").await;
    wait_for_text(browser, "data-live-run").await;
    browser.current_url().await.expect("url").path().to_owned()
}

#[tokio::test]
async fn people_run_a_failover_in_the_browser() {
    let dir = scratch("story");
    let path = stand_ins(&dir);
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();

    // The commander rehearses first.
    let carol = browser(&driver, &dir.join("carol-profile")).await;
    sign_in(&carol, &base, "carol").await;
    screenshot(&carol, "my-work-empty").await;
    carol.goto(&format!("{base}/runbooks")).await.expect("runbooks");
    wait_for_text(&carol, "never rehearsed").await;
    screenshot(&carol, "runbooks").await;
    start_failover(&carol, &base, "dry-run", "alice").await;
    wait_for_text(&carol, r#"<section class="banner ok""#).await;
    let dry = carol.source().await.expect("source");
    assert!(dry.contains("○ would run"), "a dry run records what it would do");
    screenshot(&carol, "dry-run").await;

    // The approver opens "my work" in another browser: nothing waits for her yet.
    let alice = browser(&driver, &dir.join("alice-profile")).await;
    sign_in(&alice, &base, "alice").await;
    wait_for_text(&alice, "Nothing waits for you").await;

    // Live, with alice (and the commander too) as approvers.
    let run_path = start_failover(&carol, &base, "live", "alice, carol").await;
    wait_for_text(&carol, "✓ Done").await;
    fill(&carol, "comment", "primary powered off").await;
    click(&carol, "button[value=complete]").await;
    let own =
        wait_for_text(&carol, "You started this run, so you may not approve its gates.").await;
    assert!(!own.contains("✓ Approve"));
    screenshot(&carol, "commander-at-the-gate").await;

    // Her "my work", untouched since she opened it, now shows the gate.
    let work = wait_for_text(&alice, "Sign off the promotion").await;
    assert!(work.contains(&run_path), "my work links to the run");
    screenshot(&alice, "my-work").await;
    alice.goto(&format!("{base}{run_path}")).await.expect("run page");
    wait_for_text(&alice, "✓ Approve").await;
    screenshot(&alice, "gate").await;
    fill(&alice, "comment", "lag is zero, go").await;
    click(&alice, "button[value=approve]").await;

    // The commander's page, untouched since, follows the run to its end.
    let done = wait_for_text(&carol, r#"<section class="banner ok""#).await;
    assert!(done.contains("lag is zero, go"), "the approval's comment shows");
    screenshot(&carol, "run-succeeded").await;

    // The same page on a phone.
    carol.set_window_size(390, 844).await.expect("resize");
    carol.refresh().await.expect("reload");
    wait_for_text(&carol, r#"<section class="banner ok""#).await;
    screenshot(&carol, "run-on-a-phone").await;

    // The auditor.
    let audrey = browser(&driver, &dir.join("audrey-profile")).await;
    sign_in(&audrey, &base, "audrey").await;
    audrey.goto(&format!("{base}/runs?mode=live")).await.expect("history");
    wait_for_text(&audrey, "postgres-failover").await;
    screenshot(&audrey, "history").await;
    audrey.goto(&format!("{base}/audit?action=approval.granted")).await.expect("audit");
    let audit = wait_for_text(&audrey, "✓ chain verified").await;
    assert!(audit.contains("user:alice") && audit.contains("approval.granted"), "{audit}");
    screenshot(&audrey, "audit").await;
    let export = audrey
        .find(Locator::LinkText("CSV"))
        .await
        .expect("CSV link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    let cookie = audrey.get_named_cookie("steady_session").await.expect("session cookie");
    let csv = reqwest::Client::new()
        .get(format!("{base}{export}"))
        .header("cookie", format!("steady_session={}", cookie.value()))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    assert!(
        csv.starts_with("seq,id,at,actor,action,run_id,step_id,data,prev_hash,hash\n"),
        "{csv}"
    );
    assert!(csv.contains("lag is zero, go"), "{csv}");

    for browser in [carol, alice, audrey] {
        let _ = browser.close().await;
    }
}
