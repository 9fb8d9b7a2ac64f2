//! The runbook model: a validated, typed procedure, and `parse` that builds it from YAML.
//!
//! Parsing is two stages. `yaml` turns the text into a tree of nodes that remember where they
//! came from; `parse` walks that tree into the types below, reporting every problem it finds
//! rather than stopping at the first. `references` then checks what templates and expressions
//! refer to, `secrecy` where secrets and parameters may go, and `lint` adds warnings to a
//! runbook that is valid.

mod index;
mod lint;
mod param;
pub(crate) mod parse;
mod references;
mod secrecy;
mod trigger;
pub(crate) mod yaml;

use serde::Serialize;

pub use index::SequenceIndex;
pub use param::{Param, ParamType, ParamValue, Pattern};
pub use trigger::{AlertSource, ParamMapping, Trigger, TriggerAction};

use crate::diagnostic::{Diagnostic, Position};
use crate::duration::Duration;

/// The result of reading a runbook. Parsing never fails: it returns the runbook when the text
/// is valid, and every diagnostic (errors and lint warnings) either way.
#[derive(Debug)]
pub struct Parsed {
    pub runbook: Option<Runbook>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Parsed {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads, validates and lints one runbook's YAML source.
pub fn parse(source: &str) -> Parsed {
    // Editors that write a byte-order mark do not show it, and it is not part of the YAML:
    // without it, positions are counted as the author sees the text.
    let source = crate::diagnostic::without_bom(source);
    let mut diagnostics = Vec::new();
    let runbook = parse::runbook(source, &mut diagnostics);
    let runbook = runbook.filter(|runbook| {
        references::check(runbook, source, &mut diagnostics);
        parse::verify_params(runbook, &mut diagnostics);
        if !diagnostics.iter().any(Diagnostic::is_error) {
            secrecy::check(runbook, &mut diagnostics);
        }
        !diagnostics.iter().any(Diagnostic::is_error)
    });
    if let Some(runbook) = &runbook {
        lint::check(runbook, &mut diagnostics);
    }
    let lines: Vec<&str> = crate::diagnostic::source_lines(source).collect();
    for diagnostic in &mut diagnostics {
        diagnostic.at = crate::diagnostic::within(&lines, diagnostic.at);
    }
    diagnostics.sort_by_key(|diagnostic| (diagnostic.at, diagnostic.severity));
    Parsed { runbook, diagnostics }
}

/// A procedure, exactly as its author wrote it, known to be valid.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// Unique name, `[a-z0-9-]+`: what people type and what versions are kept under.
    pub name: String,
    /// Where the name is written, for errors about the runbook as a whole.
    pub name_at: Position,
    pub title: Option<String>,
    pub description: Option<String>,
    /// The team that keeps the procedure current.
    pub owner: Option<String>,
    /// How long the procedure may go without a successful drill or live run before it is
    /// flagged as overdue for review.
    pub review_every: Option<Duration>,
    /// The recovery time objective: how long the whole procedure may take. Rehearsal figures
    /// are shown against it (see [`crate::rehearsal`]).
    pub rto: Option<Duration>,
    /// Rendered with the run's parameters; at most one active run may hold a rendered key.
    pub lock: Option<Template>,
    /// `verify`: the server dry-runs the runbook on this schedule, so that its read-only
    /// steps keep proving that it still fits today's systems.
    pub verify: Option<Verify>,
    pub contacts: Vec<Contact>,
    /// Run roles in declaration order, assigned to people when a run starts.
    pub roles: Vec<Role>,
    /// Names of secrets, read at run time from `STEADY_SECRET_<NAME>`, never shown.
    pub secrets: Vec<String>,
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
    /// Run in order when a step whose `on_failure` is `rollback` fails.
    pub rollback: Vec<Step>,
    /// The alerts that propose this runbook (`triggers:`), in the order written.
    pub triggers: Vec<Trigger>,
    /// Where each step of `steps` sits, built at parse (see [`crate::machine::position`]).
    pub(crate) steps_index: SequenceIndex,
    /// The same for `rollback`.
    pub(crate) rollback_index: SequenceIndex,
}

impl Runbook {
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|param| param.name == name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|role| role.name == name)
    }

    /// Every step of the runbook with its id: the steps, the rollback steps and the branches
    /// of their `parallel` groups, in the order written.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.steps
            .iter()
            .chain(&self.rollback)
            .flat_map(|step| std::iter::once(step).chain(step.branches()))
    }

    /// The step with this id, wherever it is written (a branch of a group included).
    pub fn find_step(&self, id: &str) -> Option<&Step> {
        self.steps_index
            .find(&self.steps, id)
            .or_else(|| self.rollback_index.find(&self.rollback, id))
    }
}

