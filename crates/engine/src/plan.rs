//! A plan: the procedure rendered with its parameters, step by step, as a person would follow
//! it. Made offline, it touches nothing; what only a run can know shows as `⟨placeholder⟩`.

use std::fmt;

use serde::{Deserialize, Serialize};

mod text;

use crate::params::ParamValues;
use crate::runbook::{
    Command, Contact, HttpBody, OnFailure, OnTimeout, ParamValue, Runbook, Step, StepKind, Template,
};
use crate::template::{self, Context, Target};

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runbook: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub review_every: Option<String>,
    /// The recovery time objective, when the runbook declares one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto: Option<String>,
    /// The rendered lock key: no other active run may hold it.
    pub lock: Option<String>,
    pub contacts: Vec<Contact>,
    pub roles: Vec<PlannedRole>,
    pub params: Vec<PlannedParam>,
    pub steps: Vec<PlannedStep>,
    pub rollback: Vec<PlannedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedRole {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedParam {
    pub name: String,
    pub value: ParamValue,
    /// The value is the parameter's default rather than one that was given.
    pub is_default: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStep {
    /// `1`, `2`, … for steps; `R1`, `R2`, … for rollback steps.
    pub number: String,
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub read_only: bool,
    pub idempotent: bool,
    pub when: Option<String>,
    pub action: Action,
    pub timeout: Option<String>,
    pub retries: Option<String>,
    pub expect: Vec<String>,
    pub on_failure: OnFailure,
    /// How a fan-out runs its items.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out: Option<PlannedFanOut>,
    /// The branches of a group, or the items of a fan-out, each rendered (`3.1`, `3.2`, …).
    /// A fan-out whose items only the run will know shows one item, rendered with the item
    /// as a placeholder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<PlannedStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedFanOut {
    /// `for_each` as written.
    pub for_each: String,
    /// The item's name in templates.
    #[serde(rename = "as")]
    pub name: String,
    pub concurrency: u32,
    /// A count or a percentage (`10%`).
    pub max_failures: String,
    /// The items, when they are known before the run.
    pub items: Option<Vec<serde_json::Value>>,
}

/// What a step does, rendered: as an offline plan shows it, as an approval binds it, and as
/// the audit log's `rendered` records it. Serialized as an object tagged by `kind`
/// (`{"kind":"run","argv":[..]}`), every field present (`null` when absent). Reading it back
/// is strict — no unknown field, no missing one — so that what is read serializes to the same
/// JSON again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// A program run directly with these arguments.
    Run {
        argv: Vec<String>,
    },
    /// A command line for `/bin/sh -c`, every interpolated value quoted.
    Shell {
        command: String,
    },
    Http {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        /// A JSON body.
        #[serde(deserialize_with = "crate::audit::present")]
        json: Option<serde_json::Value>,
        /// A text body.
        #[serde(deserialize_with = "crate::audit::present")]
        body: Option<String>,
    },
    Check {
        expression: String,
    },
    Manual {
        role: String,
        instructions: String,
    },
    Approval {
        role: String,
        approvals: u32,
        #[serde(deserialize_with = "crate::audit::present")]
        timeout: Option<String>,
        #[serde(deserialize_with = "crate::audit::present")]
        prompt: Option<String>,
        allow_self_approval: bool,
        #[serde(deserialize_with = "crate::audit::present")]
        escalate_to: Option<String>,
    },
    Sleep {
        duration: String,
    },
    /// A group: the ids of its branches, each rendered on its own.
    Parallel {
        branches: Vec<String>,
    },
    /// A fan-out as it started: its items, each run as a step of its own.
    ForEach {
        items: Vec<serde_json::Value>,
        concurrency: u32,
        /// A count, or a percentage of the items (`10%`).
        max_failures: String,
    },
}

impl Action {
    /// Calls `text` on every string value the action holds and `json` on its JSON body:
    /// never on a key or on `kind`, which are Steady's words rather than the runbook's. What
    /// masks secrets in a rendered action and makes it storable goes through here.
    pub fn each_value_mut(
        &mut self,
        mut text: impl FnMut(&mut String),
        mut json: impl FnMut(&mut serde_json::Value),
    ) {
        match self {
            Action::Run { argv } => argv.iter_mut().for_each(text),
            Action::Shell { command } => text(command),
            Action::Http { method, url, headers, json: body_json, body } => {
                text(method);
                text(url);
                for (name, value) in headers {
                    text(name);
                    text(value);
                }
                if let Some(body_json) = body_json {
                    json(body_json);
                }
                if let Some(body) = body {
                    text(body);
                }
            }
            Action::Check { expression } => text(expression),
            Action::Manual { role, instructions } => {
                text(role);
                text(instructions);
            }
            Action::Approval {
                role,
                approvals: _,
                timeout,
                prompt,
                allow_self_approval: _,
                escalate_to,
            } => {
                text(role);
                [timeout, prompt, escalate_to].into_iter().flatten().for_each(text);
            }
            Action::Sleep { duration } => text(duration),
            Action::Parallel { branches: _ } => {}
            Action::ForEach { items, concurrency: _, max_failures: _ } => {
                items.iter_mut().for_each(json)
            }
        }
    }

    /// The JSON the action is stored and shown as, keys sorted as a `Value` keeps them.
    pub fn to_value(&self) -> serde_json::Value {
        // An action holds only strings, numbers, booleans and JSON: it always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What a step's state shows it does: its rendered [`Action`], or, when a dry run could not
/// render it because its `when` reads steps the dry run did not execute, that condition.
/// Stored as the action's JSON or `{"when"}`, and recorded so in `step.would_run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Rendered {
    /// The step's action, rendered, secrets masked.
    Action(Action),
    /// `{"when"}`: the step's `when` depends on steps the dry run did not run, so the step
    /// could not be rendered; this is the condition as written.
    Condition(PendingCondition),
    /// JSON an earlier Steady stored that reads as neither, kept and shown as it is: before
    /// masking touched values only, a secret equal to a field name (`argv`) or a kind (`http`)
    /// was masked there too. Reading it must not make a stored run unreadable; nothing new is
    /// ever written so.
    Stored(serde_json::Value),
}

/// `{"when"}`: a condition as written in the runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingCondition {
    pub when: String,
}

impl Rendered {
    /// The rendered action, unless only the condition is known.
    pub fn action(&self) -> Option<&Action> {
        match self {
            Rendered::Action(action) => Some(action),
            Rendered::Condition(_) | Rendered::Stored(_) => None,
        }
    }

    /// The JSON the step's state is stored and shown as, keys sorted as a `Value` keeps them.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Rendered::Action(action) => action.to_value(),
            Rendered::Condition(condition) => serde_json::json!({ "when": condition.when }),
            Rendered::Stored(value) => value.clone(),
        }
    }
}

