//! What the run page and *my work* show of a run an alert proposed: the alerts that came for
//! it (newest first, resolved ones marked), the lock it would take, the facts its dry run
//! gathered, and who took it. All of it is read from the run's audit events (`run.proposed`,
//! `run.alert_added`, `run.taken`) and from the dry run itself; how a proposal ended
//! (dismissed, expired) is the situation header's outcome.

use std::collections::BTreeMap;

use steady_engine::audit::{AlertSeen, AuditData, AuditEvent, RunProposed};
use steady_engine::run::{Actor, Phase, RunMode, RunOrigin, RunRecord, RunStatus, StepStatus};
use steady_engine::store::AuditFilter;
use steady_engine::trigger::AlertStatus;
use uuid::Uuid;

use super::situation::{History, facts_summary};
use super::steps::{self, StepView, Viewer};
use crate::AppState;
use crate::error::AppError;
use crate::page::{CodeSpans, Moment};
use crate::runs::{run_badge, short_id, status_class};

/// How many alerts a page lists, newest first: an alert that fires for hours is resent every
/// few minutes, and the newest say where things stand.
const ALERTS_SHOWN: u32 = 50;

/// One alert as people read it.
pub(crate) struct AlertView {
    /// `labels.alertname`, or the source's word when the alert has none.
    pub(crate) name: String,
    pub(crate) source: &'static str,
    pub(crate) resolved: bool,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) at: Moment,
    /// The alert that made the proposal, rather than one added to it later.
    pub(crate) proposed: bool,
}

/// What the proposal's dry run (`then: dry-run`) found, or is finding.
pub(crate) struct FactsView {
    pub(crate) run_id: Uuid,
    pub(crate) short_id: String,
    pub(crate) status: String,
    pub(crate) status_class: &'static str,
    /// Still running its read-only steps: the page follows its events.
    pub(crate) gathering: bool,
    /// Where it stands, in one line: the dry run's report once it ended.
    pub(crate) summary: CodeSpans,
    /// The read-only steps and checks it ran, with their output and the values compared.
    pub(crate) steps: Vec<StepView>,
}

/// The proposal panel of a run an alert proposed.
pub(crate) struct ProposalView {
    /// The alert that proposed the run, by name.
    pub(crate) alert: String,
    pub(crate) proposed_at: Moment,
    /// The trigger account that delivered it.
    pub(crate) proposed_by: String,
    /// Newest first.
    pub(crate) alerts: Vec<AlertView>,
    /// More alerts came than are listed.
    pub(crate) more_alerts: bool,
    /// The newest alert says it resolved.
    pub(crate) resolved: bool,
    /// The lock key the run takes once someone takes command.
    pub(crate) lock: Option<String>,
    /// The parameters read from the alert, secrets masked.
    pub(crate) params: Vec<(String, String)>,
    /// The facts, when the trigger said `then: dry-run`.
    pub(crate) facts: Option<FactsView>,
    /// The trigger asked for a dry run that never started (the server's log says why).
    pub(crate) facts_lost: bool,
    /// Who took command, and when: the run is live since.
    pub(crate) taken: Option<(String, Moment)>,
    /// Nobody has taken or dismissed it yet.
    pub(crate) open: bool,
    /// While nobody has taken it: when it ends by itself if no alert comes meanwhile.
    pub(crate) expires: Option<Moment>,
}

/// The name people know an alert by: its `alertname` label, else where it came from.
pub(crate) fn alert_name(alert: &AlertSeen) -> String {
    alert
        .labels
        .get("alertname")
        .cloned()
        .unwrap_or_else(|| format!("{} alert", alert.source.as_str()))
}

/// The run's `run.proposed` event and what it says; `None` for a run no alert proposed.
pub(crate) async fn proposed(
    state: &AppState,
    run: &RunRecord,
) -> Result<Option<(AuditEvent, RunProposed)>, AppError> {
    if run.origin != RunOrigin::Trigger || run.mode == RunMode::DryRun {
        return Ok(None);
    }
    let events = events(state, run.id, "run.proposed", 1).await?;
    Ok(events.into_iter().find_map(|event| {
        match AuditData::from_stored(&event.action, &event.data) {
            Ok(AuditData::RunProposed(proposed)) => Some((event, proposed)),
            _ => None,
        }
    }))
}

/// The alerts of a proposal, newest first: those added to it, then the one that proposed it.
/// The flag says whether more were added than `ALERTS_SHOWN`.
pub(crate) async fn alerts(
    state: &AppState,
    event: &AuditEvent,
    proposed: &RunProposed,
) -> Result<(Vec<AlertView>, bool), AppError> {
    let run_id = event.run_id.unwrap_or_default();
    let added = events(state, run_id, "run.alert_added", ALERTS_SHOWN + 1).await?;
    let more = added.len() > ALERTS_SHOWN as usize;
    let mut alerts: Vec<AlertView> = added
        .iter()
        .take(ALERTS_SHOWN as usize)
        .filter_map(|event| match AuditData::from_stored(&event.action, &event.data) {
            Ok(AuditData::AlertAdded(alert)) => Some(alert_view(&alert, event, false)),
            _ => None,
        })
        .collect();
    if !more {
        alerts.push(alert_view(&proposed.alert, event, true));
    }
    Ok((alerts, more))
}

