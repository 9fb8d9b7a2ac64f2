//! Templating and expressions: Jinja syntax through minijinja, never a hand-written engine.
//!
//! Two environments share every setting but how a value is written out. In a `run` string
//! every interpolated value is shell-quoted, always: there is no `safe` filter or `autoescape`
//! block that turns it off, so a parameter can never inject shell syntax. Everywhere else
//! (argv elements, URLs, instructions) a value is written as it is.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Object, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::runbook::{Expression, ParamValue, Runbook, Template};

/// What a rendered secret looks like wherever it is shown or stored.
pub const MASK: &str = "***";

/// How a template's output is used, which decides how values are written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A command for `/bin/sh -c`: every value is shell-quoted.
    Shell,
    /// Anything else: values are written as they are.
    Text,
}

/// A template or expression that does not compile, with where in its source it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub message: String,
    /// Line within the template's own text, from 1.
    pub line: usize,
    /// Byte offset within the template's text, when minijinja knows it.
    pub offset: Option<usize>,
}

/// A template or expression that compiled but could not be evaluated with the run's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RenderError {
    pub message: String,
}

impl From<Error> for RenderError {
    fn from(error: Error) -> Self {
        RenderError { message: describe(&error) }
    }
}

/// Compiles the templates and expressions of one runbook, to find syntax errors and what each
/// refers to before anything runs.
#[derive(Debug)]
pub struct Compiler<'source> {
    shell: Environment<'source>,
    text: Environment<'source>,
}

impl<'source> Compiler<'source> {
    pub fn new() -> Self {
        // minijinja borrows a template's source for as long as its environment lives, so
        // the shared environments are copied for the lifetime of the runbook's text.
        Compiler {
            shell: environment(Target::Shell).clone(),
            text: environment(Target::Text).clone(),
        }
    }

    /// Compiles a template and returns the variables it refers to, as dotted paths such as
    /// `steps.lag.stdout`.
    pub fn template(
        &self,
        source: &'source str,
        target: Target,
    ) -> Result<HashSet<String>, SyntaxError> {
        // Most argv elements and many strings are plain text; nothing in them can fail to
        // compile or refer to anything.
        if !source.contains('{') {
            return Ok(HashSet::new());
        }
        let env = match target {
            Target::Shell => &self.shell,
            Target::Text => &self.text,
        };
        let template = env.template_from_str(source).map_err(syntax_error)?;
        Ok(template.undeclared_variables(true))
    }

    /// Compiles an expression and returns the variables it refers to.
    pub fn expression(&self, source: &'source str) -> Result<HashSet<String>, SyntaxError> {
        refuse_template_markers(source)?;
        let expression = self.text.compile_expression(source).map_err(syntax_error)?;
        Ok(expression.undeclared_variables(true))
    }
}

impl Default for Compiler<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Renders a template with a run's values.
pub fn render(
    template: &Template,
    target: Target,
    context: &Context,
) -> Result<String, RenderError> {
    render_source(target, &template.source, context)
}

/// Renders template text. Text without a tag (`{{`, `{%`, `{#`) renders as itself, so it is
/// not compiled: most of a runbook's templates are plain words (`["systemctl", "restart"]`),
/// and compiling each at every step was a visible share of a no-op step.
fn render_source(target: Target, source: &str, context: &Context) -> Result<String, RenderError> {
    if !["{{", "{%", "{#"].iter().any(|tag| source.contains(tag)) {
        return Ok(source.to_owned());
    }
    Ok(environment(target).render_str(source, &context.root)?)
}

/// Renders every string inside a JSON document (an `http.json` body) as a text template. A
/// string that is exactly one `{{ expression }}` becomes the expression's value with its type
/// (`count: "{{ params.replicas }}"` sends a number, a boolean stays a boolean), as the author
/// of a JSON body means it; any other string stays a string.
pub fn render_json(
    value: &serde_json::Value,
    context: &Context,
) -> Result<serde_json::Value, RenderError> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::String(source) => match sole_expression(source) {
            Some(expression) => {
                typed_json(expression, context)?.unwrap_or_else(|| Json::String(String::new()))
            }
            None => Json::String(render_source(Target::Text, source, context)?),
        },
        Json::Array(items) => Json::Array(
            items.iter().map(|item| render_json(item, context)).collect::<Result<_, _>>()?,
        ),
        Json::Object(fields) => Json::Object(
            fields
                .iter()
                .map(|(key, item)| Ok((key.clone(), render_json(item, context)?)))
                .collect::<Result<_, RenderError>>()?,
        ),
        other => other.clone(),
    })
}

