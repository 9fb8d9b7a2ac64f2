//! The author's desk and the commander's cockpit in a real browser:
//!
//! - an author opens the new version page of `shed-load`, types a mistake, sees it at its
//!   line after *Validate*, fixes it, previews the diff and publishes with a change message;
//! - a commander starts a live failover naming only herself as approver, is warned on the
//!   confirmation page that nobody could approve the gate, and finds on *my work* what waits
//!   for her, the decision she owes and the run she commands.
//!
//! Each screen is captured at desktop (1280 px) and phone (390 px) widths.

use fantoccini::Client;

use super::*;

/// Both widths of one screen. A page that was read (not the answer to a form) is loaded again
/// at the phone's width, so that it lays itself out and finds its anchor anew.
async fn both_widths(browser: &Client, name: &str, reload: bool) {
    browser.set_window_size(1280, 1000).await.expect("desktop size");
    screenshot(browser, &format!("{name}-desktop")).await;
    browser.set_window_size(390, 844).await.expect("phone size");
    if reload {
        let url = browser.current_url().await.expect("url");
        browser.goto(url.as_str()).await.expect("reload");
    }
    screenshot(browser, &format!("{name}-phone")).await;
    browser.set_window_size(1280, 1000).await.expect("desktop size");
}

#[tokio::test]
async fn an_author_publishes_a_fixed_version_and_the_commander_reads_her_cockpit() {
    let dir = scratch("authoring");
    let path = stand_ins(&dir);
    steady(
        &dir,
        &["user", "add", "wendy", "--role", "author", "--password-stdin"],
        "wendy-password-long",
    );
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();
    let source = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/shed-load.yaml"),
    )
    .expect("the shipped runbook");

    // The author signs in and, having no runs to command, lands on the runs.
    let wendy = browser(&driver, &dir.join("wendy-profile")).await;
    sign_in(&wendy, &base, "wendy").await;
    assert_eq!(wendy.current_url().await.expect("url").path(), "/runs");
    wendy.goto(&format!("{base}/runbooks/shed-load")).await.expect("runbook page");
    click(&wendy, "a[href='/runbooks/shed-load/new-version']").await;
    wait_for_text(&wendy, "New version of shed-load").await;
    both_widths(&wendy, "authoring-editor", true).await;

    // A duration that is not one: Validate shows it at its line, and nothing is published.
    let typo = source.replacen("timeout: 10m", "timeout: soon", 1);
    fill(&wendy, "source", &typo).await;
    click(&wendy, "button[value=validate]").await;
    let checked = wait_for_text(&wendy, "error(s)").await;
    let line = typo.lines().position(|l| l.contains("timeout: soon")).expect("the typo") + 1;
    assert!(checked.contains(&format!("line {line}, column")), "{checked}");
    both_widths(&wendy, "authoring-error", false).await;

    // Fixed, with a longer sign-off time; a step left without its timeout earns a warning.
    let fixed = source.replacen("timeout: 10m", "timeout: 15m", 1).replacen(
        "    idempotent: true\n    timeout: 30s\n",
        "    idempotent: true\n",
        1,
    );
    fill(&wendy, "source", &fixed).await;
    fill(&wendy, "message", "Give the commander 15 minutes to sign off").await;
    click(&wendy, "button[value=preview]").await;
    let preview = wait_for_text(&wendy, "What changes against v1").await;
    assert!(
        preview.contains("+      timeout: 15m") && preview.contains("⚠ 1 warning(s)"),
        "{preview}"
    );
    both_widths(&wendy, "authoring-preview", false).await;
    click(&wendy, "button[value=publish]").await;
    wait_for_text(&wendy, "Give the commander 15 minutes to sign off").await;
    assert_eq!(wendy.current_url().await.expect("url").fragment(), Some("v2"));
    both_widths(&wendy, "runbook-versions", true).await;

    // The commander names only herself as approver: the confirmation page warns her.
    let carol = browser(&driver, &dir.join("carol-profile")).await;
    sign_in(&carol, &base, "carol").await;
    carol.goto(&format!("{base}/runbooks/postgres-failover")).await.expect("runbook page");
    fill(&carol, "param.cluster", "main").await;
    fill(&carol, "param.standby_host", "db2").await;
    fill(&carol, "role.approver", "carol").await;
    fill(&carol, "role.dba", "carol").await;
    click(&carol, "input[name=mode][value='live']").await;
    click(&carol, "form[action$='/start'] button.primary").await;
    let confirm = wait_for_text(&carol, "Who holds each role").await;
    assert!(confirm.contains("could come from nobody"), "{confirm}");
    both_widths(&carol, "confirm-nobody-can-approve", false).await;
    click(&carol, "form[action$='/start'] button[type=submit]").await;
    wait_for_text(&carol, "data-live-run").await;
    let run =
        carol.current_url().await.expect("url").path().trim_start_matches("/runs/").to_owned();

    // My work: the fencing waits for her; once done, the gate is a decision she owes.
    carol.goto(&format!("{base}/work")).await.expect("my work");
    let work = wait_for_text(&carol, "Fence the old primary").await;
    assert!(work.contains("Runs I command") && work.contains(&run[..13]), "{work}");
    both_widths(&carol, "my-work-waiting-for-me", true).await;
    carol.goto(&format!("{base}/runs/{run}")).await.expect("run page");
    wait_for_text(&carol, "✓ Done").await;
    fill(&carol, "comment", "primary powered off").await;
    click(&carol, "button[value=complete]").await;
    wait_for_text(&carol, "You started this run, so you may not approve its gates.").await;
    carol.goto(&format!("{base}/work")).await.expect("my work");
    let owed = wait_for_text(&carol, "Nobody in the run may give 1 of the approvals").await;
    assert!(owed.contains("Assign someone"), "{owed}");
    // Said once, as her decision: the gate is not also listed as waiting on others.
    assert!(!owed.contains("Waiting on others"), "{owed}");
    both_widths(&carol, "my-work-decisions", true).await;

    for browser in [wendy, carol] {
        let _ = browser.close().await;
    }
}
