//! *My work*, the commander's cockpit: the runs alerts proposed, for a responder to take
//! command of or dismiss, the decisions the signed-in person owes on runs they command, the
//! runs they command, what waits for them (gates and manual steps they may answer), and the
//! gates in their roles they may not answer, as waiting on others. What is
//! whose is the engine's `policy::work_for`, exactly as the engine would accept it; the page
//! is kept current by its script following `/api/v1/events`.

use askama::Template;
use axum::extract::State;
use steady_engine::accounts::GlobalRole;
use steady_engine::plan::{Action, Rendered};
use steady_engine::policy::{self, Work};
use steady_engine::run::{self, RunFilter, RunSnapshot, RunStatus, StepStatus};
use steady_engine::runbook::{Runbook, Step, StepKind};
use uuid::Uuid;

use super::show::alerts::{self, ProposalView};
use super::show::params_shown;
use super::{run_badge, short_id, status_class};
use crate::AppState;
use crate::page::{CodeSpans, Me, Moment, PageResult, render};

/// A gate or manual step the person may answer now.
struct WorkItem {
    run_id: Uuid,
    runbook: String,
    mode: String,
    step_id: String,
    step_title: String,
    kind: &'static str,
    role: String,
    /// Since when it has waited.
    waited: Moment,
    deadline: Option<Moment>,
    prompt: Option<String>,
    since: chrono::DateTime<chrono::Utc>,
}

/// Something only the person, as a run's commander, can settle.
struct Decision {
    run_id: Uuid,
    runbook: String,
    mode: String,
    step_id: String,
    step_title: String,
    /// What is wrong and what the commander can do about it.
    what: CodeSpans,
    /// The label of the link to the place on the run page where it is settled.
    act: &'static str,
}

impl Decision {
    fn new(snapshot: &RunSnapshot, step: &Step, what: String, act: &'static str) -> Decision {
        Decision {
            run_id: snapshot.run.id,
            runbook: snapshot.run.runbook.clone(),
            mode: crate::dto::mode_label(&snapshot.run),
            step_id: step.id.clone(),
            step_title: step.title().to_owned(),
            what: CodeSpans(what),
            act,
        }
    }
}

/// A run the person commands.
struct Commanded {
    run_id: Uuid,
    short: String,
    runbook: String,
    mode: String,
    badge: String,
    status_class: &'static str,
    /// Where the run is: what its waiting steps wait for, or its status in words.
    at: Vec<CodeSpans>,
}

/// A gate in the person's role that someone else must answer.
struct Others {
    run_id: Uuid,
    runbook: String,
    step_id: String,
    step_title: String,
    /// Why it is not theirs, as the policy says.
    why: CodeSpans,
    waiting_for: CodeSpans,
}

/// A run an alert proposed that nobody has taken or dismissed yet.
struct Proposed {
    run_id: Uuid,
    runbook: String,
    title: String,
    proposal: ProposalView,
}

#[derive(Template)]
#[template(path = "work.html")]
struct WorkPage {
    me: Option<Me>,
    csrf: String,
    /// Newest first, at most [`PROPOSALS_SHOWN`].
    proposals: Vec<Proposed>,
    /// Whether more proposals are open than shown: an alert storm is listed on the runs page.
    more_proposals: bool,
    decisions: Vec<Decision>,
    commanded: Vec<Commanded>,
    items: Vec<WorkItem>,
    others: Vec<Others>,
    /// Whether the person can act in runs at all (the responder role).
    responder: bool,
    /// The newest audit event when the page was rendered: the live script follows from here,
    /// so that nothing happening between rendering and listening is missed.
    last_seq: i64,
}

/// Every active run with the runbook version it follows: waiting, needing attention or
/// running (a run being driven is still commanded).
async fn active_runs(
    state: &AppState,
) -> Result<Vec<(std::sync::Arc<Runbook>, RunSnapshot)>, crate::page::PageError> {
    let mut runs = Vec::new();
    for status in [RunStatus::NeedsAttention, RunStatus::Waiting, RunStatus::Running] {
        let filter = RunFilter { status: Some(status), limit: Some(500), ..RunFilter::default() };
        for record in state.store.runs(&filter).await? {
            let Some(snapshot) = state.store.run(record.id).await? else { continue };
            let runbook = state.engine.runbook(&record.runbook, record.version).await?;
            runs.push((runbook, snapshot));
        }
    }
    Ok(runs)
}

/// How many proposals *my work* shows in full: each costs a few reads (its alerts, its facts),
/// and in an alert storm the page must stay quick; the rest are counted and linked.
const PROPOSALS_SHOWN: u32 = 10;

/// The newest proposals nobody has taken or dismissed, each with its alerts and facts, and
/// whether there are more.
async fn proposals(
    state: &AppState,
    me: &Me,
) -> Result<(Vec<Proposed>, bool), crate::page::PageError> {
    let filter = RunFilter {
        status: Some(RunStatus::Proposed),
        limit: Some(PROPOSALS_SHOWN + 1),
        ..RunFilter::default()
    };
    let mut open = state.store.runs(&filter).await?;
    let more = open.len() > PROPOSALS_SHOWN as usize;
    open.truncate(PROPOSALS_SHOWN as usize);
    let mut proposals = Vec::new();
    for record in open {
        let runbook = state.engine.runbook(&record.runbook, record.version).await?;
        let params = params_shown(state, &runbook, &record);
        let Some(proposal) = alerts::proposal(state, &record, params, &me.actor).await? else {
            continue;
        };
        proposals.push(Proposed {
            run_id: record.id,
            runbook: record.runbook.clone(),
            title: runbook.title.clone().unwrap_or_else(|| record.runbook.clone()),
            proposal,
        });
    }
    Ok((proposals, more))
}

