//! The runbook pages: the catalogue (versions, rehearsals, lint warnings, a folder behind the
//! database), one runbook's procedure and start form, the diff between two versions, and the
//! printable procedure.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use steady_engine::accounts::GlobalRole;
use steady_engine::engine::now;
use steady_engine::plan::Plan;
use steady_engine::rehearsal::RehearsalQuery;
use steady_engine::run::{RunFilter, RunMode, RunOrigin, RunStatus};
use steady_engine::runbook::{ParamType, ParamValue, Runbook};

use super::figures;
use crate::AppState;
use crate::dto;
use crate::error::AppError;
use crate::page::{Me, Moment, PageResult, absolute, render};

struct RunbookRow {
    /// Set when the server's runbooks folder holds an older version than the latest.
    behind: Option<String>,
    /// Lint warnings of the current version, as `line: message`.
    warnings: Vec<String>,
    name: String,
    title: Option<String>,
    version: u32,
    owner: Option<String>,
    last_live: Option<Moment>,
    last_drill: Option<Moment>,
    last_dry_run: Option<Moment>,
    rehearsal_badge: Option<String>,
    rehearsal_class: &'static str,
    /// The rehearsed p90 of the whole procedure against `rto`, and whether it is over.
    against_rto: Option<(String, bool)>,
    verification: Option<super::VerificationBadge>,
}

#[derive(Template)]
#[template(path = "runbooks.html")]
struct RunbooksPage {
    me: Option<Me>,
    runbooks: Vec<RunbookRow>,
}

pub(crate) async fn runbooks(State(state): State<AppState>, me: Me) -> PageResult {
    let mut rows = Vec::new();
    let verifications = state.store.verifications().await?;
    for name in state.store.runbook_names().await? {
        let Some(latest) = state.store.runbook_version(&name, None).await? else { continue };
        let runbook = state.engine.runbook(&name, latest.version).await?;
        // People's runs: a runbook verified every minute has far more verifications.
        let runs = state
            .store
            .runs(&RunFilter {
                runbook: Some(name.clone()),
                origin: Some(RunOrigin::Person),
                limit: Some(200),
                ..RunFilter::default()
            })
            .await?;
        // The latest succeeded run of the current version in `mode`.
        let last = |mode: RunMode| {
            runs.iter()
                .filter(|r| {
                    r.mode == mode
                        && r.status == RunStatus::Succeeded
                        && r.version == latest.version
                })
                .map(|r| r.created_at)
                .max()
        };
        let live = runs.iter().filter(|r| r.mode == RunMode::Live).map(|r| r.created_at).max();
        let drill = last(RunMode::Drill);
        let dry = last(RunMode::DryRun);
        // Rehearsed means this version was: a new version is never rehearsed until a drill, a
        // live run or a verification of it succeeds.
        let verified = last_verified(&state, &name, latest.version).await?;
        let rehearsed = [drill, last(RunMode::Live), verified].into_iter().flatten().max();
        let (rehearsal_badge, rehearsal_class) = match (rehearsed, runbook.review_every) {
            (None, _) => (Some("⚠ never rehearsed".to_owned()), "bad"),
            (Some(at), Some(every))
                if chrono::Duration::from_std(every.as_std())
                    .is_ok_and(|every| at + every < now()) =>
            {
                (Some("⚠ review overdue".to_owned()), "waiting")
            }
            (Some(_), _) => (Some("✓ rehearsed".to_owned()), "ok"),
        };
        let date = |at: Option<chrono::DateTime<chrono::Utc>>| at.map(Moment::new);
        let warnings = steady_engine::parse(&latest.source)
            .diagnostics
            .iter()
            .filter(|d| !d.is_error())
            .map(|d| format!("line {}: {}", d.at.line, d.message))
            .collect();
        let behind =
            state.config.folder_versions.get(&name).filter(|file| **file < latest.version).map(
                |file| {
                    format!(
                        "the folder is behind the database: file matches v{file}, latest is v{}",
                        latest.version
                    )
                },
            );
        let whole_runs = RehearsalQuery { steps: false, ..RehearsalQuery::of(&name) };
        let against_rto =
            figures::against_rto(&figures::figures(&state, &whole_runs).await?, &runbook);
        let state_of = verifications.iter().find(|verification| verification.runbook == name);
        let verification = super::VerificationBadge::new(&runbook, state_of);
        rows.push(RunbookRow {
            against_rto,
            verification,
            behind,
            warnings,
            name,
            title: runbook.title.clone(),
            version: latest.version,
            owner: runbook.owner.clone(),
            last_live: date(live),
            last_drill: date(drill),
            last_dry_run: date(dry),
            rehearsal_badge,
            rehearsal_class,
        });
    }
    Ok(render(&RunbooksPage { me: Some(me), runbooks: rows }))
}

