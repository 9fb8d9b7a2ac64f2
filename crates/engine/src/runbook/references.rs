//! Compiles every template and expression of a runbook and checks what each refers to:
//! declared parameters, secrets and roles, and only steps that will have run before it.

use std::collections::HashSet;

use super::*;
use crate::diagnostic::with_suggestion;
use crate::template::{self, Compiler, GLOBAL_FUNCTIONS, SyntaxError, Target};

/// What templates may read of a step: `steps.<id>.<field>`.
pub const STEP_FIELDS: [&str; 7] =
    ["status", "stdout", "stderr", "exit_code", "json", "approved_by", "note"];
/// What templates may read of the run: `run.<field>`.
pub const RUN_FIELDS: [&str; 3] = ["id", "mode", "commander"];
const ROOTS: [&str; 5] = ["params", "secrets", "steps", "run", "roles"];

pub(super) fn check(runbook: &Runbook, source: &str, out: &mut Vec<Diagnostic>) {
    let checker =
        Checker { runbook, source_lines: source.lines().collect(), compiler: Compiler::new(), out };
    checker.run();
}

struct Checker<'a> {
    runbook: &'a Runbook,
    source_lines: Vec<&'a str>,
    compiler: Compiler<'a>,
    out: &'a mut Vec<Diagnostic>,
}

/// Where a template stands, which decides what it may refer to.
struct Scope<'a, 's> {
    /// The step the template belongs to, if any.
    step: Option<&'a Step>,
    /// Ids of the steps that will have run (or been skipped) before it: a prefix of one list
    /// per sequence, so that a runbook of thousands of steps is not checked in quadratic time.
    earlier: &'s [&'a str],
    /// Whether step results and run facts exist yet: not when the lock key is rendered.
    in_run: bool,
    /// The name of a fan-out's item (its `as`), in the templates that render each item.
    item: Option<&'a str>,
    /// The `parallel` group a branch belongs to, whose other branches run at the same time.
    group: Option<&'a Step>,
    /// A trigger's `when` or parameter: evaluated on an alert before any run exists, it reads
    /// only `alert`.
    trigger: bool,
}

impl<'a> Checker<'a> {
    fn run(mut self) {
        let runbook = self.runbook;
        if let Some(lock) = &runbook.lock {
            let scope = Scope {
                step: None,
                earlier: &[],
                in_run: false,
                item: None,
                group: None,
                trigger: false,
            };
            self.template(lock, Target::Text, &scope);
        }
        for trigger in &runbook.triggers {
            let scope = Scope {
                step: None,
                earlier: &[],
                in_run: false,
                item: None,
                group: None,
                trigger: true,
            };
            self.expression(&trigger.when, &scope);
            for mapping in &trigger.params {
                self.template(&mapping.value, Target::Text, &scope);
            }
        }
        self.sequence(&runbook.steps, &[]);
        // A rollback runs after any main step may have failed; it may read every main step's
        // result (status tells which ran) and the rollback steps before it.
        self.sequence(&runbook.rollback, &runbook.steps);
    }

    /// Checks a sequence of steps, each of which may read `preceding` and the steps before it.
    /// A group's branches run at the same time, so a branch reads only the steps before its
    /// group; later steps read every branch.
    fn sequence(&mut self, steps: &'a [Step], preceding: &'a [Step]) {
        let ids =
            |step: &'a Step| std::iter::once(step).chain(step.branches()).map(|s| s.id.as_str());
        // Every id in the order the steps run; a step reads the prefix before its own.
        let order: Vec<&'a str> = preceding.iter().chain(steps).flat_map(ids).collect();
        let mut before = preceding.iter().flat_map(ids).count();
        for step in steps {
            let earlier = &order[..before];
            before += ids(step).count();
            for branch in step.branches() {
                let scope = Scope {
                    step: Some(branch),
                    earlier,
                    in_run: true,
                    item: None,
                    group: Some(step),
                    trigger: false,
                };
                self.step(branch, scope);
            }
            let scope = Scope {
                step: Some(step),
                earlier,
                in_run: true,
                item: None,
                group: None,
                trigger: false,
            };
            self.step(step, scope);
        }
    }

