//! A runbook's triggers: which alerts propose it, and how each parameter is read from one.

use serde::Serialize;

use super::{Expression, Template};
use crate::diagnostic::Position;

/// An alert that proposes this runbook: which alerting system sends it, which of its alerts
/// it answers, and how each parameter is read from the alert. Its templates read only `alert`
/// (see [`crate::trigger`]).
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Whose webhook payload the alert comes in.
    pub source: AlertSource,
    /// An expression over `alert`: the alert proposes the runbook when it is true.
    pub when: Expression,
    /// The parameters read from the alert, in the order written. Every required parameter
    /// of the runbook is among them.
    pub params: Vec<ParamMapping>,
    /// What a matching firing alert does: a proposal, or a dry run and then a proposal.
    pub then: TriggerAction,
    /// Where the trigger is written (its first key), for what is said about it as a whole.
    pub at: Position,
}

/// One parameter of a trigger: `name: "{{ alert.labels.x }}"`.
#[derive(Debug, Clone)]
pub struct ParamMapping {
    /// A parameter the runbook declares.
    pub name: String,
    /// Where the name is written, for warnings about the parameter the alert fills.
    pub at: Position,
    /// Rendered as text over `alert`, then read like a `KEY=VALUE` parameter: typed and
    /// checked against the parameter's `enum` and `pattern`. A literal is allowed.
    pub value: Template,
}

/// The alerting systems whose webhook payloads Steady reads: a trigger's `source`, and the
/// last segment of the hook's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertSource {
    /// Prometheus Alertmanager's `webhook_config`, payload version 4.
    Alertmanager,
    /// Grafana unified alerting's webhook contact point.
    Grafana,
    /// Any JSON object, which is the alert itself.
    Json,
}

impl AlertSource {
    pub const ALL: [AlertSource; 3] =
        [AlertSource::Alertmanager, AlertSource::Grafana, AlertSource::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertSource::Alertmanager => "alertmanager",
            AlertSource::Grafana => "grafana",
            AlertSource::Json => "json",
        }
    }

    /// The source a name (`alertmanager`, `grafana`, `json`) stands for.
    pub fn from_name(name: &str) -> Option<AlertSource> {
        AlertSource::ALL.into_iter().find(|source| source.as_str() == name)
    }
}

impl std::fmt::Display for AlertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `then:` of a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerAction {
    /// The run is proposed, running nothing until a person takes command.
    #[default]
    Propose,
    /// A dry run gathers the facts first (its read-only steps run), then the run is proposed.
    DryRun,
}

impl TriggerAction {
    pub const ALL: [TriggerAction; 2] = [TriggerAction::Propose, TriggerAction::DryRun];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerAction::Propose => "propose",
            TriggerAction::DryRun => "dry-run",
        }
    }
}