impl From<Action> for Rendered {
    fn from(action: Action) -> Rendered {
        Rendered::Action(action)
    }
}

/// The stored JSON text: compact, keys sorted.
impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_value())
    }
}

impl Plan {
    /// Renders `runbook` with `params`, which must have been resolved against it.
    pub fn new(runbook: &Runbook, params: &ParamValues) -> Plan {
        let context = Context::offline(runbook, params);
        let plan_steps = |steps: &[Step], prefix: &str| {
            steps
                .iter()
                .enumerate()
                .map(|(index, step)| planned_step(step, format!("{prefix}{}", index + 1), &context))
                .collect()
        };
        Plan {
            runbook: runbook.name.clone(),
            title: runbook.title.clone(),
            description: runbook.description.clone(),
            owner: runbook.owner.clone(),
            review_every: runbook.review_every.map(|duration| duration.to_string()),
            rto: runbook.rto.map(|duration| duration.to_string()),
            lock: runbook.lock.as_ref().map(|lock| render(lock, Target::Text, &context)),
            contacts: runbook.contacts.clone(),
            roles: runbook
                .roles
                .iter()
                .map(|role| PlannedRole {
                    name: role.name.clone(),
                    description: role.description.clone(),
                })
                .collect(),
            params: runbook
                .params
                .iter()
                .filter_map(|param| {
                    let value = params.get(&param.name)?.clone();
                    let is_default = param.default.as_ref() == Some(&value);
                    Some(PlannedParam { name: param.name.clone(), value, is_default })
                })
                .collect(),
            steps: plan_steps(&runbook.steps, ""),
            rollback: plan_steps(&runbook.rollback, "R"),
        }
    }
}

