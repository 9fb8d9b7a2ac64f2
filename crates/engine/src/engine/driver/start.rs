//! Starting a step: its `when`, its rendering (masked for storage, revealed for execution),
//! a dry run's record, and waiting for people at a gate or manual step.

use crate::audit::{AuditData, NewEvent, StepFinished, StepSettled, StepWaiting, StepWouldRun};
use crate::engine::{EngineError, Progress};
use crate::plan::{self, Action, PendingCondition, Rendered};
use crate::policy::holders_of;
use crate::run::*;
use crate::runbook::{self, Command, Runbook, Step, StepKind};
use crate::runner::{Effect, HttpBody};
use crate::template::{self, Context, Target};

use super::{Driver, Launch};

/// `context` with a fan-out's item beside the run's values, when there is one.
fn with_item(context: Context, item: Option<ItemBinding<'_>>) -> Context {
    match item {
        Some((name, value)) => context.with_item(name, value),
        None => context,
    }
}

/// What starting a step came to.
pub(super) enum Started {
    /// It was dealt with: settled, recorded, waiting for people, or left for the next decision.
    Done,
    /// Its effect is ready to run (see [`Driver::take_off`]).
    Launch(Box<Launch>),
    /// A `check` failed and is tried again after this delay.
    RetryIn(std::time::Duration),
}

/// A fan-out's item, as its step's templates name it.
pub(super) type ItemBinding<'i> = (&'i str, &'i serde_json::Value);

/// What a step's `when`, templates and kind say must happen, worked out before anything is
/// committed: the contexts share the run's snapshot, and a commit while one lives would copy
/// the whole snapshot (a fan-out of many items would copy it once per item).
enum Prepared {
    /// A dry run records what the step would have done.
    WouldRun(Rendered, Option<&'static str>),
    /// The step ends without running: skipped, or failed with why.
    Settle(StepStatus, String),
    /// A group or fan-out starts, with a fan-out's items (or why they could not be listed).
    Group(Result<Vec<serde_json::Value>, String>),
    /// A gate or manual step waits for people, showing them this.
    Wait(Action),
    /// A `check` was evaluated: its one attempt.
    Check(Action, Attempt),
    /// An effect is ready to run, once its gate's approvals are checked.
    Launch(Box<Launch>),
}

impl Driver<'_> {
    /// Starts a pending step (a branch or an item included): its `when`, its rendering, and
    /// what its kind does; an effect is only prepared, for the caller to run.
    pub(super) async fn start(
        &mut self,
        runbook: &Runbook,
        step: &Step,
        item: Option<ItemBinding<'_>>,
    ) -> Result<Started, EngineError> {
        match self.prepare(step, item) {
            Prepared::WouldRun(rendered, note) => self.would_run(step, rendered, note).await?,
            Prepared::Settle(status, note) => self.settle(step, status, Some(note)).await?,
            Prepared::Group(items) => self.start_group(step, items).await?,
            Prepared::Wait(action) => self.wait_for_people(step, action).await?,
            Prepared::Check(rendered, attempt) => {
                tracing::Span::current().record("attempt", attempt.number);
                if let Some(delay) = self.finish_attempt(step, rendered, attempt).await? {
                    return Ok(Started::RetryIn(delay));
                }
            }
            Prepared::Launch(launch) => {
                if !self.approval_void(runbook, step, &launch.rendered).await? {
                    return Ok(Started::Launch(launch));
                }
            }
        }
        Ok(Started::Done)
    }

