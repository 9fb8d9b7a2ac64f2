//! Notifications: a JSON POST with a Slack-compatible `text` to each `--notify` URL when an
//! approval is requested (with its prompt and the run's parameters), a manual step waits, a
//! gate escalates, a run needs attention, a role is given to someone, a live run starts, a
//! run is cancelled or finishes, a runbook's verification begins failing or passes again
//! (naming the runbook's owner, roles and contacts; a verification run's own start and end
//! are not news). With `--public-url`, each links to the run (at the step's
//! anchor), in the text and as `url`. The audit log is the outbox: each target's cursor advances only after a
//! delivery succeeded, so a target that is down receives everything once it is back.
//! Delivery never blocks or fails a run; failures are counted for `/metrics` and logged
//! without the target's URL, which (a Slack webhook's) is itself a secret.

use std::time::Duration;

use serde_json::{Value, json};
use steady_engine::audit::{AuditData, AuditEvent};
use steady_engine::engine::now;
use steady_engine::plan::Action;
use steady_engine::run::{Actor, Decision, Lease, RunMode, RunOrigin};
use steady_engine::store::AuditFilter;
use tokio::sync::watch;

use crate::AppState;

/// How long a node's claim on a target lasts without renewal (each round renews it).
const NOTIFIER_LEASE: chrono::Duration = chrono::Duration::seconds(30);
/// How often a node that does not hold a target checks whether its holder is gone.
const STAND_BY: Duration = Duration::from_secs(5);

