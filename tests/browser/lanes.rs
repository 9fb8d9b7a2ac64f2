//! Groups and fan-outs on the run page, in real Chromium: a `parallel` group shows its
//! branches as lanes side by side, and the header names the manual branch the run waits for;
//! once it is done the page follows the fan-out live, shows its items as a grid with their
//! progress in words, and opens a failed item to its output. When a fan-out fails, the
//! commander skips one failed item from the decision panel and retries another from the grid,
//! and the run goes on. Screenshots land in `target/screenshots/lanes-*.png`.

use fantoccini::{Client, Locator};

use super::{browser, chromedriver, click, scratch, screenshot, serve, sign_in, stand_ins};
use super::{fill, steady, wait_for_text};

/// A drain in two lanes (a command and a person), then a restart of twelve hosts, three at a
/// time, of which one fails within the limit.
const LANES: &str = r#"
name: lanes
title: Restart the fleet (lanes story)
roles:
  ops: { description: Confirms the US drain }
params:
  hosts:
    type: list
    default: [web1, web2, web3, web4, web5, web6, web7, web8, web9, web10, web11, web12]
    pattern: "^[a-z0-9]+$"
steps:
  - id: drain
    name: Drain both regions
    parallel:
      - id: drain_eu
        name: Drain Europe
        run: ["echo", "eu drained"]
        read_only: true
      - id: confirm_us
        name: Confirm the US drain
        manual: { role: ops, instructions: "Confirm US traffic is below 10 %." }
  - id: restart
    name: Restart each host
    for_each: "params.hosts"
    as: host
    concurrency: 3
    max_failures: 1
    run: ["sh", "-c", "echo restarting {{ host }}; if [ {{ host }} = web3 ]; then echo 'web3: unit failed' >&2; exit 1; fi"]
    idempotent: true
"#;

/// Whether the element `selector` finds is visible on the page.
async fn shown(browser: &Client, selector: &str) -> bool {
    let element =
        browser.find(Locator::Css(selector)).await.unwrap_or_else(|_| panic!("{selector}"));
    element.is_displayed().await.expect("displayed")
}

