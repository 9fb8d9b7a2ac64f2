//! The incident commander's cockpit, in real Chromium: the live run's header, a lost session
//! said in sight on the run page, on *my work* and on the runs list with the way back, a
//! link to a step that keeps its anchor through sign-in, a role field suggesting the name
//! typed after a comma, the gate's bottom bar on
//! a phone, a half-typed note that survives a live update, a failing step whose decision panel
//! shows its output, and an abort with a reason given in the dialog. Screenshots
//! at desktop and phone widths land in `target/screenshots/cockpit-*.png`.

use fantoccini::{Client, Locator};

use super::{browser, chromedriver, click, fill, scratch, screenshot, serve, sign_in, stand_ins};
use super::{steady, wait_for_text};

/// A runbook whose promotion fails after a manual step, a self-approvable gate and a pause.
const COCKPIT: &str = r#"
name: cockpit
title: Promote the standby (cockpit story)
params:
  cluster: { type: string, default: main, description: Which cluster }
roles:
  dba: { description: Fences the primary }
  approver: { description: Signs off }
steps:
  - id: lag
    run: ["echo", "replication lag 0 bytes"]
    read_only: true
    timeout: 5s
  - id: fence
    manual:
      role: dba
      instructions: Power off {{ params.cluster }}-primary.
  - id: go
    approval: { role: approver, timeout: 30m, allow_self_approval: true, prompt: "Promote?" }
  - id: settle
    sleep: 4s
  - id: promote
    run: ["sh", "-c", "echo 'promoting {{ params.cluster }}'; echo 'pg_ctl: standby not ready (timeline 7)' >&2; exit 3"]
    timeout: 5s
  - id: announce
    run: ["echo", "announced"]
    timeout: 5s
rollback:
  - id: unfence
    run: ["echo", "unfenced"]
    timeout: 5s
"#;

async fn both_widths(browser: &Client, name: &str) {
    browser.execute("window.scrollTo(0, 0)", vec![]).await.expect("scroll to the top");
    screenshot(browser, &format!("cockpit-{name}")).await;
    browser.set_window_size(390, 844).await.expect("phone width");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    screenshot(browser, &format!("cockpit-{name}-phone")).await;
    browser.set_window_size(1280, 1000).await.expect("desktop width");
}

/// Types into a field of a page that refreshes itself: once focused, the field is kept across
/// refreshes, but one may land between finding it and focusing it.
async fn type_live(browser: &Client, selector: &str, text: &str) {
    for _ in 0..20 {
        let Ok(field) = browser.find(Locator::Css(selector)).await else { continue };
        if field.click().await.is_ok() && field.send_keys(text).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("could not type into {selector}");
}

/// Whether the signed-out notice shows its link in the viewport, where a click reaches it (not
/// under the sticky header, not scrolled away).
const LINK_IN_SIGHT: &str = r#"
    var link = document.querySelector("[data-signed-out] a");
    if (!link || link.closest("[hidden]")) { return "hidden"; }
    var box = link.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) { return "out of the viewport"; }
    var hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
    return hit === link || link.contains(hit) ? "in sight" : "covered by " + (hit && hit.outerHTML);
"#;

