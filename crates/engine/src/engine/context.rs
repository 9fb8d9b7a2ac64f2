//! The template context of a run: parameters, roles and `steps.<id>` read lazily from its
//! snapshot, with secrets masked for what is stored and revealed for what is executed.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::run::*;
use crate::runbook::Runbook;
use crate::template::{self, Context, RunFacts, SecretValues};

use super::driver::Driver;

/// The unmasked output of one attempt, kept in memory only.
#[derive(Debug)]
pub(super) struct Revealed {
    pub(super) attempt: u32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Driver<'_> {
    /// The context for what is stored and shown: secrets as `***`, outputs as stored.
    pub(super) fn masked_context(&self) -> Context {
        let results = SnapshotResults { snapshot: self.snapshot.clone(), revealed: None };
        run_context_with(
            &self.runbook,
            &self.snapshot,
            self.params.clone(),
            SecretValues::Masked,
            Arc::new(results),
            NotYetRun::Absent,
        )
    }

    /// The context for what is executed and judged: real secrets and real outputs.
    pub(super) fn revealed_context(&self) -> Context {
        let results = SnapshotResults {
            snapshot: self.snapshot.clone(),
            revealed: Some(self.revealed.clone()),
        };
        run_context_with(
            &self.runbook,
            &self.snapshot,
            self.params.clone(),
            SecretValues::Revealed(self.secrets.values()),
            Arc::new(results),
            NotYetRun::Absent,
        )
    }
}

/// `steps.<id>` read from a run's snapshot, as templates ask for them; with `revealed`, the
/// real output of attempts whose stored output was masked.
#[derive(Debug)]
pub(super) struct SnapshotResults {
    snapshot: Arc<RunSnapshot>,
    revealed: Option<Arc<HashMap<String, Arc<Revealed>>>>,
}

impl template::StepResults for SnapshotResults {
    fn result(&self, id: &str) -> Option<Value> {
        let snapshot = &self.snapshot;
        let state = snapshot.step(id).filter(|state| state.status != StepStatus::Pending)?;
        let attempt = snapshot.last_attempt(id);
        let approved_by: Vec<String> = snapshot
            .live_votes(id)
            .filter(|vote| vote.approve)
            .map(|vote| vote.actor.to_string())
            .collect();
        let trim = |text: &str| text.trim_end_matches(['\n', '\r']).to_owned();
        let revealed = self
            .revealed
            .as_ref()
            .and_then(|revealed| revealed.get(id))
            .filter(|revealed| attempt.is_some_and(|a| a.number == revealed.attempt));
        let (stdout, stderr, json) = match (revealed, attempt) {
            (Some(revealed), _) => {
                let stdout = trim(&revealed.stdout);
                let json = serde_json::from_str(&stdout).ok().filter(|_| !stdout.is_empty());
                (stdout, trim(&revealed.stderr), json)
            }
            (None, Some(attempt)) => {
                (trim(&attempt.stdout), trim(&attempt.stderr), attempt.json.clone())
            }
            (None, None) => (String::new(), String::new(), None),
        };
        let mut result = json!({
            "status": state.status.as_str(),
            "stdout": stdout,
            "stderr": stderr,
            "exit_code": attempt.and_then(|a| a.exit_code),
            "json": json,
            "approved_by": approved_by,
            "note": state.note,
        });
        // `steps.<fan-out>.items`: each item's result, in input order; none for a fan-out
        // that was skipped.
        let fans_out = matches!(
            &state.rendered,
            Some(crate::plan::Rendered::Action(crate::plan::Action::ForEach { .. }))
        );
        let items: Vec<Value> = snapshot
            .children(id)
            .filter(|child| child.item.is_some())
            .map(|child| {
                let mut item = self.result(&child.step_id).unwrap_or_else(|| {
                    json!({ "status": child.status.as_str(), "stdout": "", "stderr": "",
                            "exit_code": null, "json": null, "approved_by": [], "note": child.note })
                });
                item["item"] = child.item.clone().unwrap_or_default();
                item
            })
            .collect();
        if fans_out || !items.is_empty() {
            result["items"] = Value::Array(items);
        }
        Some(result)
    }
}

/// What `steps.<id>` reads for a step that has not run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotYetRun {
    /// Nothing: what is executed and stored reads only what happened.
    Absent,
    /// `⟨placeholders⟩`: what an approver sees before the steps a gate guards can run.
    Placeholders,
}

/// The template context of a run as it stands, with outputs as stored.
pub(super) fn run_context(
    runbook: &Runbook,
    snapshot: &Arc<RunSnapshot>,
    secrets: SecretValues<'_>,
    not_yet_run: NotYetRun,
) -> Context {
    let results = SnapshotResults { snapshot: snapshot.clone(), revealed: None };
    let params = template::params_value(&snapshot.run.params);
    run_context_with(runbook, snapshot, params, secrets, Arc::new(results), not_yet_run)
}

fn run_context_with(
    runbook: &Runbook,
    snapshot: &RunSnapshot,
    params: minijinja::Value,
    secrets: SecretValues<'_>,
    steps: Arc<SnapshotResults>,
    not_yet_run: NotYetRun,
) -> Context {
    let mut roles: BTreeMap<String, String> = BTreeMap::new();
    for assignment in &snapshot.assignments {
        let holders = roles.entry(assignment.role.clone()).or_default();
        if !holders.is_empty() {
            holders.push_str(", ");
        }
        // Writing into a String cannot fail.
        let _ = write!(holders, "{}", assignment.person);
    }
    let run = &snapshot.run;
    let commander = run.commander.to_string();
    Context::for_run(
        runbook,
        RunFacts {
            params,
            secrets,
            steps,
            placeholders_for_unknown_steps: not_yet_run == NotYetRun::Placeholders,
            run_id: run.id.to_string(),
            mode: run.mode.as_str(),
            commander: &commander,
            roles,
        },
    )
}
