//! Notifications: a JSON POST with a Slack-compatible `text` to each `--notify` URL when an
//! approval is requested, a manual step waits, a gate escalates, a run needs attention or a
//! run finishes. The audit log is the outbox: each target's cursor advances only after a
//! delivery succeeded, so a target that is down receives everything once it is back.
//! Delivery never blocks or fails a run; failures are counted for `/metrics` and logged
//! without the target's URL, which (a Slack webhook's) is itself a secret.

use std::time::Duration;

use serde_json::{Value, json};
use steady_engine::audit::{AuditData, AuditEvent};
use steady_engine::engine::now;
use steady_engine::plan::Action;
use steady_engine::run::{Actor, Lease};
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
    const NOTIFIED: [&str; 4] =
        ["step.waiting", "gate.escalated", "run.needs_attention", "run.finished"];
    if !NOTIFIED.contains(&event.action.as_str()) {
        return None;
    }
    let run_id = event.run_id?;
    // Every event Steady writes reads back as its type (the storage tests prove it on a
    // database written before the types); one that does not is not notified.
    let data = AuditData::from_stored(&event.action, &event.data).ok()?;
    let step = event.step_id.clone().unwrap_or_default();
    let holders = |holders: &[Actor]| {
        let names: Vec<String> = holders.iter().map(Actor::to_string).collect();
        if names.is_empty() {
            "nobody holds it yet".to_owned()
        } else {
            format!("held by {}", names.join(", "))
        }
    };
    let runbook = match state.store.run(run_id).await {
        Ok(Some(snapshot)) => format!("{} ({})", snapshot.run.runbook, snapshot.run.mode),
        _ => "a runbook".to_owned(),
    };
    let text = match &data {
        AuditData::StepWaiting(waiting)
            if matches!(waiting.rendered.action(), Some(Action::Approval { .. })) =>
        {
            format!(
                "Approval requested: run {run_id} of {runbook} waits at gate `{step}` for `{}` ({}).",
                waiting.role,
                holders(&waiting.holders)
            )
        }
        AuditData::StepWaiting(waiting) => format!(
            "Manual step waiting: run {run_id} of {runbook} waits at `{step}` for `{}` ({}).",
            waiting.role,
            holders(&waiting.holders)
        ),
        AuditData::GateEscalated(escalated) => format!(
            "Escalated: gate `{step}` of run {run_id} ({runbook}) now waits for `{}` ({}).",
            escalated.to,
            holders(&escalated.holders)
        ),
        AuditData::RunNeedsAttention => format!(
            "Needs attention: run {run_id} of {runbook} stopped at `{step}` and waits for the commander's decision."
        ),
        AuditData::RunFinished(finished) => {
            format!("Run {run_id} of {runbook} finished: {}.", finished.status)
        }
        _ => return None,
    };
    let text = slack_text(&text);
    Some(
        json!({ "text": text, "event": event.action, "run_id": run_id, "step_id": event.step_id, "seq": event.seq }),
    )
}

/// Text as Slack shows it rather than reads it: `&`, `<` and `>` escaped, as Slack's message
/// format asks, so that no name or runbook in a message becomes `<!channel>`, a mention or a
/// link. Steady's own messages use no markup but backticks.
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
    }
}