/// Ends the session under an open page scrolled to its bottom (the cookie goes, as when the
/// session expires), brings the tab back to the front, and checks that the page says so in
/// sight; then follows the notice's link and signs in again, back to `path`.
async fn signed_out_and_back(browser: &Client, path: &str, name: &str, shot: &str) {
    browser.delete_all_cookies().await.expect("the session cookie goes");
    browser
        .execute("window.scrollTo(0, document.body.scrollHeight)", vec![])
        .await
        .expect("scroll");
    // Coming back to a tab asks the server at once, as a keep-alive would after 4 minutes.
    browser
        .execute("document.dispatchEvent(new Event('visibilitychange'))", vec![])
        .await
        .expect("back to the tab");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let seen = browser.execute(LINK_IN_SIGHT, vec![]).await.expect("notice");
        if seen == "in sight" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "signed-out link on {path}: {seen}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    screenshot(browser, &format!("cockpit-signed-out-{shot}")).await;
    click(browser, "[data-signed-out] a").await;
    wait_for_text(browser, "name=\"password\"").await;
    let next = browser.current_url().await.expect("url");
    let back = next.query_pairs().find(|(key, _)| key == "next").map(|(_, value)| value);
    assert_eq!(back.as_deref(), Some(path), "{next}");
    fill(browser, "name", name).await;
    fill(browser, "password", &format!("{name}-password-long")).await;
    click(browser, "button[type=submit].primary").await;
    for _ in 0..200 {
        if browser.current_url().await.expect("url").path() == path {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("signing in again did not lead back to {path}");
}

async fn field_value(browser: &Client, selector: &str) -> String {
    let field = browser.find(Locator::Css(selector)).await.expect(selector);
    field.prop("value").await.expect("value").unwrap_or_default()
}

#[tokio::test]
async fn the_commander_runs_an_incident_from_the_cockpit() {
    let dir = scratch("cockpit");
    let path = stand_ins(&dir);
    std::fs::write(dir.join("cockpit.yaml"), COCKPIT).expect("runbook");
    steady(&dir, &["publish", "cockpit.yaml"], "");
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();
    let carol = browser(&driver, &dir.join("cockpit-carol")).await;
    sign_in(&carol, &base, "carol").await;

    carol.goto(&format!("{base}/runbooks/cockpit")).await.expect("runbook page");
    // A role field takes several names: after a comma, the list suggests the next name (the
    // ones not given yet), not only a first one.
    fill(&carol, "role.approver", "carol, a").await;
    let suggested = suggestions(&carol).await;
    assert_eq!(suggested, serde_json::json!(["carol, alice"]));
    fill(&carol, "role.dba", "").await;
    let suggested = suggestions(&carol).await;
    assert_eq!(suggested, serde_json::json!(["alice", "carol"]));
    fill(&carol, "role.dba", "carol").await;
    fill(&carol, "role.approver", "carol").await;
    click(&carol, "input[name=mode][value='live']").await;
    click(&carol, "form[action$='/start'] button.primary").await;
    wait_for_text(&carol, "This is exactly what will run").await;
    click(&carol, "form[action$='/start'] button[type=submit]").await;

    // The header: live, where the run is, whom it waits for, and that the page follows it.
    wait_for_text(&carol, "● live: updates as the run moves").await;
    let header = wait_for_text(&carol, "step 2 of 6").await;
    assert!(header.contains("● LIVE"), "{header}");
    assert!(header.contains("a person holding <code>dba</code>"), "{header}");
    assert!(carol.title().await.expect("title").starts_with("waiting · cockpit"));
    both_widths(&carol, "live-header").await;
    let run = carol.current_url().await.expect("url").path().to_owned();
    signed_out_and_back(&carol, &run, "carol", "run").await;
    wait_for_text(&carol, "● live: updates as the run moves").await;
    carol.goto(&format!("{base}/work")).await.expect("my work");
    wait_for_text(&carol, "Runs I command").await;
    signed_out_and_back(&carol, "/work", "carol", "work").await;
    // The runs list follows live events too, and says so when the session ends.
    carol.goto(&format!("{base}/runs")).await.expect("the runs list");
    wait_for_text(&carol, "<h1>Runs</h1>").await;
    signed_out_and_back(&carol, "/runs", "carol", "runs").await;

    // A notification's link to the gate, opened signed out, comes back to the gate after
    // signing in: the login page carries the anchor, which browsers never send, into `next`.
    carol.delete_all_cookies().await.expect("signed out");
    carol.goto(&format!("{base}{run}#step-go")).await.expect("the link to the gate");
    wait_for_text(&carol, "name=\"password\"").await;
    let kept = field_value(&carol, "input[name=next]").await;
    assert_eq!(kept, format!("{run}#step-go"));
    fill(&carol, "name", "carol").await;
    fill(&carol, "password", "carol-password-long").await;
    click(&carol, "button[type=submit].primary").await;
    wait_for_text(&carol, "● live: updates as the run moves").await;
    let landed = carol.current_url().await.expect("url");
    assert_eq!((landed.path(), landed.fragment()), (run.as_str(), Some("step-go")), "{landed}");
    carol.goto(&format!("{base}{run}")).await.expect("back to the run");
    wait_for_text(&carol, "● live: updates as the run moves").await;
    type_live(&carol, "#answer-fence input[name=comment]", "primary powered off").await;
    click(&carol, "button[value=complete]").await;

    // At the gate, on a phone, the answer is one thumb away at the bottom of the screen.
    let gate = wait_for_text(&carol, "times out in").await;
    assert!(gate.contains("step 3 of 6"), "{gate}");
    carol.set_window_size(390, 844).await.expect("phone width");
    wait_for_text(&carol, "waits for you").await;
    screenshot(&carol, "cockpit-gate-bar-phone").await;
    // The sticky header leaves the screen to the steps: it took about 40 % of it here once.
    let share = carol
        .execute(
            "return document.getElementById('situation').getBoundingClientRect().height / window.innerHeight",
            vec![],
        )
        .await
        .expect("the header's height");
    assert!(share.as_f64().expect("a number") < 0.3, "the header takes {share} of the screen");
    click(&carol, "#gate-bar button[value=approve]").await;
    carol.set_window_size(1280, 1000).await.expect("desktop width");

    // While the run pauses, the commander starts a note; the failure arrives as she types,
    // the page updates around her note, and the note is still there, still hers.
    wait_for_text(&carol, "step 4 of 6").await;
    type_live(&carol, "#note-form textarea", "standby looked healthy before promot").await;
    let failed = wait_for_text(&carol, "Decision needed at").await;
    assert_eq!(
        field_value(&carol, "#note-form textarea").await,
        "standby looked healthy before promot"
    );
    assert!(
        failed.contains("pg_ctl: standby not ready (timeline 7)"),
        "the output is in the panel"
    );
    assert!(failed.contains("Roll back runs <code>unfence</code>"), "{failed}");
    assert!(carol.title().await.expect("title").starts_with("needs attention · cockpit"));
    both_widths(&carol, "decision").await;
    let note = carol.find(Locator::Css("#note-form textarea")).await.expect("note");
    note.clear().await.expect("clear");

    // Abort asks for a reason in a dialog, and the reason stays with the run.
    click(&carol, "#decide-abort button").await;
    wait_for_text(&carol, "Reason, recorded in the audit log").await;
    let dialog = carol.find(Locator::Css("#reason-dialog")).await.expect("dialog");
    assert!(dialog.is_displayed().await.expect("shown"), "the dialog opens");
    carol
        .find(Locator::Css("#reason-dialog textarea[name=reason]"))
        .await
        .expect("reason")
        .send_keys("standby on the wrong timeline; failing back by hand")
        .await
        .expect("type");
    screenshot(&carol, "cockpit-abort-dialog").await;
    click(&carol, "#reason-dialog button[value=confirm]").await;
    let done = wait_for_text(&carol, "■ aborted at `promote` by user:carol").await;
    assert!(done.contains("standby on the wrong timeline; failing back by hand"), "{done}");
    assert!(done.contains("· not run"), "announce never ran: {done}");
    assert!(done.contains("ended: this is the final state"), "{done}");
    both_widths(&carol, "aborted").await;
    let _ = carol.close().await;
}

/// The names the role fields' list suggests now.
async fn suggestions(page: &Client) -> serde_json::Value {
    page.execute(
        "return Array.from(document.getElementById('people').options, o => o.value)",
        vec![],
    )
    .await
    .expect("suggestions")
}