/// `verify: { every, params }`: a dry run the server starts on its own once per `every`,
/// with these parameters, known at validation to start (see [`Verify::params`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Verify {
    /// How often, at least [`Verify::SHORTEST`]. Periods are counted from the Unix epoch, so
    /// that every node of a cluster agrees which period it is.
    pub every: Duration,
    /// Parameter values as text, exactly as `-p KEY=VALUE` gives them (a list as a JSON
    /// array), checked against the runbook's parameters as a run's are.
    pub params: Vec<VerifyParam>,
    /// Where the `verify` key is written, for errors about the block as a whole.
    pub at: Position,
}

impl Verify {
    /// The shortest period: one second, which only tests want.
    pub const SHORTEST: std::time::Duration = std::time::Duration::from_secs(1);

    /// The parameters as a run is started with them.
    pub fn param_texts(&self) -> Vec<(String, String)> {
        self.params.iter().map(|param| (param.name.clone(), param.value.clone())).collect()
    }
}

/// One parameter value given in `verify.params`.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyParam {
    pub name: String,
    /// The value as text: a scalar as written, a list as a JSON array of strings.
    pub value: String,
    /// Where the name is written.
    pub name_at: Position,
    /// Where the value is written.
    pub at: Position,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub name: String,
    /// Where to reach them: a channel, a phone number, a pager rotation.
    pub how: String,
}

#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub description: Option<String>,
    pub at: Position,
}

/// A piece of runbook text that is rendered with Jinja syntax before it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub source: String,
    pub at: Position,
}

/// A Jinja expression (`check`, `when`), compiled once at validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub source: String,
    pub at: Position,
}

#[derive(Debug, Clone)]
pub struct Step {
    /// `[a-z][a-z0-9_]*`, unique in the runbook, so that `steps.<id>` works in expressions.
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub kind: StepKind,
    /// Evaluated just before the step; false skips it.
    pub when: Option<Expression>,
    /// How long a `run` or `http` step may take; `None` means the default.
    pub timeout: Option<Duration>,
    pub retries: Option<Retries>,
    /// Only observes: executed for real in dry runs, and safe to run again after a crash.
    pub read_only: bool,
    /// Has side effects, but running it twice has the same effect as once.
    pub idempotent: bool,
    pub env: Vec<(String, Template)>,
    pub expect: Expect,
    pub on_failure: OnFailure,
    /// `for_each`: the step runs once per item of a list, each item durable on its own.
    pub fan_out: Option<FanOut>,
    pub at: Position,
}

impl Step {
    /// The default timeout of `run` and `http` steps.
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5 * 60);

    /// A step that changes the world, as opposed to one that observes or waits for people.
    pub fn has_side_effects(&self) -> bool {
        matches!(self.kind, StepKind::Run(_) | StepKind::Http(_)) && !self.read_only
    }

    pub fn is_gate(&self) -> bool {
        matches!(self.kind, StepKind::Approval(_))
    }

    /// What people see: the step's name, or its id when it has none.
    pub fn title(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The branches of a `parallel` group; empty for any other step.
    pub fn branches(&self) -> &[Step] {
        match &self.kind {
            StepKind::Parallel(branches) => branches,
            _ => &[],
        }
    }

    /// A group or a fan-out: the step's work is done by children, each durable on its own.
    pub fn has_children(&self) -> bool {
        self.fan_out.is_some() || matches!(self.kind, StepKind::Parallel(_))
    }

    /// The step an item of this fan-out runs as: this step's kind and settings, with the
    /// item's id (`restart[3]`, see [`crate::run::item_id`]) and the item in its title. Its
    /// `when` was decided for the whole fan-out, and its failure counts against
    /// `max_failures`, so it has neither of its own.
    pub fn for_item(&self, index: usize, item: &serde_json::Value) -> Step {
        Step {
            id: crate::run::item_id(&self.id, index),
            name: Some(format!("{} ({})", self.title(), item_text(item))),
            when: None,
            on_failure: OnFailure::Pause,
            fan_out: None,
            ..self.clone()
        }
    }
}

