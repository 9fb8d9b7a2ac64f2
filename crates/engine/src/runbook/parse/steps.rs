//! Steps: each step's common fields and its kind (`run`, `http`, `check`, `manual`,
//! `approval`, `sleep`), with their own fields, read from the node tree.

use marked_yaml::Node;

use super::*;

/// Reads a list of steps. `known_ids` spans `steps` and `rollback`, which share one namespace.
pub(super) fn steps(
    node: &Node,
    field: &str,
    known_ids: &mut HashMap<String, Position>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Step> {
    let Some(items) = yaml::sequence(node, field, out) else {
        return Vec::new();
    };
    items.iter().filter_map(|item| step(item, Nesting::Sequence, known_ids, out)).collect()
}

/// Where a step is written: in a sequence, or as a branch of a `parallel` group (which holds
/// no group or fan-out of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nesting {
    Sequence,
    Branch,
}

fn step(
    node: &Node,
    nesting: Nesting,
    known_ids: &mut HashMap<String, Position>,
    out: &mut Vec<Diagnostic>,
) -> Option<Step> {
    let errors_before = out.len();
    let fields = yaml::fields(node, "a step", STEP_FIELDS, out)?;

    let id = fields.require("id", "a step", out).and_then(|node| {
        let id = yaml::string(node, "id", out)?;
        if !is_identifier(&id) {
            out.push(Diagnostic::error(
                at(node),
                format!("step id `{id}` must start with a-z and use only a-z, 0-9 and _, so that `steps.{id}` works in expressions"),
            ));
        } else if let Some(first) = known_ids.get(&id) {
            out.push(Diagnostic::error(
                at(node),
                format!("duplicate step id `{id}` (first used on line {})", first.line),
            ));
        } else {
            known_ids.insert(id.clone(), at(node));
        }
        Some(id)
    });
    let what = match &id {
        Some(id) => format!("step `{id}`"),
        None => "a step".to_owned(),
    };

    let kinds: Vec<&str> = StepKind::NAMES.into_iter().filter(|kind| fields.has(kind)).collect();
    let kind = match kinds.as_slice() {
        [] => {
            out.push(Diagnostic::error(
                fields.at(),
                format!(
                    "{what} has no kind: give it one of run, http, check, manual, approval, sleep or parallel"
                ),
            ));
            None
        }
        ["parallel"] if nesting == Nesting::Branch => {
            out.push(Diagnostic::error(
                fields.key_at("parallel"),
                format!("{what} is a branch of a group, and a branch cannot hold another `parallel` group"),
            ));
            None
        }
        ["parallel"] => branches(fields, &what, known_ids, out).map(StepKind::Parallel),
        [kind] => step_kind(fields, kind, &what, out),
        [first, second, ..] => {
            out.push(Diagnostic::error(
                fields.key_at(second),
                format!(
                    "{what} has two kinds, `{first}` and `{second}`: a step does exactly one thing"
                ),
            ));
            None
        }
    };

    let kind_name = kind.as_ref().map(StepKind::name).unwrap_or_default();
    let only_for = |key: &str, allowed: &[&str], out: &mut Vec<Diagnostic>| {
        if kind.is_some() && fields.has(key) && !allowed.contains(&kind_name) {
            let kinds = allowed.join(" and ");
            out.push(Diagnostic::error(
                fields.key_at(key),
                format!("`{key}` applies to {kinds} steps, not to {}", a_step_of(kind_name)),
            ));
        }
    };
    only_for("timeout", &["run", "http"], out);
    only_for("read_only", &["run", "http"], out);
    only_for("idempotent", &["run", "http"], out);
    only_for("env", &["run"], out);
    only_for("retries", &["run", "http", "check"], out);
    only_for("expect", &["run", "http"], out);

    let name = optional_string(fields, "name", out);
    let description = optional_string(fields, "description", out);
    let when = fields.get("when").and_then(|node| expression(node, "when", out));
    let timeout = fields.get("timeout").and_then(|node| positive_duration(node, "timeout", out));
    let retries = fields.get("retries").and_then(|node| retries(node, out));
    let read_only = optional_bool(fields, "read_only", out);
    let idempotent = optional_bool(fields, "idempotent", out);
    if read_only && idempotent {
        out.push(Diagnostic::error(
            fields.key_at("idempotent"),
            "a read_only step is already safe to repeat: drop `idempotent`",
        ));
    }
    let env = fields.get("env").map(|node| env(node, out)).unwrap_or_default();
    let expect =
        fields.get("expect").and_then(|node| expect(node, kind_name, out)).unwrap_or_default();
    let on_failure =
        fields.get("on_failure").and_then(|node| on_failure(node, out)).unwrap_or_default();
    if nesting == Nesting::Branch && !matches!(on_failure, OnFailure::Pause | OnFailure::Continue) {
        out.push(Diagnostic::error(
            fields.key_at("on_failure"),
            "a failed branch fails its group, whose own `on_failure` applies: a branch may only say `on_failure: continue`",
        ));
    }
    let fan_out = fan_out(fields, kind.as_ref(), nesting, &what, out);
    if on_failure == OnFailure::Continue && kind_name == "approval" {
        out.push(Diagnostic::error(
            fields.key_at("on_failure"),
            "a gate cannot `continue` past a rejection or timeout: the steps it guards would run unapproved",
        ));
    }

    let step = Step {
        id: id?,
        name,
        description,
        kind: kind?,
        when,
        timeout,
        retries,
        read_only,
        idempotent,
        env,
        expect,
        on_failure,
        fan_out,
        at: fields.at(),
    };
    (out.len() == errors_before).then_some(step)
}

