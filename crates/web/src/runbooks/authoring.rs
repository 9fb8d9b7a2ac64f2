//! Publishing from the browser: the *new version* page of a runbook. Its one form holds the
//! YAML source (the current version's to begin with) and a change message, and three buttons
//! that each work without JavaScript: *Validate* shows every error at its line and column and
//! the lint warnings, *Preview* the diff against the current version, *Publish* stores the
//! version with its message. The form also holds the runbook's tests (the current version's
//! to begin with): *Validate* runs them and lists each case, and *Publish* refuses a version
//! whose tests fail. The checks are the API's own (`steady_engine::parse`,
//! `Engine::publish_with_tests`); who may publish is the API's rule too (the author role).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;
use steady_engine::accounts::GlobalRole;
use steady_engine::diagnostic::Diagnostic;
use steady_engine::engine::{EngineError, VersionTests};
use steady_engine::store::Published;

use super::api::change_message;
use super::pages::diff_lines;
use crate::AppState;
use crate::error::AppError;
use crate::extract::CsrfForm;
use crate::page::{Me, PageResult, render};

/// One problem with the source, as the page lists it.
struct Problem {
    /// `error` or `warning`, also the CSS class.
    severity: &'static str,
    line: usize,
    column: usize,
    message: String,
    /// The source line the problem is on, to read it in place.
    excerpt: String,
}

#[derive(Template)]
#[template(path = "new_version.html")]
struct NewVersionPage {
    me: Option<Me>,
    csrf: String,
    name: String,
    /// The version this one would follow.
    current: u32,
    source: String,
    message: String,
    /// The test file, as typed.
    tests: String,
    /// Each case of the tests and how it went, after *Validate* or a refused *Publish*: the
    /// name, and the first difference of a failing case.
    test_results: Option<Vec<(String, Option<String>)>>,
    /// What the last button found: `None` before any.
    problems: Option<Vec<Problem>>,
    /// The diff against the current version, after *Preview*.
    diff: Option<Vec<(&'static str, String)>>,
    /// Why the form was not published, besides the problems listed.
    refusal: Option<String>,
}

impl NewVersionPage {
    /// Shows why the tests refuse the version: each failing case, or the test file's errors.
    fn refuse_tests(&mut self, error: EngineError) {
        let results = match error {
            EngineError::TestsFailed(cases) => {
                cases.into_iter().map(|case| (case.name, case.failure)).collect()
            }
            EngineError::InvalidTests(diagnostics) => diagnostics
                .into_iter()
                .map(|d| {
                    let at = format!("tests line {}, column {}", d.at.line, d.at.column);
                    (at, Some(d.message))
                })
                .collect(),
            other => vec![("tests".to_owned(), Some(other.to_string()))],
        };
        self.test_results = Some(results);
        self.refusal = Some("the tests do not pass: fix the runbook or the tests".to_owned());
    }

    fn errors(&self) -> usize {
        self.problems.iter().flatten().filter(|p| p.severity == "error").count()
    }

    fn warnings(&self) -> usize {
        self.problems.iter().flatten().filter(|p| p.severity == "warning").count()
    }
}

/// The new version form, filled with the current version's source.
pub(crate) async fn new_version_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
) -> PageResult {
    me.caller.require(GlobalRole::Author)?;
    let (latest, _) = super::latest(&state, &name).await?;
    Ok(render(&NewVersionPage {
        csrf: me.csrf.clone(),
        me: Some(me),
        name,
        current: latest.version,
        source: latest.source,
        message: String::new(),
        tests: latest.tests.unwrap_or_default(),
        test_results: None,
        problems: None,
        diff: None,
        refusal: None,
    }))
}

#[derive(Deserialize)]
pub(crate) struct NewVersionForm {
    source: String,
    #[serde(default)]
    message: String,
    /// The test file; blank publishes the version without tests.
    #[serde(default)]
    tests: String,
    /// Which button: `validate`, `preview` or `publish`.
    action: String,
}