pub(crate) async fn work(State(state): State<AppState>, me: Me) -> PageResult {
    let last_seq = state.store.latest_seq().await?;
    let responder = me.caller.user.has(GlobalRole::Responder);
    let runs = if responder { active_runs(&state).await? } else { Vec::new() };
    let pairs = || runs.iter().map(|(runbook, snapshot)| (&**runbook, snapshot));
    let (proposals, more_proposals) =
        if responder { proposals(&state, &me).await? } else { (Vec::new(), false) };
    let mut page = WorkPage {
        csrf: me.csrf.clone(),
        proposals,
        more_proposals,
        me: None,
        decisions: Vec::new(),
        commanded: Vec::new(),
        items: Vec::new(),
        others: Vec::new(),
        responder,
        last_seq,
    };
    for (runbook, snapshot) in pairs() {
        if policy::may_command(&snapshot.run, &me.actor).is_ok() {
            page.commanded.push(commanded(runbook, snapshot));
        }
    }
    for item in policy::work_for(&me.actor, pairs()) {
        match item {
            Work::Answer { snapshot, step, state: state_of, role } => {
                let record = &snapshot.run;
                let since = state_of.started_at.unwrap_or(record.created_at);
                page.items.push(WorkItem {
                    run_id: record.id,
                    runbook: record.runbook.clone(),
                    mode: crate::dto::mode_label(record),
                    step_id: step.id.clone(),
                    step_title: step.title().to_owned(),
                    kind: if matches!(step.kind, StepKind::Approval(_)) {
                        "approval"
                    } else {
                        "manual step"
                    },
                    role: role.to_owned(),
                    waited: Moment::new(since),
                    deadline: state_of.deadline.map(Moment::new),
                    prompt: match state_of.rendered.as_ref().and_then(Rendered::action) {
                        Some(Action::Approval { prompt, .. }) => prompt.clone(),
                        Some(Action::Manual { instructions, .. }) => Some(instructions.clone()),
                        _ => None,
                    },
                    since,
                });
            }
            Work::Decide { snapshot, step, offered } => {
                let status = snapshot.step(&step.id).map_or("stopped", |s| s.status.as_str());
                let words: Vec<&str> = offered
                    .into_iter()
                    .map(|decision| match decision {
                        run::Decision::Retry => "retry it",
                        run::Decision::Skip => "skip it",
                        run::Decision::Rollback => "roll back",
                        run::Decision::Abort => "abort",
                    })
                    .collect();
                let choices = match words.split_last() {
                    Some((last, [])) => (*last).to_owned(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => String::new(),
                };
                let what = format!(
                    "The step {} and the run waits for your decision: {choices}.",
                    status.replace('_', " ")
                );
                page.decisions.push(Decision::new(snapshot, step, what, "Decide"));
            }
            Work::Unreachable { snapshot, step, missing } => {
                let what = format!(
                    "Nobody in the run may give {missing} of the approvals this gate needs: \
                     give its role to someone who may approve. It waits for {}.",
                    policy::waiting_for(snapshot, step)
                );
                page.decisions.push(Decision::new(snapshot, step, what, "Assign someone"));
            }
            Work::WaitingOnOthers { snapshot, step, refusal } => page.others.push(Others {
                run_id: snapshot.run.id,
                runbook: snapshot.run.runbook.clone(),
                step_id: step.id.clone(),
                step_title: step.title().to_owned(),
                why: CodeSpans(refusal.to_string()),
                waiting_for: CodeSpans(policy::waiting_for(snapshot, step)),
            }),
        }
    }
    // A gate nobody may open is already the commander's decision: listing it as waiting on
    // others as well would only say the same thing twice.
    let decisions = &page.decisions;
    page.others.retain(|other| {
        !decisions.iter().any(|d| d.run_id == other.run_id && d.step_id == other.step_id)
    });
    page.items.sort_by_key(|item| item.since);
    page.me = Some(me);
    Ok(render(&page))
}

/// A run the person commands, with where it is.
fn commanded(runbook: &Runbook, snapshot: &RunSnapshot) -> Commanded {
    let record = &snapshot.run;
    let at = snapshot
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Waiting)
        .filter_map(|state| {
            let sequence = steady_engine::machine::sequence(runbook, state.phase);
            let step = sequence.iter().find(|s| s.id == state.step_id)?;
            Some(CodeSpans(format!(
                "{} waits for {}",
                step.title(),
                policy::waiting_for(snapshot, step)
            )))
        })
        .collect();
    Commanded {
        run_id: record.id,
        short: short_id(record.id),
        runbook: record.runbook.clone(),
        mode: crate::dto::mode_label(record),
        badge: run_badge(record.status),
        status_class: status_class(record.status.as_str()),
        at,
    }
}