/// The branches of a `parallel` group: at least two steps, ids unique across the runbook.
fn branches(
    fields: Fields<'_>,
    what: &str,
    known_ids: &mut HashMap<String, Position>,
    out: &mut Vec<Diagnostic>,
) -> Option<Vec<Step>> {
    let node = fields.get("parallel")?;
    let items = yaml::sequence(node, "parallel", out)?;
    if items.len() < 2 {
        out.push(Diagnostic::error(
            fields.key_at("parallel"),
            format!(
                "`parallel` of {what} must list at least two branches: a single step needs no group"
            ),
        ));
        return None;
    }
    let branches: Vec<Step> =
        items.iter().filter_map(|item| step(item, Nesting::Branch, known_ids, out)).collect();
    (branches.len() == items.len()).then_some(branches)
}

/// `for_each` with its `as`, `concurrency` and `max_failures`.
fn fan_out(
    fields: Fields<'_>,
    kind: Option<&StepKind>,
    nesting: Nesting,
    what: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<FanOut> {
    let Some(node) = fields.get("for_each") else {
        for key in ["as", "concurrency", "max_failures"] {
            if fields.has(key) {
                let message = match nesting {
                    Nesting::Sequence => {
                        format!("`{key}` applies to a fan-out: give {what} a `for_each` too")
                    }
                    Nesting::Branch => format!(
                        "`{key}` applies to a fan-out, and {what} is a branch of a group, which cannot fan out"
                    ),
                };
                out.push(Diagnostic::error(fields.key_at(key), message));
            }
        }
        return None;
    };
    if nesting == Nesting::Branch {
        out.push(Diagnostic::error(
            fields.key_at("for_each"),
            format!("{what} is a branch of a group, and a branch cannot fan out"),
        ));
        return None;
    }
    if let Some(kind) = kind
        && !matches!(
            kind,
            StepKind::Run(_) | StepKind::Http(_) | StepKind::Check(_) | StepKind::Sleep(_)
        )
    {
        out.push(Diagnostic::error(
            fields.key_at("for_each"),
            format!(
                "`for_each` applies to run, http, check and sleep steps, not to {}",
                a_step_of(kind.name())
            ),
        ));
        return None;
    }
    // A YAML list here is a natural first guess; the items are an expression, so that they
    // can come from parameters and earlier results.
    if !matches!(node, Node::Scalar(_)) {
        out.push(Diagnostic::error(
            at(node),
            "`for_each` must be an expression that yields a list, such as `params.hosts` or `\"['web1', 'web2']\"`",
        ));
        return None;
    }
    let items = expression(node, "for_each", out)?;
    let name = match fields.get("as") {
        None => "item".to_owned(),
        Some(node) => {
            let name = yaml::string(node, "as", out)?;
            if !is_identifier(&name) {
                out.push(Diagnostic::error(
                    at(node),
                    format!("`as: {name}` must start with a-z and use only a-z, 0-9 and _"),
                ));
                return None;
            }
            if ["none", "true", "false"].contains(&name.to_ascii_lowercase().as_str())
                || crate::template::GLOBAL_FUNCTIONS.contains(&name.as_str())
            {
                out.push(Diagnostic::error(
                    at(node),
                    format!("`as: {name}` is a word templates already know: choose another name"),
                ));
                return None;
            }
            if crate::template::CONTEXT_NAMES.contains(&name.as_str()) {
                out.push(Diagnostic::error(
                    at(node),
                    format!(
                        "`as: {name}` would hide the run's `{name}` in templates: choose another name"
                    ),
                ));
                return None;
            }
            name
        }
    };
    let concurrency = match fields.get("concurrency") {
        None => 1,
        Some(node) => {
            let value = yaml::integer(node, "concurrency", out)?;
            match u32::try_from(value) {
                Ok(value) if (1..=MAX_CONCURRENCY).contains(&value) => value,
                Ok(value) if value > MAX_CONCURRENCY => {
                    out.push(Diagnostic::error(
                        at(node),
                        format!(
                            "`concurrency` is at most {MAX_CONCURRENCY} items at once, got {value}"
                        ),
                    ));
                    return None;
                }
                _ => {
                    out.push(Diagnostic::error(
                        at(node),
                        format!("`concurrency` must be at least 1, got {value}"),
                    ));
                    return None;
                }
            }
        }
    };
    let max_failures = match fields.get("max_failures") {
        None => FailureLimit::Count(0),
        Some(node) => failure_limit(node, out)?,
    };
    Some(FanOut { items, name, concurrency, max_failures })
}

/// `max_failures`: a count (`2`) or a percentage of the items (`"10%"`).
fn failure_limit(node: &Node, out: &mut Vec<Diagnostic>) -> Option<FailureLimit> {
    let text = yaml::string(node, "max_failures", out)?;
    let limit = match text.trim().strip_suffix('%') {
        Some(percent) => {
            percent.trim().parse::<u32>().ok().filter(|p| *p <= 100).map(FailureLimit::Percent)
        }
        None => text.trim().parse::<u32>().ok().map(FailureLimit::Count),
    };
    if limit.is_none() {
        out.push(Diagnostic::error(
            at(node),
            format!(
                "`max_failures` must be a count of items (`2`) or a percentage from 0% to 100% (`\"10%\"`), got `{text}`"
            ),
        ));
    }
    limit
}

/// "a run step", "an approval step": a kind of step named in a message.
fn a_step_of(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    format!("{article} {kind} step")
}

fn step_kind(
    fields: Fields<'_>,
    kind: &str,
    what: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<StepKind> {
    let Some(node) = fields.get(kind) else {
        out.push(Diagnostic::error(fields.key_at(kind), format!("`{kind}` of {what} is empty")));
        return None;
    };
    match kind {
        "run" => command(node, out).map(StepKind::Run),
        "http" => http(node, out).map(StepKind::Http),
        "check" => expression(node, "check", out).map(StepKind::Check),
        "manual" => manual(node, out).map(StepKind::Manual),
        "approval" => approval(node, out).map(StepKind::Approval),
        "sleep" => positive_duration(node, "sleep", out).map(StepKind::Sleep),
        _ => unreachable!("`{kind}` is one of StepKind::NAMES"),
    }
}

fn positive_duration(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<Duration> {
    let duration = duration(node, field, out)?;
    if duration.is_zero() {
        out.push(Diagnostic::error(at(node), format!("`{field}` must be longer than zero")));
        return None;
    }
    Some(duration)
}

fn command(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Command> {
    match node {
        Node::Sequence(items) => {
            if items.is_empty() {
                out.push(Diagnostic::error(at(node), "`run` must name a program to run"));
                return None;
            }
            let argv: Vec<Template> =
                items.iter().filter_map(|item| template(item, "run", out)).collect();
            (argv.len() == items.len()).then_some(Command::Argv(argv))
        }
        Node::Scalar(_) => {
            let template = template(node, "run", out)?;
            if template.source.trim().is_empty() {
                out.push(Diagnostic::error(at(node), "`run` must name a program to run"));
                return None;
            }
            Some(Command::Shell(template))
        }
        Node::Mapping(_) => {
            out.push(Diagnostic::error(
                at(node),
                "`run` must be a list of arguments or a shell command string, found a mapping",
            ));
            None
        }
    }
}

fn http(node: &Node, out: &mut Vec<Diagnostic>) -> Option<HttpRequest> {
    let fields = yaml::fields(node, "`http`", &["method", "url", "headers", "json", "body"], out)?;
    let method = match fields.get("method") {
        None => Some(HttpMethod::Get),
        Some(node) => yaml::string(node, "method", out).and_then(|text| {
            let method = HttpMethod::ALL
                .into_iter()
                .find(|method| method.as_str() == text.to_ascii_uppercase());
            if method.is_none() {
                out.push(Diagnostic::error(
                    at(node),
                    format!(
                        "unknown HTTP method `{text}`: use GET, HEAD, POST, PUT, PATCH or DELETE"
                    ),
                ));
            }
            method
        }),
    };
    let url = fields.require("url", "`http`", out).and_then(|node| template(node, "url", out));
    let headers = fields
        .get("headers")
        .map(|node| {
            yaml::entries(node, "headers", out)
                .into_iter()
                .filter_map(|(key, value)| {
                    Some((key.as_str().to_owned(), template(value, "headers", out)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let body = match (fields.get("json"), fields.get("body")) {
        (Some(_), Some(_)) => {
            out.push(Diagnostic::error(
                fields.key_at("body"),
                "`http` has both `json` and `body`: send one or the other",
            ));
            None
        }
        (Some(json), None) => Some(HttpBody::Json(yaml::to_json(json))),
        (None, Some(body)) => template(body, "body", out).map(HttpBody::Text),
        (None, None) => None,
    };
    Some(HttpRequest { method: method?, url: url?, headers, body })
}

fn manual(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Manual> {
    let fields = yaml::fields(node, "`manual`", &["role", "instructions"], out)?;
    let role = fields.require("role", "`manual`", out).and_then(|node| role_ref(node, out));
    let instructions = fields
        .require("instructions", "`manual`", out)
        .and_then(|node| template(node, "instructions", out));
    Some(Manual { role: role?, instructions: instructions? })
}

fn approval(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Approval> {
    const FIELDS: &[&str] =
        &["role", "approvals", "timeout", "prompt", "allow_self_approval", "on_timeout"];
    let fields = yaml::fields(node, "`approval`", FIELDS, out)?;
    let role = fields.require("role", "`approval`", out).and_then(|node| role_ref(node, out));
    let approvals = match fields.get("approvals") {
        None => Some(1),
        Some(node) => yaml::integer(node, "approvals", out).and_then(|count| {
            let count = u32::try_from(count).ok().filter(|count| *count >= 1);
            if count.is_none() {
                out.push(Diagnostic::error(at(node), "`approvals` must be at least 1"));
            }
            count
        }),
    };
    let timeout = fields.get("timeout").and_then(|node| positive_duration(node, "timeout", out));
    let prompt = fields.get("prompt").and_then(|node| template(node, "prompt", out));
    let allow_self_approval = optional_bool(fields, "allow_self_approval", out);
    let on_timeout = match fields.get("on_timeout") {
        None => Some(OnTimeout::Fail),
        Some(node) => on_timeout(node, out),
    };
    if matches!(on_timeout, Some(OnTimeout::Escalate { .. })) && timeout.is_none() {
        out.push(Diagnostic::error(
            fields.key_at("on_timeout"),
            "`on_timeout` escalates, but the gate has no `timeout` to escalate after",
        ));
    }
    Some(Approval {
        role: role?,
        approvals: approvals?,
        timeout,
        prompt,
        allow_self_approval,
        on_timeout: on_timeout?,
    })
}

fn on_timeout(node: &Node, out: &mut Vec<Diagnostic>) -> Option<OnTimeout> {
    if let Node::Scalar(scalar) = node {
        if scalar.as_str() == "fail" {
            return Some(OnTimeout::Fail);
        }
        out.push(Diagnostic::error(
            at(node),
            format!(
                "`on_timeout` must be `fail` or `escalate: {{ role, timeout }}`, found `{}`",
                scalar.as_str()
            ),
        ));
        return None;
    }
    let fields = yaml::fields(node, "`on_timeout`", &["escalate"], out)?;
    let escalate = fields.require("escalate", "`on_timeout`", out)?;
    let fields = yaml::fields(escalate, "`escalate`", &["role", "timeout"], out)?;
    let role = fields.require("role", "`escalate`", out).and_then(|node| role_ref(node, out));
    let timeout = fields
        .require("timeout", "`escalate`", out)
        .and_then(|node| positive_duration(node, "timeout", out));
    Some(OnTimeout::Escalate { role: role?, timeout: timeout? })
}

fn retries(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Retries> {
    let fields = yaml::fields(node, "`retries`", &["count", "delay"], out)?;
    let count = fields.require("count", "`retries`", out).and_then(|node| {
        let count = yaml::integer(node, "count", out)?;
        let count = u32::try_from(count).ok().filter(|count| (1..=1000).contains(count));
        if count.is_none() {
            out.push(Diagnostic::error(at(node), "`count` must be between 1 and 1000"));
        }
        count
    });
    let delay = match fields.get("delay") {
        Some(node) => duration(node, "delay", out),
        None => Some(Retries::DEFAULT_DELAY),
    };
    Some(Retries { count: count?, delay: delay? })
}

impl Retries {
    /// Long enough for a flapping dependency to settle, short enough not to stall a failover.
    pub const DEFAULT_DELAY: Duration = Duration::from_std(std::time::Duration::from_secs(5));
}

fn env(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<(String, Template)> {
    yaml::entries(node, "env", out)
        .into_iter()
        .filter_map(|(key, value)| {
            if !is_env_name(key.as_str()) {
                out.push(Diagnostic::error(
                    scalar_at(key),
                    format!("`{}` is not a valid environment variable name", key.as_str()),
                ));
                return None;
            }
            Some((key.as_str().to_owned(), template(value, "env", out)?))
        })
        .collect()
}

fn expect(node: &Node, kind: &str, out: &mut Vec<Diagnostic>) -> Option<Expect> {
    let fields = yaml::fields(node, "`expect`", &["exit_code", "stdout", "status"], out)?;
    let wrong_kind = |key: &str, allowed: &str, out: &mut Vec<Diagnostic>| {
        if fields.has(key) && !kind.is_empty() && kind != allowed {
            out.push(Diagnostic::error(
                fields.key_at(key),
                format!("`expect.{key}` applies to {allowed} steps, not to {}", a_step_of(kind)),
            ));
        }
    };
    wrong_kind("exit_code", "run", out);
    wrong_kind("stdout", "run", out);
    wrong_kind("status", "http", out);
    let exit_code = fields
        .get("exit_code")
        .map(|node| codes(node, "exit_code", 0..=255, "an exit code between 0 and 255", out))
        .unwrap_or_default();
    let stdout = fields.get("stdout").and_then(|node| pattern(node, "stdout", out));
    let status = fields
        .get("status")
        .map(|node| codes(node, "status", 100..=599, "an HTTP status between 100 and 599", out))
        .unwrap_or_default();
    Some(Expect { exit_code, stdout, status })
}

/// One code or a list of them, each within `range`.
fn codes<T: TryFrom<i64>>(
    node: &Node,
    field: &str,
    range: std::ops::RangeInclusive<i64>,
    expected: &str,
    out: &mut Vec<Diagnostic>,
) -> Vec<T> {
    let items = match node {
        Node::Sequence(items) => items.as_slice(),
        _ => std::slice::from_ref(node),
    };
    let mut codes = Vec::new();
    for item in items {
        let Some(code) = yaml::integer(item, field, out) else { continue };
        match T::try_from(code).ok().filter(|_| range.contains(&code)) {
            Some(code) => codes.push(code),
            None => out.push(Diagnostic::error(at(item), format!("`{field}` must be {expected}"))),
        }
    }
    codes
}

fn on_failure(node: &Node, out: &mut Vec<Diagnostic>) -> Option<OnFailure> {
    let text = yaml::string(node, "on_failure", out)?;
    let value = OnFailure::ALL.into_iter().find(|value| value.as_str() == text);
    if value.is_none() {
        let message =
            format!("unknown `on_failure` `{text}`: use pause, abort, continue or rollback");
        out.push(Diagnostic::error(
            at(node),
            with_suggestion(message, &text, OnFailure::ALL.map(OnFailure::as_str)),
        ));
    }
    value
}