/// Renders a template for display; a template that cannot be rendered before the run (say, a
/// filter applied to a step's output) is shown as written.
fn render(template: &Template, target: Target, context: &Context) -> String {
    template::render(template, target, context).unwrap_or_else(|_| template.source.clone())
}

/// Renders what a step does with a run's values; fails on the first template that cannot be
/// rendered. Used by the executor, and by the approval binding.
pub fn render_action(step: &Step, context: &Context) -> Result<Action, template::RenderError> {
    action(
        step,
        |template, target| {
            // Say which template, since a step has several (each argument, the URL, …).
            template::render(template, target, context).map_err(|error| {
                let mut source: String = template.source.chars().take(80).collect();
                if source.len() < template.source.len() {
                    source.push('…');
                }
                template::RenderError { message: format!("{} in `{source}`", error.message) }
            })
        },
        |json| template::render_json(json, context),
    )
}

/// Renders a step for an offline plan: what cannot be rendered before the run (say, a filter
/// applied to a step's output) is shown as written.
fn plan_action(step: &Step, context: &Context) -> Action {
    let lenient = action(
        step,
        |template, target| Ok(render(template, target, context)),
        |json| Ok(template::render_json(json, context).unwrap_or_else(|_| json.clone())),
    );
    lenient
        .unwrap_or_else(|never: template::RenderError| unreachable!("lenient rendering: {never}"))
}

fn action(
    step: &Step,
    render: impl Fn(&Template, Target) -> Result<String, template::RenderError>,
    render_json: impl Fn(&serde_json::Value) -> Result<serde_json::Value, template::RenderError>,
) -> Result<Action, template::RenderError> {
    Ok(match &step.kind {
        StepKind::Run(Command::Argv(argv)) => Action::Run {
            argv: argv
                .iter()
                .map(|argument| render(argument, Target::Text))
                .collect::<Result<_, _>>()?,
        },
        StepKind::Run(Command::Shell(command)) => {
            Action::Shell { command: render(command, Target::Shell)? }
        }
        StepKind::Http(request) => Action::Http {
            method: request.method.as_str().to_owned(),
            url: render(&request.url, Target::Text)?,
            headers: request
                .headers
                .iter()
                .map(|(name, value)| Ok((name.clone(), render(value, Target::Text)?)))
                .collect::<Result<_, template::RenderError>>()?,
            json: match &request.body {
                Some(HttpBody::Json(json)) => Some(render_json(json)?),
                _ => None,
            },
            body: match &request.body {
                Some(HttpBody::Text(text)) => Some(render(text, Target::Text)?),
                _ => None,
            },
        },
        StepKind::Check(expression) => Action::Check { expression: expression.source.clone() },
        StepKind::Manual(manual) => Action::Manual {
            role: manual.role.name.clone(),
            instructions: render(&manual.instructions, Target::Text)?,
        },
        StepKind::Approval(approval) => Action::Approval {
            role: approval.role.name.clone(),
            approvals: approval.approvals,
            timeout: approval.timeout.map(|timeout| timeout.to_string()),
            prompt: approval
                .prompt
                .as_ref()
                .map(|prompt| render(prompt, Target::Text))
                .transpose()?,
            allow_self_approval: approval.allow_self_approval,
            escalate_to: match &approval.on_timeout {
                OnTimeout::Fail => None,
                OnTimeout::Escalate { role, timeout } => {
                    Some(format!("{} for {timeout}", role.name))
                }
            },
        },
        StepKind::Sleep(duration) => Action::Sleep { duration: duration.to_string() },
        StepKind::Parallel(branches) => {
            Action::Parallel { branches: branches.iter().map(|branch| branch.id.clone()).collect() }
        }
    })
}