    /// Works out what starting `step` means, committing nothing.
    fn prepare(&self, step: &Step, item: Option<ItemBinding<'_>>) -> Prepared {
        let dry_run = self.run_record().mode == RunMode::DryRun;
        let revealed = with_item(self.revealed_context(), item);
        let masked = with_item(self.masked_context(), item);
        let dry_note = "depends on a step that did not run in this dry run";

        if let Some(when) = &step.when {
            if dry_run && depends_on_dry_steps(&self.snapshot, &when.source) {
                let condition = PendingCondition { when: when.source.clone() };
                return Prepared::WouldRun(Rendered::Condition(condition), Some(dry_note));
            }
            match template::evaluate(when, &revealed) {
                Ok(true) => {}
                Ok(false) => {
                    let note = format!("`when` was false: {}", when.source);
                    return Prepared::Settle(StepStatus::Skipped, note);
                }
                Err(error) => {
                    let note = format!(
                        "`when` could not be evaluated: {}",
                        self.unusable(&error.to_string())
                    );
                    return Prepared::Settle(StepStatus::Failed, note);
                }
            }
        }

        if let Some(fan_out) = &step.fan_out {
            if dry_run && depends_on_dry_steps(&self.snapshot, &fan_out.items.source) {
                // Its items are not known: what each would do, the item a placeholder.
                let placeholder = serde_json::Value::String(format!("⟨{}⟩", fan_out.name));
                let rendered =
                    match plan::render_action(step, &masked.with_item(&fan_out.name, &placeholder))
                    {
                        Ok(mut action) => {
                            self.secrets.mask_action(&mut action);
                            Rendered::Action(action)
                        }
                        Err(_) => Rendered::Condition(PendingCondition {
                            when: fan_out.items.source.clone(),
                        }),
                    };
                let note = "its items depend on a step that did not run in this dry run";
                return Prepared::WouldRun(rendered, Some(note));
            }
            // Items are stored, so they are listed with secrets masked.
            let items = match template::evaluate_items(&fan_out.items, &masked) {
                Ok(Some(items)) if items.len() <= crate::runbook::MAX_ITEMS => Ok(items),
                Ok(Some(items)) => Err(format!(
                    "`for_each` yielded {} items; a fan-out runs at most {}",
                    items.len(),
                    crate::runbook::MAX_ITEMS
                )),
                Ok(None) => Ok(Vec::new()),
                Err(error) => {
                    Err(format!("could not list the items: {}", self.unusable(&error.to_string())))
                }
            };
            return Prepared::Group(items);
        }
        if let StepKind::Parallel(_) = step.kind {
            return Prepared::Group(Ok(Vec::new()));
        }

        let rendered = match plan::render_action(step, &masked) {
            Ok(mut action) => {
                // Rendered with `***` for secrets; masked again for what earlier outputs or
                // parameters could still carry in another form.
                self.secrets.mask_action(&mut action);
                action
            }
            Err(error) => {
                let note =
                    format!("could not render the step: {}", self.unusable(&error.to_string()));
                return Prepared::Settle(StepStatus::Failed, note);
            }
        };

        match &step.kind {
            StepKind::Manual(_) | StepKind::Approval(_) if dry_run => {
                Prepared::WouldRun(rendered.into(), None)
            }
            StepKind::Manual(_) | StepKind::Approval(_) => Prepared::Wait(rendered),
            StepKind::Check(expression) => {
                if dry_run && depends_on_dry_steps(&self.snapshot, &expression.source) {
                    return Prepared::WouldRun(rendered.into(), Some(dry_note));
                }
                let (status, error) = match template::evaluate(expression, &revealed) {
                    Ok(true) => (StepStatus::Succeeded, None),
                    Ok(false) => (
                        StepStatus::Failed,
                        Some(format!("check was false: {}", expression.source)),
                    ),
                    Err(error) => (StepStatus::Failed, Some(self.unusable(&error.to_string()))),
                };
                let number = self.snapshot.step(&step.id).map_or(0, |s| s.attempt) + 1;
                let attempt = Attempt {
                    step_id: step.id.clone(),
                    number,
                    status: Some(status),
                    started_at: Some(self.engine.now()),
                    finished_at: Some(self.engine.now()),
                    error,
                    ..Attempt::default()
                };
                Prepared::Check(rendered, attempt)
            }
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Sleep(_)
                if dry_run && !step.read_only =>
            {
                Prepared::WouldRun(rendered.into(), None)
            }
            // A read-only step that reads what a dry run only recorded (a manual step's note,
            // a command's output) would run with an invented value: `None` for a host.
            StepKind::Run(_) | StepKind::Http(_)
                if dry_run && reads_dry_steps(&self.snapshot, step) =>
            {
                let note = "it reads a step that did not run in this dry run";
                Prepared::WouldRun(rendered.into(), Some(note))
            }
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Sleep(_) => {
                let effect = match plan::render_action(step, &revealed).map(effect_of) {
                    Ok(Some(effect)) => effect,
                    Ok(None) => {
                        let note = "the step has no effect to run".to_owned();
                        return Prepared::Settle(StepStatus::Failed, note);
                    }
                    Err(error) => {
                        let note = format!(
                            "could not render the step: {}",
                            self.unusable(&error.to_string())
                        );
                        return Prepared::Settle(StepStatus::Failed, note);
                    }
                };
                match self.step_env(step, &revealed) {
                    Ok(env) => Prepared::Launch(Box::new(Launch {
                        step: step.clone(),
                        rendered,
                        effect,
                        env,
                    })),
                    Err(note) => Prepared::Settle(StepStatus::Failed, note),
                }
            }
            StepKind::Parallel(_) => unreachable!("a group is prepared above"),
        }
    }