/// The expression of a string that is nothing but one `{{ expression }}`.
fn sole_expression(source: &str) -> Option<&str> {
    let inner = source.strip_prefix("{{")?.strip_suffix("}}")?;
    let markers = ["{{", "}}", "{%", "%}", "{#", "#}"];
    let plain = !inner.starts_with('-') && !inner.ends_with('-');
    (plain && !markers.iter().any(|marker| inner.contains(marker))).then_some(inner)
}

/// An expression's value as JSON; `None` for a value only a run will know (a placeholder in a
/// plan), which is then rendered as text.
fn typed_json(
    expression: &str,
    context: &Context,
) -> Result<Option<serde_json::Value>, RenderError> {
    let compiled = environment(Target::Text).compile_expression(expression)?;
    let value = compiled.eval(&context.root)?;
    if value.downcast_object_ref::<Placeholder>().is_some() {
        let text = environment(Target::Text)
            .render_str(&format!("{{{{{expression}}}}}"), &context.root)?;
        return Ok(Some(serde_json::Value::String(text)));
    }
    if value.is_undefined() {
        return Ok(None);
    }
    serde_json::to_value(&value).map(Some).map_err(|error| RenderError {
        message: format!("cannot write the value as JSON: {error}"),
    })
}

/// Evaluates a fan-out's `for_each` to its list of items; `None` when only a run will know
/// them (an offline plan, or an approver's preview of steps that have not run). Errors when
/// the value is not a list.
pub fn evaluate_items(
    expression: &Expression,
    context: &Context,
) -> Result<Option<Vec<serde_json::Value>>, RenderError> {
    refuse_template_markers(&expression.source)
        .map_err(|error| RenderError { message: error.message })?;
    let compiled = environment(Target::Text).compile_expression_owned(expression.source.clone())?;
    let value = compiled.eval(&context.root)?;
    if value.downcast_object_ref::<Placeholder>().is_some() {
        return Ok(None);
    }
    match serde_json::to_value(&value) {
        Ok(serde_json::Value::Array(items)) => Ok(Some(items)),
        Ok(other) => Err(RenderError {
            message: format!(
                "`for_each: {}` must yield a list, and yielded {}",
                expression.source,
                match other {
                    serde_json::Value::Null => "nothing".to_owned(),
                    other => format!("`{other}`"),
                }
            ),
        }),
        Err(error) => Err(RenderError { message: format!("cannot read the items: {error}") }),
    }
}

/// Evaluates a `check` or `when` expression to true or false, by Jinja's truthiness.
pub fn evaluate(expression: &Expression, context: &Context) -> Result<bool, RenderError> {
    // Validation refuses these; this keeps a runbook stored before that rule from panicking.
    refuse_template_markers(&expression.source)
        .map_err(|error| RenderError { message: error.message })?;
    let compiled = environment(Target::Text).compile_expression_owned(expression.source.clone())?;
    Ok(compiled.eval(&context.root)?.is_true())
}

/// Evaluates a trigger's `when` on an alert. Unlike a step's `when`, a value the alert does not
/// have (a label it lacks) is undefined without failing: it compares unequal to anything and
/// tests false, as a matcher on a missing label does in Alertmanager, so that an alert of
/// another kind is passed over rather than reported. Reading through one (`alert.lables.x`, a
/// typo) still fails.
pub fn evaluate_alert_condition(
    expression: &Expression,
    context: &Context,
) -> Result<bool, RenderError> {
    static LENIENT: OnceLock<Environment<'static>> = OnceLock::new();
    let env = LENIENT.get_or_init(|| {
        let mut env = environment(Target::Text).clone();
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env
    });
    refuse_template_markers(&expression.source)
        .map_err(|error| RenderError { message: error.message })?;
    let compiled = env.compile_expression_owned(expression.source.clone())?;
    Ok(compiled.eval(&context.root)?.is_true())
}