/// A fan-out item as people read it: a string as it is, anything else as JSON; control and
/// text-direction characters escaped (an item cannot start a line of its own or turn text
/// around), and at most 80 characters.
pub fn item_text(item: &serde_json::Value) -> String {
    let text = match item {
        serde_json::Value::String(text) => std::borrow::Cow::Borrowed(text.as_str()),
        other => std::borrow::Cow::Owned(other.to_string()),
    };
    let mut shown = String::new();
    for (count, c) in text.chars().enumerate() {
        if count == 80 {
            shown.push('…');
            break;
        }
        let turns_text = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || turns_text {
            shown.extend(c.escape_unicode());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// The most items one fan-out may have (each is a step state of its own, created when the
/// fan-out starts), and so the most items a `list` parameter may hold.
pub const MAX_ITEMS: usize = 10_000;

/// The most items a fan-out runs at once (`concurrency`): each is a process of its own.
pub const MAX_CONCURRENCY: u32 = 100;

/// How a fan-out step (`for_each`) runs over its items.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// `for_each`: an expression that yields the list of items, evaluated when the step starts.
    pub items: Expression,
    /// `as`: the item's name in the step's templates (`item` unless given).
    pub name: String,
    /// At most this many items run at once, at least 1.
    pub concurrency: u32,
    /// How many items may fail before no new item starts.
    pub max_failures: FailureLimit,
}

/// `max_failures`: a count of items, or a percentage of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureLimit {
    Count(u32),
    /// Of the number of items, rounded down; at most 100.
    Percent(u32),
}

impl FailureLimit {
    /// How many of `items` may fail while the fan-out goes on.
    pub fn allowed(self, items: usize) -> usize {
        match self {
            FailureLimit::Count(count) => count as usize,
            FailureLimit::Percent(percent) => items * percent as usize / 100,
        }
    }
}

impl std::fmt::Display for FailureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureLimit::Count(count) => write!(f, "{count}"),
            FailureLimit::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum StepKind {
    Run(Command),
    Http(HttpRequest),
    Check(Expression),
    Manual(Manual),
    Approval(Approval),
    Sleep(Duration),
    /// A group whose branches run at once; it ends when every branch has ended.
    Parallel(Vec<Step>),
}

impl StepKind {
    pub const NAMES: [&'static str; 7] =
        ["run", "http", "check", "manual", "approval", "sleep", "parallel"];

    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Run(_) => "run",
            StepKind::Http(_) => "http",
            StepKind::Check(_) => "check",
            StepKind::Manual(_) => "manual",
            StepKind::Approval(_) => "approval",
            StepKind::Sleep(_) => "sleep",
            StepKind::Parallel(_) => "parallel",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Command {
    /// Executed directly, one rendered element per argument: nothing is interpreted by a shell.
    Argv(Vec<Template>),
    /// Executed by `/bin/sh -c`; every interpolated value is shell-quoted when rendered.
    Shell(Template),
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: HttpMethod,
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub body: Option<HttpBody>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "POST")]
    Post,
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "PATCH")]
    Patch,
    #[serde(rename = "DELETE")]
    Delete,
}

impl HttpMethod {
    pub const ALL: [HttpMethod; 6] = [
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

#[derive(Debug, Clone)]
pub enum HttpBody {
    /// A JSON document whose string leaves are templates.
    Json(serde_json::Value),
    Text(Template),
}

/// A run role named by a gate or manual step, with where it was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub name: String,
    pub at: Position,
}

#[derive(Debug, Clone)]
pub struct Manual {
    pub role: RoleRef,
    pub instructions: Template,
}

#[derive(Debug, Clone)]
pub struct Approval {
    pub role: RoleRef,
    /// How many distinct people holding `role` must approve.
    pub approvals: u32,
    pub timeout: Option<Duration>,
    pub prompt: Option<Template>,
    pub allow_self_approval: bool,
    pub on_timeout: OnTimeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnTimeout {
    Fail,
    /// The gate passes to another role, which then has `timeout` to answer.
    Escalate {
        role: RoleRef,
        timeout: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    pub count: u32,
    pub delay: Duration,
}

/// What a step's result must look like to count as success.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// Accepted exit codes of a `run` step; empty means 0.
    pub exit_code: Vec<i32>,
    /// A regular expression stdout (trailing newlines removed) must match.
    pub stdout: Option<Pattern>,
    /// Accepted HTTP statuses; empty means any 2xx.
    pub status: Vec<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// The run waits for the commander to retry, skip, roll back or abort.
    #[default]
    Pause,
    Abort,
    Continue,
    Rollback,
}

impl OnFailure {
    pub const ALL: [OnFailure; 4] =
        [OnFailure::Pause, OnFailure::Abort, OnFailure::Continue, OnFailure::Rollback];

    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Pause => "pause",
            OnFailure::Abort => "abort",
            OnFailure::Continue => "continue",
            OnFailure::Rollback => "rollback",
        }
    }
}