    fn step(&mut self, step: &'a Step, mut scope: Scope<'a, '_>) {
        if let Some(when) = &step.when {
            self.expression(when, &scope);
        }
        if let Some(fan_out) = &step.fan_out {
            self.expression(&fan_out.items, &scope);
            self.items_shape(fan_out);
            scope.item = Some(&fan_out.name);
        }
        match &step.kind {
            StepKind::Run(Command::Argv(argv)) => {
                for argument in argv {
                    self.template(argument, Target::Text, &scope);
                }
            }
            StepKind::Run(Command::Shell(command)) => self.template(command, Target::Shell, &scope),
            StepKind::Http(request) => {
                self.template(&request.url, Target::Text, &scope);
                for (_, value) in &request.headers {
                    self.template(value, Target::Text, &scope);
                }
                match &request.body {
                    Some(HttpBody::Text(body)) => self.template(body, Target::Text, &scope),
                    Some(HttpBody::Json(json)) => self.json(json, step.at, &scope),
                    None => {}
                }
            }
            StepKind::Check(expression) => self.expression(expression, &scope),
            StepKind::Manual(manual) => {
                self.role(&manual.role);
                self.template(&manual.instructions, Target::Text, &scope);
            }
            StepKind::Approval(approval) => {
                self.role(&approval.role);
                if let OnTimeout::Escalate { role, .. } = &approval.on_timeout {
                    self.role(role);
                }
                if let Some(prompt) = &approval.prompt {
                    self.template(prompt, Target::Text, &scope);
                }
            }
            // Each branch is checked on its own, as a step.
            StepKind::Sleep(_) | StepKind::Parallel(_) => {}
        }
        for (_, value) in &step.env {
            self.template(value, Target::Text, &scope);
        }
    }

    /// What can be known of a fan-out's items before any run: a parameter that is not a
    /// list, or a constant that is not a list or holds too many items.
    fn items_shape(&mut self, fan_out: &FanOut) {
        let source = fan_out.items.source.trim();
        let at = fan_out.items.at;
        if let Some(name) = source.strip_prefix("params.")
            && let Some(param) = self.runbook.param(name)
            && param.kind != ParamType::List
        {
            self.out.push(Diagnostic::error(
                at,
                format!(
                    "`for_each: {source}` reads a {} parameter, which is not a list: declare `{name}` with `type: list`",
                    param.kind.as_str()
                ),
            ));
            return;
        }
        let constant = self.compiler.expression(source).is_ok_and(|refs| refs.is_empty());
        if !constant {
            return;
        }
        let context = template::Context::offline(self.runbook, &Default::default());
        match template::evaluate_items(&fan_out.items, &context) {
            Ok(Some(items)) if items.len() > MAX_ITEMS => self.out.push(Diagnostic::error(
                at,
                format!(
                    "`for_each` yields {} items; a fan-out runs at most {MAX_ITEMS}",
                    items.len()
                ),
            )),
            Err(error) => self.out.push(Diagnostic::error(at, error.message)),
            Ok(_) => {}
        }
    }

    fn role(&mut self, role: &RoleRef) {
        if self.runbook.role(&role.name).is_none() {
            let message = format!("unknown role `{}`: declare it under `roles`", role.name);
            let declared = self.runbook.roles.iter().map(|role| role.name.as_str());
            self.out
                .push(Diagnostic::error(role.at, with_suggestion(message, &role.name, declared)));
        }
    }

    fn json(&mut self, value: &'a serde_json::Value, at: Position, scope: &Scope<'a, '_>) {
        match value {
            serde_json::Value::String(source) => match self.compiler.template(source, Target::Text)
            {
                Ok(references) => {
                    for path in sorted(references) {
                        if let Err(message) = self.reference(&path, scope) {
                            self.out
                                .push(Diagnostic::error(at, format!("in `http.json`: {message}")));
                        }
                    }
                }
                Err(error) => {
                    self.out.push(Diagnostic::error(at, format!("in `http.json`: {error}")))
                }
            },
            serde_json::Value::Array(items) => {
                items.iter().for_each(|item| self.json(item, at, scope))
            }
            serde_json::Value::Object(fields) => {
                fields.values().for_each(|item| self.json(item, at, scope))
            }
            _ => {}
        }
    }