/// minijinja's global functions, which static analysis reports like variables, and which a
/// fan-out's `as` may not hide.
pub const GLOBAL_FUNCTIONS: [&str; 5] = ["range", "dict", "namespace", "debug", "lipsum"];

/// The names of the run's values in templates, which a fan-out's `as` may not hide.
pub const CONTEXT_NAMES: [&str; 5] = ["params", "secrets", "steps", "run", "roles"];

/// The values templates see: `params`, `secrets`, `steps`, `run` and `roles`; or, in a
/// trigger's templates, `alert`.
#[derive(Debug, Clone)]
pub struct Context {
    root: Value,
}

impl Context {
    /// This context, with one item of a fan-out named `name` (its `as`) beside the run's
    /// values: what an item's templates and expressions render with.
    pub fn with_item(&self, name: &str, item: &serde_json::Value) -> Context {
        let item = Value::from_iter([(name.to_owned(), Value::from_serialize(item))]);
        Context { root: minijinja::value::merge_maps([item, self.root.clone()]) }
    }

    /// The context of a plan made before any run: parameters are known, secrets are masked,
    /// and everything a run would know (step outputs, run id, role holders) shows as a
    /// placeholder such as `⟨steps.lag.stdout⟩`.
    pub fn offline(runbook: &Runbook, params: &BTreeMap<String, ParamValue>) -> Self {
        let secrets: BTreeMap<&str, &str> =
            runbook.secrets.iter().map(|name| (name.as_str(), MASK)).collect();
        let run: BTreeMap<&str, Value> = ["id", "mode", "commander"]
            .into_iter()
            .map(|field| (field, Value::from_object(Placeholder(format!("run.{field}")))))
            .collect();
        let root = minijinja::context! {
            params => Value::from_serialize(params),
            secrets => secrets,
            steps => Value::from_object(Placeholder("steps".to_owned())),
            run => run,
            roles => Value::from_object(Placeholder("roles".to_owned())),
        };
        Context { root }
    }
}

impl Context {
    /// The context of a trigger's templates: `alert`, and nothing of a run — no parameters,
    /// secrets, steps or roles — since none exists yet.
    pub fn for_alert(alert: &serde_json::Value) -> Self {
        Context { root: minijinja::context! { alert => Value::from_serialize(alert) } }
    }
}

/// A run's parameters as templates see them (`params`).
pub fn params_value(params: &BTreeMap<String, ParamValue>) -> Value {
    Value::from_serialize(params)
}

/// How secrets appear in a rendering.
#[derive(Debug, Clone, Copy)]
pub enum SecretValues<'a> {
    /// As `***`: for everything shown or stored.
    Masked,
    /// The real values: only for what is executed.
    Revealed(&'a BTreeMap<String, String>),
}

/// What templates can know of a run, gathered by the executor.
#[derive(Debug, Clone)]
pub struct RunFacts<'a> {
    /// `params`, as [`params_value`] makes it: once per drive, since a run's parameters never
    /// change and a list parameter may hold thousands of items.
    pub params: Value,
    pub secrets: SecretValues<'a>,
    /// `steps.<id>`: the results of steps that ran, looked up as templates read them.
    pub steps: Arc<dyn StepResults>,
    /// Show steps without a result as placeholders rather than failing: for what an approver
    /// is shown before the steps the gate guards have run.
    pub placeholders_for_unknown_steps: bool,
    pub run_id: String,
    pub mode: &'a str,
    pub commander: &'a str,
    /// `roles.<role>`: who holds each role, comma-separated.
    pub roles: BTreeMap<String, String>,
}

impl Context {
    /// The context of a run, as the executor renders its steps.
    pub fn for_run(runbook: &Runbook, facts: RunFacts<'_>) -> Self {
        // A secret without a value is left out, so that using it is an error ("undefined"),
        // never an empty string sent as a credential.
        let secrets: BTreeMap<&str, String> = runbook
            .secrets
            .iter()
            .filter_map(|name| {
                let value = match facts.secrets {
                    SecretValues::Masked => MASK.to_owned(),
                    SecretValues::Revealed(values) => values.get(name)?.clone(),
                };
                Some((name.as_str(), value))
            })
            .collect();
        let steps =
            KnownSteps { results: facts.steps, placeholders: facts.placeholders_for_unknown_steps };
        let roles: BTreeMap<String, String> = runbook
            .roles
            .iter()
            .map(|role| {
                (role.name.clone(), facts.roles.get(&role.name).cloned().unwrap_or_default())
            })
            .collect();
        let root = minijinja::context! {
            params => facts.params,
            secrets => secrets,
            steps => Value::from_object(steps),
            run => minijinja::context! { id => facts.run_id, mode => facts.mode, commander => facts.commander },
            roles => roles,
        };
        Context { root }
    }
}

