//! Rehearsal figures in real Chromium: after a drill in the terminal, the runbook page shows
//! what it measured against `rto`; a live run's header expects its finish, and the page marks
//! the step slower than any rehearsal by itself at the moment it outlasts the drill — a
//! moment no event announces. Screenshots land in `target/screenshots/figures-*.png`.

use super::{browser, chromedriver, click, fill, scratch, screenshot, serve, sign_in, stand_ins};
use super::{steady, wait_for_text};

/// One step whose length the starter picks.
const SLOW: &str = r#"
name: slow-promotion
title: Promote the standby (figures story)
rto: 1m
params:
  pause: { type: string, default: "2", pattern: "^[0-9.]+$" }
steps:
  - id: promote
    name: Promote the standby
    run: ["sleep", "{{ params.pause }}"]
    timeout: 30s
"#;

#[tokio::test]
async fn the_page_marks_a_step_slower_than_any_rehearsal_when_it_outlasts_the_drill() {
    let dir = scratch("figures");
    let path = stand_ins(&dir);
    std::fs::write(dir.join("slow.yaml"), SLOW).expect("runbook");
    // The drill, in the terminal: the promotion takes two seconds.
    steady(&dir, &["run", "slow.yaml", "--drill", "-p", "pause=2"], "");
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();
    let carol = browser(&driver, &dir.join("figures-carol")).await;
    sign_in(&carol, &base, "carol").await;

    carol.goto(&format!("{base}/runbooks/slow-promotion")).await.expect("runbook page");
    let page = wait_for_text(&carol, "Rehearsal figures").await;
    assert!(page.contains(r#"<strong class="within-rto">rehearsed p90 2."#), "{page}");
    assert!(page.contains("From 1 succeeded run of any version (1 drill)."), "{page}");
    screenshot(&carol, "figures-runbook").await;

    // Today the promotion hangs: eight seconds.
    fill(&carol, "param.pause", "8").await;
    click(&carol, "input[name=mode][value='live']").await;
    click(&carol, "form[action$='/start'] button.primary").await;
    wait_for_text(&carol, "This is exactly what will run").await;
    click(&carol, "form[action$='/start'] button[type=submit]").await;
    let running = wait_for_text(&carol, "expected to finish in ~").await;
    assert!(running.contains("(from 1 rehearsal)"), "{running}");
    assert!(!running.contains("slower than any rehearsal"), "{running}");
    // No event comes while `sleep` runs: the page looks again by itself.
    let slower = wait_for_text(&carol, "slower than any rehearsal (longest 2.").await;
    assert!(slower.contains("<code>promote</code> is slower than any rehearsal"), "{slower}");
    screenshot(&carol, "figures-slower").await;
    let _ = carol.close().await;
}