    fn template(&mut self, template: &'a Template, target: Target, scope: &Scope<'a, '_>) {
        let compiled = self.compiler.template(&template.source, target);
        self.compiled(&template.source, template.at, compiled, scope);
    }

    fn expression(&mut self, expression: &'a Expression, scope: &Scope<'a, '_>) {
        let compiled = self.compiler.expression(&expression.source);
        self.compiled(&expression.source, expression.at, compiled, scope);
    }

    fn compiled(
        &mut self,
        text: &str,
        at: Position,
        compiled: Result<HashSet<String>, SyntaxError>,
        scope: &Scope<'a, '_>,
    ) {
        match compiled {
            Err(error) => {
                let offset = error.offset.unwrap_or_else(|| line_offset(text, error.line));
                let at = self.locate(at, text, offset);
                self.out.push(Diagnostic::error(at, error.message));
            }
            Ok(references) => {
                for path in sorted(references) {
                    if let Err(message) = self.reference(&path, scope) {
                        let offset = text.find(path.as_str()).unwrap_or(0);
                        let at = self.locate(at, text, offset);
                        self.out.push(Diagnostic::error(at, message));
                    }
                }
            }
        }
    }

    /// Checks one dotted path a template reads, such as `steps.lag.stdout`.
    fn reference(&self, path: &str, scope: &Scope<'a, '_>) -> Result<(), String> {
        let runbook = self.runbook;
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        if scope.trigger {
            return trigger_reference(root);
        }
        let name = parts.next();
        let field = parts.next();
        match root {
            "params" => match name {
                Some(name) if runbook.param(name).is_none() => {
                    let declared = runbook.params.iter().map(|param| param.name.as_str());
                    let message = format!("unknown parameter `{name}`: declare it under `params`");
                    Err(with_suggestion(message, name, declared))
                }
                _ => Ok(()),
            },
            "secrets" => match name {
                _ if !scope.in_run => {
                    Err("the lock key cannot use secrets: it is stored and shown".to_owned())
                }
                Some(name) if !runbook.secrets.iter().any(|secret| secret == name) => {
                    let message = format!("unknown secret `{name}`: list it under `secrets`");
                    Err(with_suggestion(message, name, runbook.secrets.iter().map(String::as_str)))
                }
                _ => Ok(()),
            },
            "steps" => {
                if !scope.in_run {
                    return Err(
                        "the lock key is rendered before any step runs: it can only use params"
                            .to_owned(),
                    );
                }
                let Some(id) = name else { return Ok(()) };
                self.step_reference(id, field, scope)
            }
            "run" => match name {
                _ if !scope.in_run => {
                    Err("the lock key is rendered before the run exists: it can only use params"
                        .to_owned())
                }
                Some(name) if !RUN_FIELDS.contains(&name) => {
                    let message = format!(
                        "`run` has no field `{name}`: use run.id, run.mode or run.commander"
                    );
                    Err(with_suggestion(message, name, RUN_FIELDS))
                }
                _ => Ok(()),
            },
            "roles" => match name {
                _ if !scope.in_run => Err(
                    "the lock key is rendered before roles are assigned: it can only use params"
                        .to_owned(),
                ),
                Some(name) if runbook.role(name).is_none() => {
                    let message = format!("unknown role `{name}`: declare it under `roles`");
                    Err(with_suggestion(
                        message,
                        name,
                        runbook.roles.iter().map(|role| role.name.as_str()),
                    ))
                }
                _ => Ok(()),
            },
            _ if GLOBAL_FUNCTIONS.contains(&root) => Ok(()),
            _ if scope.item == Some(root) => Ok(()),
            "alert" => Err(
                "`alert` is only known to a trigger's `when` and `params`: a run's templates can use params, secrets, steps, run and roles"
                    .to_owned(),
            ),
            _ => {
                let mut message = "unknown variable `{root}`: templates can use params, secrets, steps, run and roles".replace("{root}", root);
                if let Some(item) = scope.item {
                    message.push_str(&format!(", and `{item}` for the fan-out's item"));
                }
                Err(with_suggestion(message, root, ROOTS.into_iter().chain(scope.item)))
            }
        }
    }