/// Delivers to one target until `shutdown` turns true, while this node holds the target.
pub async fn deliver(state: AppState, target: String, mut shutdown: watch::Receiver<bool>) {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
    let mut backoff = Duration::from_millis(250);
    let owner = state.engine.config().node.clone();
    while !*shutdown.borrow() {
        // One node delivers to a target at a time; the others stand by in case it dies.
        let lease = Lease { owner: owner.clone(), expires_at: now() + NOTIFIER_LEASE };
        let after = match state.store.claim_notification_target(&target, &lease, now()).await {
            Ok(true) => state.store.notification_cursor(&target).await.ok().flatten(),
            Ok(false) | Err(_) => None,
        };
        let Some(mut after) = after else {
            tokio::select! {
                () = tokio::time::sleep(STAND_BY) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let filter =
            AuditFilter { after_seq: Some(after), limit: Some(100), ..AuditFilter::default() };
        let events: Vec<AuditEvent> = state.store.audit_events(&filter).await.unwrap_or_default();
        let mut delivered_all = true;
        for event in &events {
            if let Some(message) = message(&state, event).await {
                let sent = client.post(&target).json(&message).send().await;
                if !sent.as_ref().is_ok_and(|response| response.status().is_success()) {
                    // reqwest's error names the URL: only the status or the kind of failure.
                    let status = sent.as_ref().ok().map(|response| response.status().as_u16());
                    let timeout = sent.as_ref().err().is_some_and(reqwest::Error::is_timeout);
                    tracing::warn!(
                        seq = event.seq,
                        status,
                        timeout,
                        "a notification was not delivered; retrying"
                    );
                    state.metrics.notification_failed();
                    delivered_all = false;
                    break;
                }
                state.metrics.notification_delivered();
            }
            after = event.seq;
            let _ = state.store.set_notification_cursor(&target, after).await;
        }
        let pause = if delivered_all {
            backoff = Duration::from_millis(250);
            if events.is_empty() { Duration::from_millis(500) } else { Duration::ZERO }
        } else {
            backoff = (backoff * 2).min(state.config.notify_backoff_max);
            backoff
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// The notification an event calls for, if any.
async fn message(state: &AppState, event: &AuditEvent) -> Option<Value> {
    const NOTIFIED: [&str; 14] = [
        "run.proposed",
        "run.taken",
        "run.dismissed",
        "run.expired",
        "step.waiting",
        "gate.escalated",
        "run.needs_attention",
        "run.finished",
        "run.started",
        "run.cancelled",
        "role.assigned",
        "decision.taken",
        "verification.failed",
        "verification.recovered",
    ];
    if !NOTIFIED.contains(&event.action.as_str()) {
        return None;
    }
    // Every event Steady writes reads back as its type (the storage tests prove it on a
    // database written before the types); one that does not is not notified.
    let data = AuditData::from_stored(&event.action, &event.data).ok()?;
    match &data {
        AuditData::VerificationFailed(failed) => {
            let what = match &failed.step {
                Some(step) => format!("`{}` {}", slack_text(step), slack_text(&failed.reason)),
                None => slack_text(&failed.reason),
            };
            let news = ("Verification failing", format!(": {what}"));
            return Some(
                verification_message(state, event, &failed.runbook, failed.version, news).await,
            );
        }
        AuditData::VerificationRecovered(recovered) => {
            let since = format!(" (failing since {})", slack_text(&recovered.failing_since));
            let news = ("Verification passing again", since);
            return Some(
                verification_message(state, event, &recovered.runbook, recovered.version, news)
                    .await,
            );
        }
        _ => {}
    }
    let run_id = event.run_id?;
    // Everything that comes from people or runbooks is escaped as it goes in; only the link
    // Steady adds itself is markup.
    let step = event.step_id.as_deref().map(slack_text).unwrap_or_default();
    let holders = |holders: &[Actor]| {
        let names: Vec<String> = holders.iter().map(|h| slack_text(&h.to_string())).collect();
        if names.is_empty() {
            "nobody holds it yet".to_owned()
        } else {
            format!("held by {}", names.join(", "))
        }
    };
    let snapshot = state.store.run(run_id).await.ok().flatten();
    // A verification runs every few minutes: only a change of its result is news, told by
    // `verification.failed` and `verification.recovered`.
    if snapshot.as_ref().is_some_and(|s| s.run.origin == RunOrigin::Verification) {
        return None;
    }
    // A proposal's dry run is told with the proposal, which links to it.
    if snapshot
        .as_ref()
        .is_some_and(|s| s.run.origin == RunOrigin::Trigger && s.run.mode == RunMode::DryRun)
    {
        return None;
    }
    if let (AuditData::RunProposed(proposed), Some(snapshot)) = (&data, &snapshot) {
        return Some(proposal_message(state, event, snapshot, proposed).await);
    }
    let runbook = match &snapshot {
        Some(snapshot) => slack_text(&format!("{} ({})", snapshot.run.runbook, snapshot.run.mode)),
        None => "a runbook".to_owned(),
    };
    // Parameters as the run stores them: secrets never reach them unmasked.
    let params = snapshot.as_ref().map(|s| params_text(&s.run.params)).unwrap_or_default();
    let by = slack_text(&event.actor.to_string());
    let text = match &data {
        AuditData::StepWaiting(waiting) => match waiting.rendered.action() {
            Some(Action::Approval { prompt, .. }) => format!(
                "Approval requested: run {run_id} of {runbook} waits at gate `{step}` for `{}` ({}).{}{params}",
                slack_text(&waiting.role),
                holders(&waiting.holders),
                quoted(prompt.as_deref()),
            ),
            Some(Action::Manual { instructions, .. }) => format!(
                "Manual step waiting: run {run_id} of {runbook} waits at `{step}` for `{}` ({}).{}{params}",
                slack_text(&waiting.role),
                holders(&waiting.holders),
                quoted(Some(instructions.as_str())),
            ),
            _ => format!(
                "Waiting: run {run_id} of {runbook} waits at `{step}` for `{}` ({}).",
                slack_text(&waiting.role),
                holders(&waiting.holders)
            ),
        },
        AuditData::GateEscalated(escalated) => format!(
            "Escalated: gate `{step}` of run {run_id} ({runbook}) now waits for `{}` ({}).",
            slack_text(&escalated.to),
            holders(&escalated.holders)
        ),
        AuditData::RunNeedsAttention => format!(
            "Needs attention: run {run_id} of {runbook} stopped at `{step}` and waits for the commander's decision."
        ),
        AuditData::RunFinished(finished) => {
            format!("Run {run_id} of {runbook} finished: {}.", finished.status)
        }
        AuditData::RunStarted(started) if started.mode == RunMode::Live => {
            let roles = roles_text(&started.assignments);
            format!("Live run started: run {run_id} of {runbook} by {by}.{params}{roles}")
        }
        // Aborting and rolling back end or reverse work people are watching: say who and why.
        AuditData::DecisionTaken(taken)
            if matches!(taken.decision, Decision::Abort | Decision::Rollback) =>
        {
            let what = match taken.decision {
                Decision::Abort => "Aborted",
                _ => "Rolling back",
            };
            format!(
                "{what}: run {run_id} of {runbook} at `{step}`, decided by {by}.{}",
                quoted(taken.reason.as_deref())
            )
        }
        AuditData::RunCancelled(reason) => {
            let why = match reason {
                Some(reason) => quoted(Some(reason.reason.as_str())),
                None => String::new(),
            };
            format!("Cancelled: run {run_id} of {runbook} by {by}.{why}")
        }
        AuditData::RunTaken(_) => {
            format!(
                "Proposal taken: {by} took command of run {run_id} of {runbook}; it runs live now.{params}"
            )
        }
        AuditData::RunDismissed(dismissed) => format!(
            "Proposal dismissed: run {run_id} of {runbook} by {by}.{}",
            quoted(Some(dismissed.reason.as_str()))
        ),
        AuditData::RunExpired(expired) => format!(
            "Proposal expired: nobody took run {run_id} of {runbook} within {} s.",
            expired.idle_seconds
        ),
        AuditData::RoleAssigned(holder) => format!(
            "Role assigned: {} now holds `{}` in run {run_id} of {runbook} (given by {by}).",
            slack_text(&holder.person.to_string()),
            slack_text(&holder.role)
        ),
        _ => return None,
    };
    let url = state.config.public_url.as_deref().map(|base| match &event.step_id {
        Some(step) => format!("{base}/runs/{run_id}#step-{step}"),
        None => format!("{base}/runs/{run_id}"),
    });
    let text = match &url {
        Some(url) => format!("{text} <{url}|Open the run>"),
        None => text,
    };
    Some(json!({
        "text": text,
        "event": event.action,
        "run_id": run_id,
        "step_id": event.step_id,
        "seq": event.seq,
        "url": url,
    }))
}

/// A verification that began failing or passes again, for the runbook's owner and the people
/// of its roles: every target receives every message, so the message names them (and the
/// runbook's contacts), and carries `owner` and `roles` for a relay that routes by them.
async fn verification_message(
    state: &AppState,
    event: &AuditEvent,
    name: &str,
    version: u32,
    (headline, detail): (&str, String),
) -> Value {
    let runbook = state.engine.runbook(name, version).await.ok();
    let owner = runbook.as_ref().and_then(|runbook| runbook.owner.clone());
    let roles: Vec<String> = runbook
        .as_ref()
        .map(|runbook| runbook.roles.iter().map(|role| role.name.clone()).collect())
        .unwrap_or_default();
    let contacts: Vec<String> = runbook
        .as_ref()
        .map(|runbook| runbook.contacts.iter().map(|c| format!("{} ({})", c.name, c.how)).collect())
        .unwrap_or_default();
    let who = {
        let mut who = Vec::new();
        if let Some(owner) = &owner {
            who.push(format!("owner {owner}"));
        }
        if !roles.is_empty() {
            who.push(format!("roles {}", roles.join(", ")));
        }
        if !contacts.is_empty() {
            who.push(format!("contacts {}", contacts.join(", ")));
        }
        if who.is_empty() {
            String::new()
        } else {
            format!("\nFor {}.", slack_text(&who.join("; ")))
        }
    };
    let title = slack_text(&format!("{name} v{version}"));
    let text = format!("{headline}: {title}{detail}.{who}");
    let url = match (state.config.public_url.as_deref(), event.run_id) {
        (Some(base), Some(run_id)) => Some(format!("{base}/runs/{run_id}")),
        (Some(base), None) => Some(format!("{base}/runbooks/{name}")),
        (None, _) => None,
    };
    let text = match &url {
        Some(url) => format!("{text} <{url}|Open the verification>"),
        None => text,
    };
    json!({
        "text": text,
        "event": event.action,
        "run_id": event.run_id,
        "step_id": event.step_id,
        "seq": event.seq,
        "url": url,
        "runbook": name,
        "owner": owner,
        "roles": roles,
    })
}

/// A runbook an alert proposed, for the runbook's owner and the people of its roles, who are
/// named in it (and carried as `owner` and `roles` for a relay that routes by them): what
/// fired, the parameters read from it, and the link to take command.
async fn proposal_message(
    state: &AppState,
    event: &AuditEvent,
    snapshot: &steady_engine::run::RunSnapshot,
    proposed: &steady_engine::audit::RunProposed,
) -> Value {
    let run = &snapshot.run;
    let runbook = state.engine.runbook(&run.runbook, run.version).await.ok();
    let owner = runbook.as_ref().and_then(|runbook| runbook.owner.clone());
    let roles: Vec<String> = runbook
        .as_ref()
        .map(|runbook| runbook.roles.iter().map(|role| role.name.clone()).collect())
        .unwrap_or_default();
    let alert = &proposed.alert;
    let name = alert.labels.get("alertname").cloned().unwrap_or_else(|| alert.key.clone());
    let mut who = Vec::new();
    if let Some(owner) = &owner {
        who.push(format!("owner {owner}"));
    }
    if !roles.is_empty() {
        who.push(format!("roles {}", roles.join(", ")));
    }
    let who = if who.is_empty() {
        String::new()
    } else {
        format!("\nFor {}.", slack_text(&who.join("; ")))
    };
    let facts = if proposed.dry_run.is_some() { " A dry run is gathering the facts." } else { "" };
    let text = format!(
        "Proposed: {} v{} for alert {} from {}. Nothing runs until someone takes command.{facts}{}{who}",
        slack_text(&run.runbook),
        run.version,
        slack_text(&name),
        alert.source.as_str(),
        params_text(&run.params),
    );
    let url = state.config.public_url.as_deref().map(|base| format!("{base}/runs/{}", run.id));
    let text = match &url {
        Some(url) => format!("{text} <{url}|Take command or dismiss>"),
        None => text,
    };
    json!({
        "text": text,
        "event": event.action,
        "run_id": run.id,
        "step_id": event.step_id,
        "seq": event.seq,
        "url": url,
        "runbook": run.runbook,
        "owner": owner,
        "roles": roles,
    })
}

/// A prompt or instructions, quoted on their own line; nothing when there are none.
fn quoted(text: Option<&str>) -> String {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => format!("\n> {}", slack_text(text).replace('\n', "\n> ")),
        None => String::new(),
    }
}

/// The run's parameters on one line, escaped; nothing when it has none.
fn params_text(params: &steady_engine::params::ParamValues) -> String {
    if params.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = params.iter().map(|(name, value)| format!("{name}={value}")).collect();
    format!("\nParameters: {}", slack_text(&pairs.join(", ")))
}

/// Who holds which role from the start, on one line, escaped: the people a role given later
/// is told of by `role.assigned`, told at the start with the run. Nothing when nobody was
/// given one.
fn roles_text(assignments: &[steady_engine::audit::RoleHolder]) -> String {
    let mut roles: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for holder in assignments {
        roles.entry(holder.role.as_str()).or_default().push(holder.person.to_string());
    }
    if roles.is_empty() {
        return String::new();
    }
    let held: Vec<String> = roles
        .iter()
        .map(|(role, people)| format!("`{}` {}", slack_text(role), slack_text(&people.join(", "))))
        .collect();
    format!("\nRoles: {}", held.join("; "))
}

/// Text as Slack shows it rather than reads it: `&`, `<` and `>` escaped, as Slack's message
/// format asks, so that no name, runbook text or parameter in a message becomes `<!channel>`,
/// a mention or a `<url|text>` link.
fn slack_text(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    /// Slack reads `<!channel>` as "notify everyone": whatever reaches a message (people's
    /// names are checked users now, runbook text is not) is shown as text.
    #[test]
    fn markup_in_a_message_is_shown_as_text() {
        assert_eq!(
            super::slack_text("held by <!channel> & <@U024BE7LH>"),
            "held by &lt;!channel&gt; &amp; &lt;@U024BE7LH&gt;"
        );
        assert_eq!(
            super::slack_text("<!channel> *x* <http://evil|y>"),
            "&lt;!channel&gt; *x* &lt;http://evil|y&gt;"
        );
    }
}
