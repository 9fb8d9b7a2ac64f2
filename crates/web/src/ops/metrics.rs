//! `/metrics`: this node's metrics in the Prometheus text format, kept in one
//! `prometheus-client` registry built with the server's state. Counters and the step-duration
//! histogram are fed as things happen on this node; what the database knows (runs by status,
//! the nodes' heartbeats, each runbook's last verification) is read into gauges at each
//! scrape, so that every node answers the same.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use steady_engine::run::RunStatus;
use steady_engine::store::Store;

use crate::AppState;
use crate::error::AppError;

/// The upper bounds of the step-duration histogram's buckets, in seconds.
const STEP_DURATION_BUCKETS: [f64; 8] = [0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0];

/// This node's metrics: the registry `/metrics` encodes and the handles that feed it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// One scrape at a time: the database gauges are set and encoded together, so that two
    /// scrapes cannot interleave one's node list with the other's.
    scrape: tokio::sync::Mutex<()>,
    runs: Family<StatusLabel, Gauge>,
    runs_waiting: Gauge,
    /// Fed by the executor's observer as attempts finish on this node: runs driven by
    /// `steady run` in a terminal, or by another node, are not in it.
    step_duration: Histogram,
    notifications_delivered: Counter,
    notification_failures: Counter,
    requests_denied: Family<DeniedLabel, Counter>,
    /// Alerts delivered to this node's hooks, by what each came to for a runbook.
    alerts: Family<OutcomeLabel, Counter>,
    node_up: Family<NodeLabels, Gauge>,
    node_last_seen: Family<NodeLabel, Gauge<f64, AtomicU64>>,
    verification_last: Family<RunbookLabel, Gauge<f64, AtomicU64>>,
    verification_passed: Family<RunbookLabel, Gauge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RunbookLabel {
    runbook: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeniedLabel {
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    address: String,
    this: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, in the order `/metrics` lists them, each series a scraper
    /// expects from the start present at zero.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            scrape: tokio::sync::Mutex::new(()),
            runs: Family::default(),
            runs_waiting: Gauge::default(),
            step_duration: Histogram::new(STEP_DURATION_BUCKETS),
            notifications_delivered: Counter::default(),
            notification_failures: Counter::default(),
            requests_denied: Family::default(),
            alerts: Family::default(),
            node_up: Family::default(),
            node_last_seen: Family::default(),
            verification_last: Family::default(),
            verification_passed: Family::default(),
        };
        for status in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            drop(metrics.requests_denied.get_or_create(&DeniedLabel { status: status.as_u16() }));
        }
        for outcome in crate::hooks::OUTCOMES {
            drop(metrics.alerts.get_or_create(&OutcomeLabel { outcome }));
        }
        let registry = &mut metrics.registry;
        registry.register("steady_runs", "Runs by status", metrics.runs.clone());
        registry.register(
            "steady_step_duration_seconds",
            "How long step attempts took: attempts finished on this node since it started",
            metrics.step_duration.clone(),
        );
        registry.register(
            "steady_runs_waiting",
            "Runs waiting for people at a gate or manual step",
            metrics.runs_waiting.clone(),
        );
        registry.register(
            "steady_notifications_delivered",
            "Notifications delivered",
            metrics.notifications_delivered.clone(),
        );
        registry.register(
            "steady_notification_failures",
            "Notification attempts that failed (retried)",
            metrics.notification_failures.clone(),
        );
        registry.register(
            "steady_requests_denied",
            "Requests refused: not signed in (401) or not allowed (403)",
            metrics.requests_denied.clone(),
        );
        registry.register(
            "steady_alerts",
            "Alerts delivered to this node's hooks, by outcome for each runbook whose trigger \
             accepted them: proposed, added, unmatched, or failed (the trigger could not be applied)",
            metrics.alerts.clone(),
        );
        registry.register(
            "steady_node_up",
            format!(
                "Server nodes on this database: 1 when heard from in the last {} s",
                crate::NODE_SILENT_AFTER.as_secs()
            ),
            metrics.node_up.clone(),
        );
        registry.register(
            "steady_node_last_seen_seconds",
            "Seconds since each node last said it was alive",
            metrics.node_last_seen.clone(),
        );
        registry.register(
            "steady_verification_last_seconds",
            "When each runbook's latest verification ended (or could not start), in Unix seconds",
            metrics.verification_last.clone(),
        );
        registry.register(
            "steady_verification_passed",
            "Whether each runbook's latest verification passed: 1 passed, 0 failed",
            metrics.verification_passed.clone(),
        );
        metrics
    }

    /// A step attempt finished on this node after `duration`.
    pub fn step_finished(&self, duration: Duration) {
        self.step_duration.observe(duration.as_secs_f64());
    }

    /// A notification reached its target.
    pub fn notification_delivered(&self) {
        self.notifications_delivered.inc();
    }

    /// A notification could not be delivered; it is tried again.
    pub fn notification_failed(&self) {
        self.notification_failures.inc();
    }

    /// An alert came to `outcome` for a runbook (one of `hooks::OUTCOMES`).
    pub fn alert_filed(&self, outcome: &'static str) {
        self.alerts.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// A request was refused with `status` (401 or 403).
    pub fn request_denied(&self, status: StatusCode) {
        self.requests_denied.get_or_create(&DeniedLabel { status: status.as_u16() }).inc();
    }

    /// The text `/metrics` answers: the database gauges read now, everything else as fed.
    async fn scrape(&self, engine: &steady_engine::engine::Engine) -> Result<String, AppError> {
        let store: &dyn Store = &**engine.store();
        let this = engine.config().node.as_str();
        let _one_at_a_time = self.scrape.lock().await;
        let counts = store.count_runs_by_status().await?;
        let count_of =
            |status: RunStatus| counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        for status in RunStatus::ALL {
            let count = i64::try_from(count_of(*status)).unwrap_or(i64::MAX);
            self.runs.get_or_create(&StatusLabel { status: status.as_str() }).set(count);
        }
        self.runs_waiting.set(i64::try_from(count_of(RunStatus::Waiting)).unwrap_or(i64::MAX));

        let now = steady_engine::engine::now();
        // A node gone for over a day was retired, not lost: it leaves the metrics, so that series
        // of renamed or replaced nodes do not pile up (`/api/v1/nodes` still lists it).
        let nodes = store.nodes().await?;
        self.node_up.clear();
        self.node_last_seen.clear();
        for node in nodes.iter().filter(|node| now - node.last_seen <= chrono::Duration::days(1)) {
            let labels = NodeLabels {
                node: node.id.clone(),
                address: node.address.clone(),
                this: node.id == this,
            };
            self.node_up.get_or_create(&labels).set(i64::from(crate::node_is_up(node, now)));
            let silent = (now - node.last_seen).num_milliseconds() as f64 / 1000.0;
            self.node_last_seen.get_or_create(&NodeLabel { node: node.id.clone() }).set(silent);
        }

        self.verification_last.clear();
        self.verification_passed.clear();
        for verification in store.verifications().await? {
            // A runbook whose latest version dropped `verify` is verified no more: its last
            // state would read as a failure (or a pass) for ever.
            if !crate::runbooks::verified(engine, &verification.runbook).await {
                continue;
            }
            let label = RunbookLabel { runbook: verification.runbook };
            let at = verification.at.timestamp_millis() as f64 / 1000.0;
            self.verification_last.get_or_create(&label).set(at);
            self.verification_passed.get_or_create(&label).set(i64::from(verification.passed));
        }

        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry).map_err(AppError::internal)?;
        Ok(text)
    }
}

#[utoipa::path(get, tag = "ops", path = "/metrics", security(()), responses((status = 200, description = "Prometheus text", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, AppError> {
    let text = state.metrics.scrape(&state.engine).await?;
    Ok(([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], text).into_response())
}