/// The children of a group or fan-out step with the context each renders in: the branches,
/// or one step per item (see [`Step::for_item`]) with the item beside the run's values. A
/// fan-out whose items are not known yet (`None` from [`template::evaluate_items`]) has one
/// child, the step itself, its item a placeholder.
pub fn children(
    step: &Step,
    context: &Context,
) -> Result<Vec<(Step, Context)>, template::RenderError> {
    if let Some(fan_out) = &step.fan_out {
        return Ok(match template::evaluate_items(&fan_out.items, context)? {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    (step.for_item(index, item), context.with_item(&fan_out.name, item))
                })
                .collect(),
            None => {
                let placeholder = serde_json::Value::String(format!("⟨{}⟩", fan_out.name));
                vec![(step.clone(), context.with_item(&fan_out.name, &placeholder))]
            }
        });
    }
    Ok(step.branches().iter().map(|branch| (branch.clone(), context.clone())).collect())
}

fn planned_step(step: &Step, number: String, context: &Context) -> PlannedStep {
    // A fan-out's own line shows what each item does, the item a placeholder.
    let action = match &step.fan_out {
        Some(fan_out) => {
            let placeholder = serde_json::Value::String(format!("⟨{}⟩", fan_out.name));
            plan_action(step, &context.with_item(&fan_out.name, &placeholder))
        }
        None => plan_action(step, context),
    };
    let fan_out = step.fan_out.as_ref().map(|fan_out| PlannedFanOut {
        for_each: fan_out.items.source.clone(),
        name: fan_out.name.clone(),
        concurrency: fan_out.concurrency,
        max_failures: fan_out.max_failures.to_string(),
        items: template::evaluate_items(&fan_out.items, context).ok().flatten(),
    });
    let children = children(step, context)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(index, (child, context))| {
            let mut planned = planned_step(child, format!("{number}.{}", index + 1), context);
            // A fan-out's child is the fan-out's kind; its own fan-out is the item.
            planned.fan_out = None;
            planned.children = Vec::new();
            planned
        })
        .collect();
    let mut expect = Vec::new();
    if !step.expect.exit_code.is_empty() {
        expect.push(format!("exit code {}", join(&step.expect.exit_code, " or ")));
    }
    if let Some(pattern) = &step.expect.stdout {
        expect.push(format!("stdout matches {}", pattern.as_str()));
    }
    if !step.expect.status.is_empty() {
        expect.push(format!("HTTP status {}", join(&step.expect.status, " or ")));
    }
    let default_timeout = matches!(step.kind, StepKind::Run(_) | StepKind::Http(_))
        .then(|| crate::Duration::from_std(Step::DEFAULT_TIMEOUT));
    PlannedStep {
        number,
        id: step.id.clone(),
        name: step.name.clone(),
        description: step.description.clone(),
        read_only: step.read_only,
        idempotent: step.idempotent,
        when: step.when.as_ref().map(|when| when.source.clone()),
        action,
        timeout: step.timeout.or(default_timeout).map(|timeout| timeout.to_string()),
        retries: step
            .retries
            .map(|retries| format!("{} more times, {} apart", retries.count, retries.delay)),
        expect,
        on_failure: step.on_failure,
        fan_out,
        children,
    }
}

fn join(values: &[impl ToString], separator: &str) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}