/// When a verification of this version of the runbook last passed.
async fn last_verified(
    state: &AppState,
    name: &str,
    version: u32,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, AppError> {
    let passed = state
        .store
        .runs(&RunFilter {
            runbook: Some(name.to_owned()),
            origin: Some(RunOrigin::Verification),
            version: Some(version),
            status: Some(RunStatus::Succeeded),
            limit: Some(1),
            ..RunFilter::default()
        })
        .await?;
    Ok(passed.first().map(|run| run.created_at))
}

struct ProcedureStep {
    id: String,
    title: String,
    kind: &'static str,
    tags: Vec<String>,
    does: String,
}

struct ParamField {
    name: String,
    kind: &'static str,
    required: bool,
    /// The default as the field shows it: a list's items joined by commas.
    default: String,
    choices: Vec<String>,
    /// A list is typed as comma-separated items, even with an `enum`: a single choice would
    /// allow only one item.
    list: bool,
    description: Option<String>,
}

/// One published version on the runbook's page: what the author said, the source and the
/// lint warnings it earned.
struct VersionRow {
    version: u32,
    published_at: Moment,
    published_by: String,
    message: Option<String>,
    source: String,
    warnings: Vec<String>,
    /// How many test cases passed against the version when it was published.
    tests: usize,
    /// The test file published with it.
    tests_source: Option<String>,
}

#[derive(Template)]
#[template(path = "runbook.html")]
struct RunbookPage {
    me: Option<Me>,
    csrf: String,
    name: String,
    version: u32,
    title: Option<String>,
    description: Option<String>,
    steps: Vec<ProcedureStep>,
    params: Vec<ParamField>,
    roles: Vec<(String, String)>,
    versions: Vec<VersionRow>,
    /// What the succeeded drills and live runs measured.
    figures: figures::FiguresSection,
    can_start: bool,
    /// Whether the signed-in person may publish (the author role, as the API asks).
    can_publish: bool,
    /// The people a run role can go to: enabled users with the responder role, who are the
    /// ones able to answer in a run. Offered as suggestions; the engine still checks.
    people: Vec<String>,
    /// Where the runbook's verification stands, when its latest version declares `verify`.
    verification: Option<super::VerificationBadge>,
}

/// Parameter values for reading a procedure before any run: each default, or `⟨name⟩` where
/// there is none.
fn placeholder_params(runbook: &Runbook) -> BTreeMap<String, ParamValue> {
    runbook
        .params
        .iter()
        .map(|p| {
            let placeholder = || ParamValue::String(format!("⟨{}⟩", p.name));
            (p.name.clone(), p.default.clone().unwrap_or_else(placeholder))
        })
        .collect()
}

/// The procedure as text a person reads: each step's rendered action, with placeholders.
fn procedure(runbook: &Runbook) -> Vec<ProcedureStep> {
    let plan = Plan::new(runbook, &placeholder_params(runbook));
    plan.steps
        .iter()
        .chain(&plan.rollback)
        .map(|step| {
            let mut tags = Vec::new();
            if step.read_only {
                tags.push("read-only".to_owned());
            }
            if step.number.starts_with('R') {
                tags.push("rollback".to_owned());
            }
            if let Some(fan_out) = &step.fan_out {
                tags.push(format!("for each {}, {} at once", fan_out.name, fan_out.concurrency));
            }
            ProcedureStep {
                id: step.id.clone(),
                title: step.name.clone().unwrap_or_else(|| step.id.clone()),
                kind: match &step.action {
                    steady_engine::plan::Action::Run { .. }
                    | steady_engine::plan::Action::Shell { .. } => "run",
                    steady_engine::plan::Action::Http { .. } => "http",
                    steady_engine::plan::Action::Check { .. } => "check",
                    steady_engine::plan::Action::Manual { .. } => "manual",
                    steady_engine::plan::Action::Approval { .. } => "gate",
                    steady_engine::plan::Action::Sleep { .. } => "sleep",
                    steady_engine::plan::Action::Parallel { .. } => "parallel",
                    steady_engine::plan::Action::ForEach { .. } => "for each",
                },
                tags,
                does: dto::describe_action(&step.action),
            }
        })
        .collect()
}

pub(crate) async fn runbook_page(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
) -> PageResult {
    let (latest, runbook) = super::latest(&state, &name).await?;
    let versions = state
        .store
        .runbook_versions(&name)
        .await?
        .iter()
        .rev()
        .map(|v| VersionRow {
            version: v.version,
            published_at: Moment::new(v.published_at),
            published_by: v.published_by.to_string(),
            message: v.message.clone(),
            warnings: lint_warnings(&v.source),
            source: v.source.clone(),
            tests: super::api::test_cases(v),
            tests_source: v.tests.clone(),
        })
        .collect();
    let params = runbook
        .params
        .iter()
        .map(|p| ParamField {
            name: p.name.clone(),
            kind: p.kind.as_str(),
            required: p.required,
            default: match &p.default {
                Some(ParamValue::List(items)) => items.join(", "),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            choices: p.choices.iter().map(ToString::to_string).collect(),
            list: p.kind == ParamType::List,
            description: p.description.clone(),
        })
        .collect();
    let figures = figures::figures(&state, &RehearsalQuery::of(&name)).await?;
    let verified = state.store.verification(&name).await?;
    let page = RunbookPage {
        figures: figures::FiguresSection::new(&figures, &runbook),
        verification: super::VerificationBadge::new(&runbook, verified.as_ref()),
        csrf: me.csrf.clone(),
        can_start: me.caller.user.has(GlobalRole::Responder),
        can_publish: me.caller.user.has(GlobalRole::Author),
        people: responders(&state).await?,
        name: name.clone(),
        version: latest.version,
        title: runbook.title.clone(),
        description: runbook.description.clone(),
        steps: procedure(&runbook),
        params,
        roles: runbook
            .roles
            .iter()
            .map(|r| (r.name.clone(), r.description.clone().unwrap_or_default()))
            .collect(),
        versions,
        me: Some(me),
    };
    Ok(render(&page))
}

/// The lint warnings of a stored source, as `line L, column C: message`.
fn lint_warnings(source: &str) -> Vec<String> {
    steady_engine::parse(source)
        .diagnostics
        .iter()
        .filter(|d| !d.is_error())
        .map(|d| format!("line {}, column {}: {}", d.at.line, d.at.column, d.message))
        .collect()
}

/// The names of enabled users with the responder role: who can hold a run role and act on it.
pub(crate) async fn responders(state: &AppState) -> Result<Vec<String>, AppError> {
    let users = state.accounts.users().await?;
    Ok(users
        .into_iter()
        .filter(|user| !user.disabled && user.has(GlobalRole::Responder))
        .map(|user| user.name)
        .collect())
}

#[derive(Template)]
#[template(path = "diff.html")]
struct DiffPage {
    me: Option<Me>,
    name: String,
    version: u32,
    previous: u32,
    /// What the author of the newer version said changed.
    message: Option<String>,
    lines: Vec<(&'static str, String)>,
}

#[derive(Deserialize)]
pub(crate) struct VersionForm {
    version: u32,
}

pub(crate) async fn diff(
    State(state): State<AppState>,
    Path(name): Path<String>,
    me: Me,
    Query(form): Query<VersionForm>,
) -> PageResult {
    let missing = || {
        AppError::not_found(format!("`{name}` has no version {} with one before it", form.version))
    };
    let current =
        state.store.runbook_version(&name, Some(form.version)).await?.ok_or_else(missing)?;
    let previous = match form.version.checked_sub(1).filter(|v| *v > 0) {
        Some(version) => {
            state.store.runbook_version(&name, Some(version)).await?.ok_or_else(missing)?
        }
        None => return Err(missing().into()),
    };
    let lines = diff_lines(
        previous.source.clone(),
        current.source.clone(),
        format!("v{}", previous.version),
        format!("v{}", current.version),
    )
    .await;
    Ok(render(&DiffPage {
        me: Some(me),
        name,
        version: current.version,
        previous: previous.version,
        message: current.message.clone(),
        lines,
    }))
}

/// The most lines a diff page shows; the rest is summed up in one line.
const DIFF_LINES_SHOWN: usize = 5_000;

/// How long computing a diff may take before it settles for a correct but longer one:
/// sources are an author's input, and the best diff of two large, unrelated texts can take
/// minutes.
const DIFF_TIME: std::time::Duration = std::time::Duration::from_millis(300);

/// A unified diff of two sources as lines with their CSS class (`add`, `del`, `hunk`,
/// `same`); none when they are equal. Computed on the blocking pool, within [`DIFF_TIME`],
/// at most [`DIFF_LINES_SHOWN`] lines.
pub(crate) async fn diff_lines(
    old: String,
    new: String,
    old_name: String,
    new_name: String,
) -> Vec<(&'static str, String)> {
    tokio::task::spawn_blocking(move || diff_lines_now(&old, &new, &old_name, &new_name))
        .await
        .unwrap_or_default()
}

fn diff_lines_now(
    old: &str,
    new: &str,
    old_name: &str,
    new_name: &str,
) -> Vec<(&'static str, String)> {
    let text = similar::TextDiff::configure().timeout(DIFF_TIME).diff_lines(old, new);
    let unified = text.unified_diff().context_radius(3).header(old_name, new_name).to_string();
    let mut lines: Vec<(&'static str, String)> = unified
        .lines()
        .take(DIFF_LINES_SHOWN)
        .map(|line| {
            let class = match line.chars().next() {
                Some('+') => "add",
                Some('-') => "del",
                Some('@') => "hunk",
                _ => "same",
            };
            (class, line.to_owned())
        })
        .collect();
    let total = unified.lines().count();
    if total > DIFF_LINES_SHOWN {
        lines.push(("hunk", format!("… {} more lines not shown", total - DIFF_LINES_SHOWN)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_unrelated_source_diffs_quickly_and_shows_a_bounded_page() {
        let old: String = (0..100_000).map(|i| format!("a{i}: {i}\n")).collect();
        let new: String = (0..100_000).map(|i| format!("k{i}: {i}\n")).collect();
        let lines = diff_lines_now(&old, &new, "v1", "new version");
        assert_eq!(lines.len(), DIFF_LINES_SHOWN + 1);
        assert!(lines.last().unwrap().1.ends_with("more lines not shown"));
    }
}

#[derive(Template)]
#[template(path = "print.html")]
struct PrintPage {
    name: String,
    version: u32,
    printed: String,
    plan: String,
}

pub(crate) async fn print(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _me: Me,
) -> PageResult {
    let (latest, runbook) = super::latest(&state, &name).await?;
    let plan = Plan::new(&runbook, &placeholder_params(&runbook)).to_string();
    let printed = absolute(now());
    Ok(render(&PrintPage { name, version: latest.version, printed, plan }))
}