    /// Why a template or expression could not be used, masked, and naming the declared
    /// secrets this process has no value for (a run started elsewhere, taken over here).
    pub(super) fn unusable(&self, error: &str) -> String {
        let mut note = self.secrets.mask(error);
        let missing = self.secrets.missing();
        if !missing.is_empty() {
            let names: Vec<String> =
                missing.iter().map(|name| format!("STEADY_SECRET_{name}")).collect();
            note.push_str(&format!(
                " (this process has no value for {}: secrets are never rendered empty)",
                names.join(", ")
            ));
        }
        note
    }

    /// The step's own `env`, rendered with real values. The runner adds only the few
    /// variables of Steady's environment a process needs (`runner::INHERITED_ENV`).
    pub(super) fn step_env(
        &self,
        step: &Step,
        context: &Context,
    ) -> Result<Vec<(String, String)>, String> {
        let mut env = Vec::new();
        for (name, value) in &step.env {
            let value = template::render(value, Target::Text, context).map_err(|error| {
                format!("could not render env `{name}`: {}", self.unusable(&error.to_string()))
            })?;
            env.push((name.clone(), value));
        }
        Ok(env)
    }

    /// Records a step as what a dry run would have done.
    pub(super) async fn would_run(
        &mut self,
        step: &Step,
        rendered: Rendered,
        note: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.would_run(rendered.clone(), note.map(str::to_owned), self.engine.now());
        transition.steps.push(new_state);
        transition.events.push(
            NewEvent::typed(
                &Actor::steady(),
                Some(self.run_id),
                AuditData::StepWouldRun(StepWouldRun { rendered, note: note.map(str::to_owned) }),
            )
            .step(&step.id),
        );
        if self.commit(transition).await? {
            let detail = note.map(str::to_owned);
            self.observer.progress(
                self.run_record(),
                Progress::StepEnded {
                    step,
                    status: StepStatus::WouldRun,
                    attempt: 0,
                    detail,
                    duration: None,
                },
            );
        }
        Ok(())
    }

    /// Ends a step without running it: skipped by `when`, or failed before it could start.
    pub(super) async fn settle(
        &mut self,
        step: &Step,
        status: StepStatus,
        note: Option<String>,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let attempt = state.attempt;
        let mut transition = self.transition();
        let mut new_state = state.clone();
        new_state.end(status, note.clone(), self.engine.now());
        // A group skipped before it started: its branches are skipped too, and a fan-out's
        // items are none, so that later steps read `skipped` and an empty `items`.
        let unstarted = self.snapshot.children(&step.id).next().is_none();
        if status == StepStatus::Skipped && unstarted {
            for (index, branch) in step.branches().iter().enumerate() {
                let mut child = StepState::child(&branch.id, &step.id, state.phase, index);
                child.end(StepStatus::Skipped, note.clone(), self.engine.now());
                transition.steps.push(child);
            }
            if let Some(fan_out) = &step.fan_out {
                new_state.rendered = Some(Rendered::Action(Action::ForEach {
                    items: Vec::new(),
                    concurrency: fan_out.concurrency,
                    max_failures: fan_out.max_failures.to_string(),
                }));
            }
        }
        transition.steps.push(new_state);
        let settled = StepSettled { status, note: note.clone() };
        let data = if status == StepStatus::Skipped {
            AuditData::StepSkipped(settled)
        } else {
            AuditData::StepFinished(StepFinished::Settled(settled))
        };
        transition
            .events
            .push(NewEvent::typed(&Actor::steady(), Some(self.run_id), data).step(&step.id));
        if self.commit(transition).await? {
            self.observer.progress(
                self.run_record(),
                Progress::StepEnded { step, status, attempt, detail: note, duration: None },
            );
        }
        Ok(())
    }