    fn step_reference(
        &self,
        id: &str,
        field: Option<&str>,
        scope: &Scope<'a, '_>,
    ) -> Result<(), String> {
        let all_steps = || self.runbook.all_steps();
        if scope.step.is_some_and(|step| step.id == id) {
            return Err(format!(
                "step `{id}` cannot use its own result: `steps.{id}` is only known after it ran"
            ));
        }
        if let Some(group) = scope.group {
            if group.id == id {
                return Err(format!(
                    "`steps.{id}` refers to the group this branch belongs to, which ends only after its branches: a branch can only use the results of steps before its group"
                ));
            }
            if group.branches().iter().any(|branch| branch.id == id) {
                return Err(format!(
                    "`steps.{id}` refers to branch `{id}` of the same group `{}`, which runs at the same time: a branch can only use the results of steps before its group",
                    group.id
                ));
            }
        }
        if !scope.earlier.contains(&id) {
            return Err(match all_steps().find(|step| step.id == id) {
                Some(later) => format!(
                    "`steps.{id}` refers to step `{id}`, which runs later (line {}): a step can only use the results of steps before it",
                    later.at.line
                ),
                None => {
                    let message = format!("unknown step `{id}`");
                    with_suggestion(message, id, scope.earlier.iter().copied())
                }
            });
        }
        let fans_out = all_steps().find(|step| step.id == id).is_some_and(|s| s.fan_out.is_some());
        match field {
            Some("items") if fans_out => Ok(()),
            Some("items") => Err(format!(
                "`steps.{id}.items` is the list of a fan-out's items, and step `{id}` has no `for_each`"
            )),
            Some(field) if !STEP_FIELDS.contains(&field) => {
                let message = format!(
                    "a step result has no field `{field}`: use status, stdout, stderr, exit_code, json, approved_by or note"
                );
                Err(with_suggestion(message, field, STEP_FIELDS))
            }
            _ => Ok(()),
        }
    }

    /// Maps a byte offset inside a template to a line and column of the runbook, where the
    /// scalar's style makes that exact: a single-line plain or quoted string, or a literal
    /// block (`|`). Otherwise (a folded or multi-line flow string) the scalar's start is as
    /// close as it gets.
    fn locate(&self, at: Position, text: &str, offset: usize) -> Position {
        let before = &text[..floor_char_boundary(text, offset)];
        let line_index = before.matches('\n').count();
        let column_in_line = before.rsplit('\n').next().unwrap_or_default().chars().count();
        let source_line = |index: usize| self.source_lines.get(at.line.saturating_sub(1) + index);
        if !text.contains('\n') {
            let opening =
                source_line(0).and_then(|line| line.chars().nth(at.column.saturating_sub(1)));
            let quote = usize::from(matches!(opening, Some('"' | '\'')));
            return Position { line: at.line, column: at.column + quote + column_in_line };
        }
        // A block scalar's position is that of its first line of content; in a literal block
        // every line of the text stands on a line of its own at the same indentation.
        let indent = at.column.saturating_sub(1);
        let literal = text.lines().take(line_index + 1).enumerate().all(|(index, line)| {
            source_line(index)
                .is_some_and(|source| source.get(indent..).unwrap_or_default() == line)
        });
        if literal {
            Position { line: at.line + line_index, column: indent + 1 + column_in_line }
        } else {
            at
        }
    }
}

/// What a trigger's template may read: the alert, and nothing of a run, which does not exist
/// yet. Labels are the alert's own, so what `alert.` is followed by is not checked.
fn trigger_reference(root: &str) -> Result<(), String> {
    match root {
        "alert" => Ok(()),
        _ if GLOBAL_FUNCTIONS.contains(&root) => Ok(()),
        "secrets" => {
            Err("a trigger cannot read secrets: an alert must never pull a secret into a parameter"
                .to_owned())
        }
        "params" | "steps" | "run" | "roles" => Err(format!(
            "a trigger is evaluated on an alert before any run exists, so it cannot read `{root}`: it can only read `alert`"
        )),
        _ => {
            let message = format!("unknown variable `{root}`: a trigger can only read `alert`");
            Err(with_suggestion(message, root, ["alert"]))
        }
    }
}

fn sorted(references: HashSet<String>) -> Vec<String> {
    let mut references: Vec<String> = references.into_iter().collect();
    references.sort();
    references
}

fn line_offset(text: &str, line: usize) -> usize {
    text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum()
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