/// The results of a run's steps, for `steps.<id>` in templates.
pub trait StepResults: Send + Sync + fmt::Debug {
    /// The fields of a step that has a result; `None` for one that has not run.
    fn result(&self, id: &str) -> Option<serde_json::Value>;
}

/// `steps`: the results known so far, and either placeholders or nothing for the rest.
#[derive(Debug)]
struct KnownSteps {
    results: Arc<dyn StepResults>,
    placeholders: bool,
}

impl Object for KnownSteps {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let id = key.as_str()?;
        match self.results.result(id) {
            Some(value) => Some(Value::from_serialize(value)),
            None if self.placeholders => {
                Some(Value::from_object(Placeholder(format!("steps.{id}"))))
            }
            None => None,
        }
    }
}

/// Whether a rendering made with placeholders (what an approver saw) still describes a
/// rendering made with real values: every literal part must be equal, and each placeholder,
/// with the quotes around it, stands for anything.
pub fn matches_with_placeholders(approved: &str, actual: &str) -> bool {
    static PLACEHOLDER: OnceLock<regex::Regex> = OnceLock::new();
    let placeholder = PLACEHOLDER.get_or_init(|| {
        regex::Regex::new(r#"(\\?['"])?⟨[^⟩]*⟩(\\?['"])?"#).expect("a valid regex")
    });
    // The literal parts between placeholders, matched like a glob whose `*`s are the
    // placeholders: no regular expression is compiled for each check of each step.
    let mut literals = Vec::new();
    let mut last = 0;
    for found in placeholder.find_iter(approved) {
        literals.push(&approved[last..found.start()]);
        last = found.end();
    }
    literals.push(&approved[last..]);
    let [first, middle @ .., end] = literals.as_slice() else {
        return approved == actual;
    };
    if actual.len() < first.len() + end.len()
        || !actual.starts_with(first)
        || !actual.ends_with(end)
    {
        return false;
    }
    // Each middle part at its first place after the one before: the leftmost choice leaves
    // the most room for the parts that follow, so it finds a match whenever there is one.
    let mut rest = &actual[first.len()..actual.len() - end.len()];
    for literal in middle {
        match rest.find(literal) {
            Some(at) => rest = &rest[at + literal.len()..],
            None => return false,
        }
    }
    true
}

/// A value only a run will know, shown by its path.
#[derive(Debug)]
struct Placeholder(String);

impl Object for Placeholder {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let path = match key.as_i64() {
            Some(index) => format!("{}[{index}]", self.0),
            None => format!("{}.{key}", self.0),
        };
        Some(Value::from_object(Placeholder(path)))
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "⟨{}⟩", self.0)
    }
}

/// Bounds the work one template may do, so that a hostile or careless loop cannot hang a run.
const FUEL: u64 = 1_000_000;

fn environment(target: Target) -> &'static Environment<'static> {
    static SHELL: OnceLock<Environment<'static>> = OnceLock::new();
    static TEXT: OnceLock<Environment<'static>> = OnceLock::new();
    let (cell, target) = match target {
        Target::Shell => (&SHELL, Target::Shell),
        Target::Text => (&TEXT, Target::Text),
    };
    cell.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_keep_trailing_newline(true);
        env.set_debug(false);
        if target == Target::Shell {
            env.set_formatter(|out, _state, value| {
                let text = written(value);
                let quoted = shlex::try_quote(&text).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "a value with a NUL byte cannot be passed to a shell",
                    )
                })?;
                out.write_str(&quoted).map_err(Error::from)
            });
        } else {
            env.set_formatter(|out, state, value| match value.kind() {
                ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
                    out.write_str(&written(value)).map_err(Error::from)
                }
                _ => minijinja::escape_formatter(out, state, value),
            });
        }
        // `| string` spells values as the formatter does.
        env.add_filter("string", |value: Value| written(&value));
        env
    })
}