/// The form's three buttons. Anything but a published version answers the page again with
/// the source as typed, so that nothing written is lost; a refusal is a 422 with the page.
pub(crate) async fn new_version_form(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { me, form }: CsrfForm<NewVersionForm>,
) -> PageResult {
    me.caller.require(GlobalRole::Author)?;
    let (latest, _) = super::latest(&state, &name).await?;
    // Browsers send a textarea's line ends as CRLF: the stored source keeps the author's LF.
    let source = form.source.replace("\r\n", "\n");
    // An author's source may be large: parse it on the blocking pool, not the async threads.
    let (source, parsed, problems) = tokio::task::spawn_blocking(move || {
        let parsed = steady_engine::parse(&source);
        let problems = problems(&source, &parsed.diagnostics);
        (source, parsed, problems)
    })
    .await
    .map_err(AppError::internal)?;
    let mut refusal =
        parsed.runbook.as_ref().filter(|runbook| runbook.name != name).map(|runbook| {
            format!(
                "this page publishes `{name}`, but the source is named `{}`: keep the name",
                runbook.name
            )
        });
    if let Err(error) = change_message(Some(&form.message)) {
        refusal = Some(error.message);
    }
    let valid = parsed.runbook.is_some() && refusal.is_none();
    let mut page = NewVersionPage {
        me: Some(me.clone()),
        csrf: me.csrf.clone(),
        name,
        current: latest.version,
        source,
        message: form.message,
        tests: form.tests.replace("\r\n", "\n"),
        test_results: None,
        problems: Some(problems),
        diff: None,
        refusal,
    };
    let tests = Some(page.tests.clone()).filter(|tests| !tests.trim().is_empty());
    // The form always carries the tests: a blank field drops them, as its label says.
    let version_tests = match &tests {
        Some(tests) => VersionTests::With(tests),
        None => VersionTests::Without,
    };
    match form.action.as_str() {
        "validate" => {
            if let (Some(runbook), Some(tests)) = (&parsed.runbook, &tests) {
                match steady_engine::engine::run_tests(&page.source, runbook, tests).await {
                    Ok(reports) => {
                        page.test_results =
                            Some(reports.into_iter().map(|case| (case.name, None)).collect());
                    }
                    Err(error) => page.refuse_tests(error),
                }
            }
        }
        "preview" => {
            let old = format!("v{}", latest.version);
            let new = page.source.clone();
            page.diff = Some(diff_lines(latest.source, new, old, "new version".to_owned()).await);
        }
        "publish" if valid => {
            let message = change_message(Some(&page.message))?;
            let published = state
                .engine
                .publish_with_tests(&page.source, version_tests, &me.actor, message)
                .await;
            match published {
                Err(error @ (EngineError::InvalidTests(_) | EngineError::TestsFailed(_))) => {
                    page.refuse_tests(error);
                }
                Err(error) => return Err(error.into()),
                Ok(Published::New(version)) => {
                    let to = format!("/runbooks/{}#v{}", page.name, version.version);
                    return Ok(Redirect::to(&to).into_response());
                }
                Ok(Published::Unchanged(version)) => {
                    page.refusal = Some(format!(
                        "nothing changed: this is v{} already, so nothing was published",
                        version.version
                    ));
                }
            }
        }
        "publish" => {
            let errors = "fix the errors below before publishing".to_owned();
            page.refusal = page.refusal.or(Some(errors));
        }
        other => {
            return Err(AppError::invalid(format!(
                "unknown action `{other}`: validate, preview or publish"
            ))
            .into());
        }
    }
    // Anything that stops the version from being published is a 422, with the page.
    let status = if page.errors() > 0 || page.refusal.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, render(&page)).into_response())
}

/// Every diagnostic with the line it points at, errors first, each in source order.
fn problems(source: &str, diagnostics: &[Diagnostic]) -> Vec<Problem> {
    let lines: Vec<&str> = source.lines().collect();
    let mut problems: Vec<Problem> = diagnostics
        .iter()
        .map(|d| Problem {
            severity: if d.is_error() { "error" } else { "warning" },
            line: d.at.line,
            column: d.at.column,
            message: d.message.clone(),
            excerpt: d
                .at
                .line
                .checked_sub(1)
                .and_then(|i| lines.get(i))
                .map(|l| l.to_string())
                .unwrap_or_default(),
        })
        .collect();
    problems.sort_by_key(|p| (p.severity != "error", p.line, p.column));
    problems
}