    /// A gate or manual step: record what it waits for, and leave the run to the people. A
    /// waiting run holds no lease, task or process.
    pub(super) async fn wait_for_people(
        &mut self,
        step: &Step,
        rendered: Action,
    ) -> Result<(), EngineError> {
        let Some(state) = self.snapshot.step(&step.id) else { return Ok(()) };
        let mut transition = self.transition();
        let mut new_state = state.clone();
        let deadline = match &step.kind {
            StepKind::Approval(gate) => {
                gate.timeout.map(|timeout| self.engine.later(timeout.as_std()))
            }
            _ => None,
        };
        new_state.wait_for_people(rendered.clone(), deadline, self.engine.now());
        // A branch waits while its siblings run: its group decides when the run waits.
        if new_state.parent.is_none() {
            let mut change = RunChange::from(self.run_record());
            change.status = RunStatus::Waiting;
            change.lease = LeaseChange::Release;
            transition.run = Some(change);
        }
        transition.steps.push(new_state);
        let role = match &step.kind {
            StepKind::Approval(gate) => gate.role.name.clone(),
            StepKind::Manual(manual) => manual.role.name.clone(),
            _ => String::new(),
        };
        transition.events.push(
            NewEvent::typed(
                &Actor::steady(),
                Some(self.run_id),
                AuditData::StepWaiting(StepWaiting {
                    rendered: rendered.into(),
                    holders: holders_of(&self.snapshot, &role),
                    role,
                }),
            )
            .step(&step.id),
        );
        self.commit(transition).await.map(|_| ())
    }
}

pub(super) fn effect_of(action: Action) -> Option<Effect> {
    Some(match action {
        Action::Run { argv } => Effect::Argv(argv),
        Action::Shell { command } => Effect::Shell(command),
        Action::Http { method, url, headers, json, body } => Effect::Http {
            method,
            url,
            headers,
            body: json.map(HttpBody::Json).or(body.map(HttpBody::Text)),
        },
        Action::Sleep { duration } => {
            Effect::Sleep(duration.parse::<crate::Duration>().ok()?.as_std())
        }
        Action::Check { .. }
        | Action::Manual { .. }
        | Action::Approval { .. }
        | Action::Parallel { .. }
        | Action::ForEach { .. } => return None,
    })
}

/// Whether any template of a `run` or `http` step (its command, request or `env`) reads a step
/// that a dry run did not execute.
fn reads_dry_steps(snapshot: &RunSnapshot, step: &Step) -> bool {
    let mut sources: Vec<String> = step.env.iter().map(|(_, t)| t.source.clone()).collect();
    match &step.kind {
        StepKind::Run(Command::Argv(argv)) => sources.extend(argv.iter().map(|t| t.source.clone())),
        StepKind::Run(Command::Shell(line)) => sources.push(line.source.clone()),
        StepKind::Http(request) => {
            sources.push(request.url.source.clone());
            sources.extend(request.headers.iter().map(|(_, t)| t.source.clone()));
            match &request.body {
                Some(runbook::HttpBody::Text(text)) => sources.push(text.source.clone()),
                Some(runbook::HttpBody::Json(json)) => sources.push(json.to_string()),
                None => {}
            }
        }
        _ => {}
    }
    sources.iter().any(|source| depends_on_dry_steps(snapshot, source))
}

/// Whether an expression reads a step that a dry run did not execute.
pub(super) fn depends_on_dry_steps(snapshot: &RunSnapshot, source: &str) -> bool {
    snapshot
        .steps
        .iter()
        .filter(|state| state.status == StepStatus::WouldRun)
        .any(|state| source.contains(&format!("steps.{}", state.step_id)))
}
