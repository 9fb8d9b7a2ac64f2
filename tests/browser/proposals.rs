//! Proposals from alerts in the browser. Alertmanager reports the PostgreSQL primary down while
//! carol's *my work* is open: the proposal appears there without a reload, with the facts its
//! dry run gathers; its page shows the alert, the parameters read from it, the lock and the
//! facts; she takes command through the confirmation page, giving the roles, and the failover
//! starts live. A second proposal, in the dark theme, is dismissed through the reason dialog.
//! Each new page passes axe-core in its theme, with screenshots on a desktop and a phone in
//! `target/screenshots/`.

use std::path::Path;
use std::process::{Command, Stdio};

use fantoccini::Client;

use super::accessibility::{Theme, check, themed_browser};
use super::wait_for_text;
use super::{chromedriver, click, fill, scratch, screenshot, serve, sign_in, stand_ins, steady};

/// What Alertmanager sends when the primary of `main` goes down (the engine's fixture).
const FIRING: &str =
    include_str!("../../crates/engine/tests/fixtures/alerts/alertmanager-firing.json");

/// A token for the `alerts` account, which holds the `trigger` role alone.
fn trigger_token(dir: &Path) -> String {
    steady(
        dir,
        &["user", "add", "alerts", "--role", "trigger", "--password-stdin"],
        "alerts-password-long",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_steady"))
        .args(["token", "create", "alerts", "--label", "alertmanager"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("steady token create");
    assert!(output.status.success(), "steady token create: {output:?}");
    // `token <id> for `alerts`: <secret>  (shown once)`
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let secret = text.split(": ").nth(1).and_then(|rest| rest.split_whitespace().next());
    secret.expect("the token's secret").to_owned()
}

/// Alertmanager's webhook for the primary of `cluster`; returns the proposal's path.
async fn alert(base: &str, token: &str, cluster: &str) -> String {
    let body = FIRING.replace(r#""cluster": "main""#, &format!(r#""cluster": "{cluster}""#));
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/hooks/alertmanager"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the hook answers")
        .json()
        .await
        .expect("a delivery");
    let outcome = &answer["outcomes"][0];
    assert_eq!(outcome["outcome"], "proposed", "{answer}");
    assert!(outcome["dry_run_id"].is_string(), "the trigger asks for facts: {answer}");
    format!("/runs/{}", outcome["run_id"].as_str().expect("a run"))
}

/// Evaluates `script` (which returns a boolean) until it is true.
async fn wait_until(browser: &Client, script: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let value = browser.execute(script, vec![]).await.expect("script runs");
        if value == serde_json::Value::Bool(true) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never true: {script}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

const DIALOG_OPEN: &str = "return document.getElementById('reason-dialog').open;";

#[tokio::test]
async fn a_responder_takes_command_of_a_proposal_or_dismisses_it() {
    let dir = scratch("proposals");
    let path = stand_ins(&dir);
    let token = trigger_token(&dir);
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();

    let mut failures = Vec::new();
    for (theme, cluster) in [(Theme::Light, "main"), (Theme::Dark, "second")] {
        let name = theme.name();
        let carol =
            themed_browser(&driver, &dir.join(format!("carol-{name}-profile")), theme).await;
        sign_in(&carol, &base, "carol").await;
        let before = carol.source().await.expect("my work");
        assert!(!before.contains("Proposed by alerts"), "no proposal yet: {before}");

        // The alert arrives while her work is open: the proposal appears, then its facts.
        let proposal = alert(&base, &token, cluster).await;
        let work = wait_for_text(&carol, "Proposed by alerts").await;
        assert!(work.contains(&format!(r#"href="{proposal}/take""#)), "{work}");
        assert!(work.contains("PostgresPrimaryDown"), "{work}");
        wait_for_text(
            &carol,
            "Facts: <span class=\"badge ok\">✓ succeeded</span> 2 read-only steps ran",
        )
        .await;
        check(&carol, theme, "my-work-proposal", &mut failures).await;

        // The proposal's page: the alert, what it would run with, and the facts.
        carol.goto(&format!("{base}{proposal}")).await.expect("proposal page");
        let page = wait_for_text(&carol, "Facts from a dry run").await;
        for shown in [
            "◆ PROPOSED",
            "Nothing runs until a responder takes command.",
            &format!("<dt>cluster</dt><dd>{cluster}</dd>"),
            &format!("<code>pg/{cluster}</code>, taken when someone takes command"),
            "<dt>standby</dt><dd>db2.example.com</dd>",
            "· not run",
        ] {
            assert!(page.contains(shown), "{shown:?} is missing:\n{page}");
        }
        check(&carol, theme, "proposal", &mut failures).await;

        // The confirmation page, as the usual one before a live run.
        click(&carol, "#take-command").await;
        wait_for_text(&carol, "You become its commander").await;
        check(&carol, theme, "take-confirm", &mut failures).await;

        if theme == Theme::Light {
            fill(&carol, "role.approver", "alice").await;
            fill(&carol, "role.dba", "carol").await;
            click(&carol, "button[name=confirmed][value=no]").await;
            let checked = wait_for_text(&carol, "<code>approver</code>: user:alice").await;
            assert!(!checked.contains("could come from nobody"), "{checked}");
            screenshot(&carol, "take-confirm-roles-checked").await;
            click(&carol, "button[name=confirmed][value=yes]").await;
            // The failover starts live, carol commanding, and waits for her, the DBA, to fence.
            let run = wait_for_text(&carol, "✓ Done").await;
            assert_eq!(carol.current_url().await.expect("url").path(), proposal);
            for shown in [
                "● LIVE",
                "taken by <strong>user:carol</strong>",
                "Commander <strong>user:carol</strong>",
                "<code>approver</code>: user:alice",
            ] {
                assert!(run.contains(shown), "{shown:?} is missing:\n{run}");
            }
            check(&carol, theme, "proposal-taken", &mut failures).await;
        } else {
            // Back on the proposal, dismissed with a reason in the dialog.
            carol.goto(&format!("{base}{proposal}")).await.expect("proposal page");
            wait_for_text(&carol, "Facts from a dry run").await;
            click(&carol, "#dismiss-form button[type=submit]").await;
            wait_until(&carol, DIALOG_OPEN).await;
            // Confirming without a reason asks again, saying why.
            click(&carol, "#reason-dialog button[value=confirm]").await;
            wait_until(&carol, "return !document.querySelector('[data-reason-missing]').hidden;")
                .await;
            wait_until(&carol, DIALOG_OPEN).await;
            fill(&carol, "reason", "the second cluster is a drill of the alerting").await;
            screenshot(&carol, "proposal-dismiss-dialog").await;
            click(&carol, "#reason-dialog button[value=confirm]").await;
            let dismissed = wait_for_text(&carol, "⊘ dismissed by user:carol").await;
            assert!(dismissed.contains("a drill of the alerting"), "{dismissed}");
            assert!(dismissed.contains("PostgresPrimaryDown"), "the alert stays: {dismissed}");
            check(&carol, theme, "proposal-dismissed", &mut failures).await;
        }
        let _ = carol.close().await;
    }
    assert!(
        failures.is_empty(),
        "serious or critical accessibility violations:\n{}",
        failures.join("\n")
    );
}