#[tokio::test]
async fn the_commander_sees_lanes_and_a_grid_of_items() {
    let dir = scratch("lanes");
    let path = stand_ins(&dir);
    std::fs::write(dir.join("lanes.yaml"), LANES).expect("runbook");
    steady(&dir, &["publish", "lanes.yaml"], "");
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();
    let carol = browser(&driver, &dir.join("lanes-carol")).await;
    sign_in(&carol, &base, "carol").await;

    carol.goto(&format!("{base}/runbooks/lanes")).await.expect("runbook page");
    fill(&carol, "role.ops", "carol").await;
    click(&carol, "input[name=mode][value='live']").await;
    click(&carol, "form[action$='/start'] button.primary").await;
    wait_for_text(&carol, "This is exactly what will run").await;
    click(&carol, "form[action$='/start'] button[type=submit]").await;

    // The group: two lanes, the person's branch named as what the run waits for, the group's
    // progress in words, and the header counting top-level steps only.
    let waiting = wait_for_text(&carol, "1 of 2 branches done").await;
    assert!(waiting.contains(r#"<div class="lanes">"#), "{waiting}");
    assert!(waiting.contains("Drain Europe") && waiting.contains("Confirm the US drain"));
    assert!(waiting.contains("<code>confirm_us</code> waits for"), "{waiting}");
    assert!(waiting.contains("step 1 of 2"), "{waiting}");
    assert!(!waiting.contains(r#"<li class="step ok" id="step-drain_eu""#), "no branch is a step");
    screenshot(&carol, "lanes-group").await;
    fill(&carol, "comment", "US below 5 %").await;
    click(&carol, "#answer-confirm_us button[value=complete]").await;

    // The fan-out, followed live to its end: a grid of twelve items, one failed.
    let done = wait_for_text(&carol, "11 of 12 hosts, 1 failed, limit 1").await;
    wait_for_text(&carol, "ended: this is the final state").await;
    assert!(done.contains(r#"<ul class="items">"#), "{done}");
    assert!(done.contains(r#"<span class="item-text">web12</span>"#), "{done}");
    assert!(done.contains("US below 5 %"), "the branch's note shows in its lane");
    let failed = r"#open-restart\[2\]";
    assert!(!shown(&carol, &format!("{failed} pre.output")).await, "items start folded");
    click(&carol, &format!("{failed} > summary")).await;
    assert!(shown(&carol, &format!("{failed} pre.output")).await, "the item opens");
    let opened = carol.source().await.expect("source");
    assert!(opened.contains("web3: unit failed"), "{opened}");
    carol
        .execute(r#"document.getElementById("open-restart[2]").scrollIntoView()"#, vec![])
        .await
        .expect("scroll to the item");
    screenshot(&carol, "lanes-grid").await;
    let _ = carol.close().await;
}

/// Four hosts at once: `web2` always fails, `web3` only the first time (it leaves `MARK`), so
/// the fan-out fails beyond its limit and awaits its commander.
const FLEET: &str = r#"
name: fleet
title: Restart the fleet (decisions story)
params:
  hosts: { type: list, default: [web1, web2, web3, web4] }
steps:
  - id: restart
    name: Restart each host
    for_each: "params.hosts"
    as: host
    concurrency: 4
    run: ["sh", "-c", "echo restarting {{ host }}; case {{ host }} in web2) echo 'web2: disk full' >&2; exit 1;; web3) if [ ! -e 'MARK' ]; then touch 'MARK'; echo 'web3: unit failed' >&2; exit 1; fi;; esac"]
    idempotent: true
    timeout: 10s
  - id: after
    name: Tell the team
    run: ["echo", "fleet restarted"]
    read_only: true
"#;

#[tokio::test]
async fn the_commander_skips_one_failed_item_and_retries_another() {
    let dir = scratch("fleet-decide");
    let path = stand_ins(&dir);
    let mark = dir.join("web3-failed-once");
    let fleet = FLEET.replace("MARK", &mark.display().to_string());
    std::fs::write(dir.join("fleet.yaml"), fleet).expect("runbook");
    steady(&dir, &["publish", "fleet.yaml"], "");
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();
    let carol = browser(&driver, &dir.join("fleet-carol")).await;
    sign_in(&carol, &base, "carol").await;

    carol.goto(&format!("{base}/runbooks/fleet")).await.expect("runbook page");
    click(&carol, "input[name=mode][value='live']").await;
    click(&carol, "form[action$='/start'] button.primary").await;
    wait_for_text(&carol, "This is exactly what will run").await;
    click(&carol, "form[action$='/start'] button[type=submit]").await;

    // The panel lists both failed items with what they printed and buttons of their own.
    let panel = wait_for_text(&carol, "2 items failed or were interrupted").await;
    assert!(panel.contains("web2: disk full") && panel.contains("web3: unit failed"), "{panel}");
    assert!(panel.contains("Retry runs only the failed and interrupted items"), "{panel}");
    screenshot(&carol, "lanes-decide-items").await;

    // Skip `web2` from the panel.
    click(&carol, r#"#decide form.decide-one[data-step="restart[1]"] button[value=skip]"#).await;
    wait_for_text(&carol, "1 item failed or was interrupted").await;

    // Retry `web3` from its cell in the grid.
    let cell = r"#open-restart\[2\]";
    click(&carol, &format!("{cell} > summary")).await;
    click(&carol, &format!("{cell} form.decide-one button[value=retry]")).await;

    // The run goes on to its end: `web3` restarted, `after` ran, both decisions on record.
    let done = wait_for_text(&carol, "ended: this is the final state").await;
    assert!(done.contains(r#"data-title="succeeded · fleet"#), "{done}");
    assert!(done.contains("skipped by user:carol at"), "{done}");
    assert!(!done.contains("skip decided by"), "said once, in the note: {done}");
    assert!(done.contains("retry decided by user:carol"), "{done}");
    assert!(done.contains("fleet restarted"), "{done}");
    assert!(!done.contains("decide-one"), "no decision is left to take: {done}");
    let _ = carol.close().await;
}
