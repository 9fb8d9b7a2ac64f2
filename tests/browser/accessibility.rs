//! Every page, checked by axe-core in the real browser, in the light theme and the dark one:
//! no violation of impact serious or critical (contrast, names, labels, landmarks…). axe-core
//! is vendored for the tests only (`vendor/`, MPL-2.0) and injected through WebDriver, which
//! the pages' Content-Security-Policy does not govern. Screenshots of each page, on a desktop
//! and a phone, in both themes, land in `target/screenshots/`.

use std::path::Path;

use fantoccini::{Client, ClientBuilder};

use super::wait_for_text;
use super::{chromedriver, click, fill, scratch, screenshot, serve, sign_in, stand_ins, steady};

/// axe-core 4, as published on npm.
const AXE: &str = include_str!("vendor/axe.min.js");

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Theme {
    Light,
    Dark,
}

impl Theme {
    pub(super) fn name(self) -> &'static str {
        if self == Theme::Dark { "dark" } else { "light" }
    }
}

/// A browser that prefers the given colour scheme, as a person's system setting would.
pub(super) async fn themed_browser(driver: &str, profile: &Path, theme: Theme) -> Client {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--window-size=1280,1000".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if theme == Theme::Dark {
        args.push("--force-dark-mode".into());
        // Blink's preferred colour scheme: 0 is dark.
        args.push("--blink-settings=preferredColorScheme=0".into());
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("a Chromium session")
}

/// Runs axe on the page shown; returns its serious and critical violations, one line each
/// with the elements at fault.
async fn violations(browser: &Client) -> Vec<String> {
    browser.execute(&format!("{AXE}\nreturn typeof axe;"), vec![]).await.expect("axe loads");
    let found = browser
        .execute_async(
            r#"var done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ["violations"] }).then(function (result) {
              done(result.violations
                .filter(function (v) { return v.impact === "serious" || v.impact === "critical"; })
                .map(function (v) {
                  return v.id + " (" + v.impact + "): " + v.help + "\n      " + v.nodes.map(function (n) {
                    return n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " ");
                  }).join("\n      ");
                }));
            }, function (error) { done(["axe failed: " + error]); });"#,
            vec![],
        )
        .await
        .expect("axe runs");
    serde_json::from_value(found).expect("a list of violations")
}

/// Checks the page shown with axe, and takes its screenshots on a desktop and on a phone.
pub(super) async fn check(browser: &Client, theme: Theme, name: &str, failures: &mut Vec<String>) {
    let dark = browser
        .execute("return matchMedia('(prefers-color-scheme: dark)').matches;", vec![])
        .await
        .expect("media query");
    assert_eq!(
        dark,
        serde_json::json!(theme == Theme::Dark),
        "the browser prefers {}",
        theme.name()
    );
    for violation in violations(browser).await {
        failures.push(format!("{name} ({}): {violation}", theme.name()));
    }
    screenshot(browser, &format!("{name}-{}-desktop", theme.name())).await;
    browser.set_window_size(390, 844).await.expect("phone size");
    screenshot(browser, &format!("{name}-{}-phone", theme.name())).await;
    browser.set_window_size(1280, 1000).await.expect("desktop size");
}

/// Fills the PostgreSQL runbook's start form and continues to the confirmation page.
async fn to_confirmation(browser: &Client, base: &str, mode: &str) {
    browser.goto(&format!("{base}/runbooks/postgres-failover")).await.expect("runbook page");
    fill(browser, "param.cluster", "main").await;
    fill(browser, "param.standby_host", "db2").await;
    fill(browser, "role.approver", "alice").await;
    fill(browser, "role.dba", "alice, carol").await;
    click(browser, &format!("input[name=mode][value='{mode}']")).await;
    click(browser, "form[action$='/start'] button.primary").await;
    wait_for_text(browser, "This is exactly what will run").await;
}

/// Starts the run confirmed on the page shown; returns the run page's path.
async fn start(browser: &Client) -> String {
    click(browser, "form[action$='/start'] button[type=submit]").await;
    wait_for_text(browser, "data-live-run").await;
    browser.current_url().await.expect("url").path().to_owned()
}

async fn signed_in_as(browser: &Client, base: &str, name: &str) {
    browser.delete_all_cookies().await.expect("sign out");
    sign_in(browser, base, name).await;
}

#[tokio::test]
async fn every_page_is_accessible_in_both_themes() {
    let dir = scratch("accessibility");
    let path = stand_ins(&dir);
    steady(
        &dir,
        &["user", "add", "ada", "--role", "admin", "--password-stdin"],
        "ada-password-long",
    );
    let (_server, base) = serve(&dir, &path);
    let (_driver, driver) = chromedriver();

    // A dry run that has finished and a live run waiting for its DBA, alice.
    let setup = themed_browser(&driver, &dir.join("setup-profile"), Theme::Light).await;
    sign_in(&setup, &base, "carol").await;
    to_confirmation(&setup, &base, "dry-run").await;
    let dry = start(&setup).await;
    wait_for_text(&setup, r#"<section class="banner ok""#).await;
    to_confirmation(&setup, &base, "live").await;
    let live = start(&setup).await;
    wait_for_text(&setup, "✓ Done").await;
    let _ = setup.close().await;

    let mut failures = Vec::new();
    for theme in [Theme::Light, Theme::Dark] {
        let browser =
            themed_browser(&driver, &dir.join(format!("{}-profile", theme.name())), theme).await;
        browser.goto(&format!("{base}/login")).await.expect("login page");
        wait_for_text(&browser, "Sign in").await;
        check(&browser, theme, "login", &mut failures).await;

        // The admin sees every page.
        sign_in(&browser, &base, "ada").await;
        for (name, page, shows) in [
            ("runs", "/runs".to_owned(), "postgres-failover"),
            ("runbooks", "/runbooks".to_owned(), "postgres-failover"),
            ("runbook", "/runbooks/postgres-failover".to_owned(), "Procedure"),
            ("run-live", live.clone(), "data-live-run"),
            ("run-dry", dry.clone(), "would run"),
            ("audit", "/audit".to_owned(), "chain verified"),
            ("users", "/users".to_owned(), "API tokens"),
            ("nodes", "/nodes".to_owned(), "this one"),
            ("error", "/runs/00000000-0000-7000-8000-000000000000".to_owned(), "no run"),
        ] {
            browser.goto(&format!("{base}{page}")).await.expect(name);
            wait_for_text(&browser, shows).await;
            check(&browser, theme, name, &mut failures).await;
        }

        // Alice's work, and the confirmation a responder sees before a live run.
        signed_in_as(&browser, &base, "alice").await;
        wait_for_text(&browser, "Fence the old primary").await;
        check(&browser, theme, "my-work", &mut failures).await;
        signed_in_as(&browser, &base, "carol").await;
        to_confirmation(&browser, &base, "live").await;
        check(&browser, theme, "confirm", &mut failures).await;
        let _ = browser.close().await;
    }
    assert!(
        failures.is_empty(),
        "serious or critical accessibility violations:\n{}",
        failures.join("\n")
    );
}