fn alert_view(alert: &AlertSeen, event: &AuditEvent, proposed: bool) -> AlertView {
    AlertView {
        name: alert_name(alert),
        source: alert.source.as_str(),
        resolved: alert.status == AlertStatus::Resolved,
        labels: labels(&alert.labels),
        at: Moment::new(event.at),
        proposed,
    }
}

/// Labels in the order people look for them: the alert's name first, the rest by name.
fn labels(labels: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut shown: Vec<(String, String)> =
        labels.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
    shown.sort_by_key(|(name, _)| name != "alertname");
    shown
}

/// The newest events of one action in run `run_id`, newest first.
async fn events(
    state: &AppState,
    run_id: Uuid,
    action: &str,
    limit: u32,
) -> Result<Vec<AuditEvent>, AppError> {
    let filter = AuditFilter {
        run_id: Some(run_id),
        action: Some(action.to_owned()),
        newest_first: true,
        limit: Some(limit),
        ..AuditFilter::default()
    };
    Ok(state.store.audit_events(&filter).await?)
}

/// The proposal panel of `run`, with `params` as the page shows them; `None` for a run no
/// alert proposed.
pub(crate) async fn proposal(
    state: &AppState,
    run: &RunRecord,
    params: Vec<(String, String)>,
    viewer: &Actor,
) -> Result<Option<ProposalView>, AppError> {
    let Some((event, proposed)) = self::proposed(state, run).await? else { return Ok(None) };
    let (alerts, more_alerts) = alerts(state, &event, &proposed).await?;
    let taken = events(state, run.id, "run.taken", 1)
        .await?
        .into_iter()
        .next()
        .map(|taken| (taken.actor.to_string(), Moment::new(taken.at)));
    let (facts, facts_lost) = match run.dry_run {
        Some(id) => match facts(state, id, viewer).await? {
            Some(facts) => (Some(facts), false),
            None => (None, true),
        },
        None => (None, false),
    };
    let expires = (run.status == RunStatus::Proposed).then(|| {
        let idle = chrono::Duration::from_std(state.config.proposal_expiry)
            .unwrap_or(chrono::Duration::MAX);
        Moment::new(run.updated_at.checked_add_signed(idle).unwrap_or(run.updated_at))
    });
    Ok(Some(ProposalView {
        alert: alert_name(&proposed.alert),
        proposed_at: Moment::new(event.at),
        proposed_by: event.actor.to_string(),
        resolved: alerts.first().is_some_and(|alert| alert.resolved),
        alerts,
        more_alerts,
        lock: proposed.lock,
        params,
        facts,
        facts_lost,
        taken,
        open: run.status == RunStatus::Proposed,
        expires,
    }))
}

/// The facts dry run `id` gathered, as `viewer` sees them; `None` when it does not exist.
pub(crate) async fn facts(
    state: &AppState,
    id: Uuid,
    viewer: &Actor,
) -> Result<Option<FactsView>, AppError> {
    let Some(snapshot) = state.store.run(id).await? else { return Ok(None) };
    let run = &snapshot.run;
    let runbook = state.engine.runbook(&run.runbook, run.version).await?;
    // Nothing on a dry run is for anyone to answer: its gates and manual steps only say
    // that they would wait.
    let viewer = Viewer { actor: viewer, responder: false, deciding: None };
    let history = History::default();
    let binding = BTreeMap::new();
    let now = state.engine.now();
    let ran: Vec<StepView> = steps::steps(&runbook, &snapshot, &history, &binding, &viewer, now)
        .into_iter()
        .filter(|step| step.latest.is_some() || !step.compared.is_empty())
        .collect();
    let gathering = matches!(run.status, RunStatus::Running | RunStatus::Waiting);
    let summary = if gathering {
        let main =
            || snapshot.steps.iter().filter(|s| s.phase == Phase::Main && s.parent.is_none());
        let done = main().filter(|s| s.status.is_passed()).count();
        format!("still gathering: {done} of {} steps looked at so far", main().count())
    } else if run.status == RunStatus::NeedsAttention {
        let failed = snapshot
            .steps
            .iter()
            .find(|s| s.status.is_failure() || s.status == StepStatus::Interrupted)
            .map(|s| format!(" at `{}`", s.step_id))
            .unwrap_or_default();
        format!("stopped{failed}: a read-only step failed; {}", facts_summary(&runbook, &snapshot))
    } else {
        facts_summary(&runbook, &snapshot)
    };
    Ok(Some(FactsView {
        run_id: id,
        short_id: short_id(id),
        status: run_badge(run.status),
        status_class: status_class(run.status.as_str()),
        gathering,
        summary: CodeSpans(summary),
        steps: ran,
    }))
}