/// A value as a template writes it. Booleans are `true` and `false`, as JSON, shells and
/// Steady's own parameters spell them, not minijinja's Python-like `True` and `False`; lists
/// and maps are written as JSON, so the booleans inside them are too.
fn written(value: &Value) -> String {
    match value.kind() {
        ValueKind::Bool => value.is_true().to_string(),
        // A placeholder (`⟨steps.lag.stdout⟩` in a plan) writes itself.
        ValueKind::Seq | ValueKind::Map if value.downcast_object_ref::<Placeholder>().is_none() => {
            serde_json::to_string(value).unwrap_or_else(|_| value.to_string())
        }
        _ => value.to_string(),
    }
}

/// An expression is not a template: `}}`, `%}` or `#}` in one is an author's mistake
/// (`check: "{{ x }} > 1"`), and minijinja 2's expression lexer panics on them instead of
/// reporting an error (found by fuzzing). So they are refused before it sees them.
fn refuse_template_markers(source: &str) -> Result<(), SyntaxError> {
    let found = ["}}", "%}", "#}"].iter().filter_map(|marker| source.find(marker)).min();
    match found {
        Some(offset) => Err(SyntaxError {
            message: "an expression is not a template: write it without `{{ }}`".to_owned(),
            line: source[..offset].matches('\n').count() + 1,
            offset: Some(offset),
        }),
        None => Ok(()),
    }
}

fn syntax_error(error: Error) -> SyntaxError {
    let offset = error.range().map(|range| range.start);
    SyntaxError { message: describe(&error), line: error.line().unwrap_or(1), offset }
}

/// minijinja's message without the template name and position it appends, which mean
/// nothing to a runbook author: positions are reported against the runbook instead.
fn describe(error: &Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::matches_with_placeholders as matches;
    use super::{Context, Target, environment, render_source};

    #[test]
    fn text_without_a_tag_renders_as_the_template_engine_would_render_it() {
        let runbook =
            crate::parse("name: plain\nsteps:\n  - id: a\n    run: [\"true\"]\n").runbook.unwrap();
        let params = crate::params::ParamValues::default();
        let context = Context::offline(&runbook, &params);
        let texts = [
            "true",
            "",
            "line one\nline two\n",
            "trailing newlines\n\n",
            "\r\nwindows\r\n",
            "braces { } {} and }} alone",
            "a percent % and a hash # and {-",
            "quotes ' \" and $HOME and `ticks`",
        ];
        for target in [Target::Shell, Target::Text] {
            for text in texts {
                let compiled = environment(target).render_str(text, &context.root).unwrap();
                assert_eq!(render_source(target, text, &context).unwrap(), compiled, "{text:?}");
                assert_eq!(compiled, text);
            }
        }
        // A tag anywhere is rendered.
        let tagged = render_source(Target::Text, "{# a comment #}kept", &context).unwrap();
        assert_eq!(tagged, "kept");
    }

    #[test]
    fn an_approved_rendering_with_placeholders_matches_what_runs() {
        assert!(matches("ssh -- db2 pg_ctl promote", "ssh -- db2 pg_ctl promote"));
        assert!(!matches("ssh -- db2 pg_ctl promote", "ssh -- db3 pg_ctl promote"));
        // A placeholder, with the quotes a shell rendering put around it, stands for anything.
        assert!(matches("echo '⟨steps.lag.stdout⟩' bytes", "echo 5000 bytes"));
        assert!(matches("echo \"⟨steps.lag.stdout⟩\"", "echo 'it''s'"));
        assert!(matches("⟨a⟩ and ⟨b⟩", "x and y and z"));
        assert!(matches("⟨a⟩", ""));
        assert!(matches("rm ⟨a⟩/data/⟨b⟩", "rm /srv/data/x/data/y"));
        // Every literal part must be there, in order, with nothing outside the placeholders.
        assert!(!matches("rm ⟨a⟩/data", "rm /srv/data --force"));
        assert!(!matches("pre ⟨a⟩ mid ⟨b⟩ end", "pre x end mid y"));
        assert!(!matches("abc⟨a⟩bcd", "abcd"), "the prefix and suffix may not overlap");
        assert!(matches("line one\n⟨a⟩\nline three", "line one\nanything\nat all\nline three"));
    }
}
