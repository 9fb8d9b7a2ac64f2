//! The second stage of parsing: the node tree walked into a `Runbook`, every problem reported.

use std::collections::HashMap;

use marked_yaml::Node;

use super::yaml::{self, Fields, at, scalar_at};
use super::*;
use crate::diagnostic::with_suggestion;

mod steps;
mod triggers;

use steps::steps;

const RUNBOOK_FIELDS: &[&str] = &[
    "name",
    "title",
    "description",
    "owner",
    "review_every",
    "rto",
    "lock",
    "verify",
    "contacts",
    "roles",
    "secrets",
    "params",
    "steps",
    "rollback",
    "triggers",
];

const STEP_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "run",
    "http",
    "check",
    "manual",
    "approval",
    "sleep",
    "when",
    "timeout",
    "retries",
    "read_only",
    "idempotent",
    "env",
    "expect",
    "on_failure",
    "parallel",
    "for_each",
    "as",
    "concurrency",
    "max_failures",
];

/// Builds the runbook from its source, or `None` when any error was reported.
pub(super) fn runbook(source: &str, out: &mut Vec<Diagnostic>) -> Option<Runbook> {
    let errors_before = out.len();
    let root = match yaml::load(source) {
        Ok(root) => root,
        Err(diagnostic) => {
            out.push(diagnostic);
            return None;
        }
    };
    let fields = yaml::fields(&root, "the runbook", RUNBOOK_FIELDS, out)?;

    let name = fields.require("name", "the runbook", out).and_then(|node| {
        let name = yaml::string(node, "name", out)?;
        if name.len() > MAX_RUNBOOK_NAME {
            out.push(Diagnostic::error(
                at(node),
                format!(
                    "a runbook name has at most {MAX_RUNBOOK_NAME} characters; this one has {}",
                    name.chars().count()
                ),
            ));
        } else if !is_runbook_name(&name) {
            out.push(Diagnostic::error(
                at(node),
                format!("runbook name `{name}` may only use a-z, 0-9 and -"),
            ));
        }
        Some((name, at(node)))
    });
    let title = optional_string(fields, "title", out);
    let description = optional_string(fields, "description", out);
    let owner = optional_string(fields, "owner", out);
    let review_every = fields.get("review_every").and_then(|node| {
        let every = duration(node, "review_every", out)?;
        // Overdue from the moment it is rehearsed: a badge that can never be cleared.
        if every.is_zero() {
            out.push(Diagnostic::error(at(node), "`review_every` must be longer than 0s"));
            return None;
        }
        Some(every)
    });
    let rto = fields.get("rto").and_then(|node| {
        let rto = duration(node, "rto", out)?;
        if rto.is_zero() {
            out.push(Diagnostic::error(at(node), "`rto` must be longer than 0s"));
            return None;
        }
        Some(rto)
    });
    let lock = fields.get("lock").and_then(|node| template(node, "lock", out));
    let verify = fields.get("verify").and_then(|node| verify(node, fields.key_at("verify"), out));
    let contacts = fields.get("contacts").map(|node| contacts(node, out)).unwrap_or_default();
    let roles = fields.get("roles").map(|node| roles(node, out)).unwrap_or_default();
    let secrets = fields.get("secrets").map(|node| secrets(node, out)).unwrap_or_default();
    let params = fields.get("params").map(|node| params(node, out)).unwrap_or_default();

    let mut known_ids = HashMap::new();
    let steps = match fields.require("steps", "the runbook", out) {
        Some(node) => {
            let steps = steps(node, "steps", &mut known_ids, out);
            if matches!(node, Node::Sequence(items) if items.is_empty()) {
                out.push(Diagnostic::error(at(node), "`steps` must list at least one step"));
            }
            steps
        }
        None => Vec::new(),
    };
    let rollback = fields
        .get("rollback")
        .map(|node| self::steps(node, "rollback", &mut known_ids, out))
        .unwrap_or_default();
    let triggers = fields
        .get("triggers")
        .map(|node| triggers::triggers(node, &params, out))
        .unwrap_or_default();

    let (name, name_at) = name?;
    let (steps_index, rollback_index) = (SequenceIndex::of(&steps), SequenceIndex::of(&rollback));
    let runbook = Runbook {
        name,
        name_at,
        title,
        description,
        owner,
        review_every,
        rto,
        lock,
        verify,
        contacts,
        roles,
        secrets,
        params,
        steps,
        rollback,
        steps_index,
        rollback_index,
        triggers,
    };
    (out.len() == errors_before).then_some(runbook)
}

/// The longest runbook name: it appears in URLs, lock keys and terminal lines, and a name
/// nobody can read back is no name.
pub(crate) const MAX_RUNBOOK_NAME: usize = 64;

pub(crate) fn is_runbook_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `[a-z][a-z0-9_]*`: a name that works after a dot in a Jinja expression.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn optional_string(fields: Fields<'_>, key: &str, out: &mut Vec<Diagnostic>) -> Option<String> {
    fields.get(key).and_then(|node| yaml::string(node, key, out))
}

fn optional_bool(fields: Fields<'_>, key: &str, out: &mut Vec<Diagnostic>) -> bool {
    fields.get(key).and_then(|node| yaml::boolean(node, key, out)).unwrap_or(false)
}

fn role_ref(node: &Node, out: &mut Vec<Diagnostic>) -> Option<RoleRef> {
    yaml::string(node, "role", out).map(|name| RoleRef { name, at: at(node) })
}

fn template(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<Template> {
    yaml::string(node, field, out).map(|source| Template { source, at: at(node) })
}

fn expression(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<Expression> {
    let source = yaml::string(node, field, out)?;
    if source.trim().is_empty() {
        out.push(Diagnostic::error(at(node), format!("`{field}` must not be empty")));
        return None;
    }
    Some(Expression { source, at: at(node) })
}

fn duration(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<Duration> {
    let text = yaml::string(node, field, out)?;
    match text.parse::<Duration>() {
        Ok(duration) => Some(duration),
        Err(error) => {
            out.push(Diagnostic::error(at(node), format!("`{field}`: {error}")));
            None
        }
    }
}

fn pattern(node: &Node, field: &str, out: &mut Vec<Diagnostic>) -> Option<Pattern> {
    let source = yaml::string(node, field, out)?;
    match Pattern::new(&source) {
        Ok(pattern) => Some(pattern),
        Err(error) => {
            // The regex crate's message spans several lines with a caret; its last line says
            // what is wrong.
            let reason = error.to_string();
            let reason = reason.lines().last().unwrap_or_default().trim_start_matches("error: ");
            out.push(Diagnostic::error(
                at(node),
                format!("`{field}` is not a valid regular expression: {reason}"),
            ));
            None
        }
    }
}

/// `verify: { every, params }`. Parameter values are read as text here and checked against
/// the runbook's parameters by [`verify_params`], once those are known.
fn verify(node: &Node, key_at: Position, out: &mut Vec<Diagnostic>) -> Option<Verify> {
    let fields = yaml::fields(node, "`verify`", &["every", "params"], out)?;
    let every = fields.require("every", "`verify`", out).and_then(|node| {
        let every = duration(node, "every", out)?;
        if every.as_std() < Verify::SHORTEST {
            out.push(Diagnostic::error(
                at(node),
                format!("`every` must be at least 1s, and `{every}` is shorter"),
            ));
            return None;
        }
        Some(every)
    });
    let mut params = Vec::new();
    for (key, value) in
        fields.get("params").map(|node| yaml::entries(node, "params", out)).unwrap_or_default()
    {
        let name = key.as_str();
        let text = match value {
            Node::Sequence(items) => {
                let strings: Vec<String> =
                    items.iter().filter_map(|item| yaml::string(item, name, out)).collect();
                if strings.len() != items.len() {
                    continue;
                }
                serde_json::Value::from(strings).to_string()
            }
            _ => match yaml::string(value, name, out) {
                Some(text) => text,
                None => continue,
            },
        };
        params.push(VerifyParam {
            name: name.to_owned(),
            value: text,
            name_at: scalar_at(key),
            at: at(value),
        });
    }
    Some(Verify { every: every?, params, at: key_at })
}

/// Checks `verify.params` as a run's parameters are checked when it starts — every name
/// declared, every required one given, each value of its type, in its `enum` and matching its
/// `pattern` — so that a verification that could never start is an error where it is written,
/// not a failure at its first period.
pub(super) fn verify_params(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    let Some(verify) = &runbook.verify else { return };
    let Err(errors) = crate::params::resolve(runbook, &verify.param_texts()) else { return };
    for error in errors {
        use crate::params::ParamError;
        let (name, value) = match &error {
            ParamError::Missing { .. } => (None, None),
            ParamError::Unknown { name, .. } | ParamError::Repeated { name } => {
                (Some(name.as_str()), None)
            }
            ParamError::WrongType { name, .. }
            | ParamError::NotAllowed { name, .. }
            | ParamError::NoMatch { name, .. }
            | ParamError::TooManyItems { name, .. }
            | ParamError::RepeatedItem { name, .. } => (None, Some(name.as_str())),
        };
        let given = |name: &str| verify.params.iter().find(|param| param.name == name);
        let at = match (name, value) {
            (Some(name), _) => given(name).map_or(verify.at, |param| param.name_at),
            (_, Some(name)) => given(name).map_or(verify.at, |param| param.at),
            _ => verify.at,
        };
        out.push(Diagnostic::error(at, format!("`verify`: {error}")));
    }
}

fn contacts(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Contact> {
    let Some(items) = yaml::sequence(node, "contacts", out) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let fields = yaml::fields(item, "a contact", &["name", "how"], out)?;
            let name = fields.require("name", "a contact", out);
            let how = fields.require("how", "a contact", out);
            let name = yaml::string(name?, "name", out);
            let how = yaml::string(how?, "how", out);
            Some(Contact { name: name?, how: how? })
        })
        .collect()
}

fn roles(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Role> {
    let mut roles = Vec::new();
    for (key, value) in yaml::entries(node, "roles", out) {
        let name = key.as_str();
        if !is_identifier(name) {
            out.push(Diagnostic::error(
                scalar_at(key),
                format!("role name `{name}` must start with a-z and use only a-z, 0-9 and _"),
            ));
        }
        let description = if yaml::is_null(value) {
            None
        } else {
            yaml::fields(value, "a role", &["description"], out)
                .and_then(|fields| optional_string(fields, "description", out))
        };
        roles.push(Role { name: name.to_owned(), description, at: scalar_at(key) });
    }
    roles
}

fn secrets(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<String> {
    let Some(items) = yaml::sequence(node, "secrets", out) else {
        return Vec::new();
    };
    let mut secrets: Vec<String> = Vec::new();
    for item in items {
        let Some(name) = yaml::string(item, "secrets", out) else {
            continue;
        };
        if !is_secret_name(&name) {
            out.push(Diagnostic::error(
                at(item),
                format!("secret name `{name}` must be upper case, such as SLACK_WEBHOOK"),
            ));
        } else if secrets.contains(&name) {
            out.push(Diagnostic::error(at(item), format!("secret `{name}` is listed twice")));
        } else {
            secrets.push(name);
        }
    }
    secrets
}

fn params(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Param> {
    const FIELDS: &[&str] = &["type", "required", "default", "enum", "pattern", "description"];
    let mut params = Vec::new();
    for (key, value) in yaml::entries(node, "params", out) {
        let name = key.as_str();
        let errors_before = out.len();
        if !is_identifier(name) {
            out.push(Diagnostic::error(
                scalar_at(key),
                format!("parameter name `{name}` must start with a-z and use only a-z, 0-9 and _"),
            ));
        }
        let what = format!("parameter `{name}`");
        let Some(fields) = yaml::fields(value, &what, FIELDS, out) else {
            continue;
        };
        let Some(kind) = fields.require("type", &what, out).and_then(|node| param_type(node, out))
        else {
            continue;
        };
        let required = optional_bool(fields, "required", out);
        let description = optional_string(fields, "description", out);
        let pattern = fields.get("pattern").and_then(|node| {
            if !matches!(kind, ParamType::String | ParamType::List) {
                out.push(Diagnostic::error(
                    at(node),
                    format!(
                        "`pattern` applies to string and list parameters, and `{name}` is {}",
                        kind.as_str()
                    ),
                ));
                return None;
            }
            self::pattern(node, "pattern", out)
        });
        let choices: Vec<ParamValue> = fields
            .get("enum")
            .and_then(|node| yaml::sequence(node, "enum", out))
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| param_value(item, kind.element(), "enum", out))
                    .collect()
            })
            .unwrap_or_default();
        if fields
            .get("enum")
            .is_some_and(|node| matches!(node, Node::Sequence(items) if items.is_empty()))
        {
            out.push(Diagnostic::error(
                fields.key_at("enum"),
                "`enum` must list at least one value",
            ));
        }
        let default = fields.get("default").and_then(|node| {
            let value = param_value(node, kind, "default", out)?;
            if required {
                out.push(Diagnostic::error(
                    at(node),
                    format!("parameter `{name}` has a default, so it cannot also be required"),
                ));
            }
            let elements = match &value {
                ParamValue::List(items) => items.iter().cloned().map(ParamValue::String).collect(),
                other => vec![other.clone()],
            };
            if let ParamValue::List(items) = &value {
                let mut seen = std::collections::HashSet::new();
                if let Some(repeated) = items.iter().find(|item| !seen.insert(item.as_str())) {
                    out.push(Diagnostic::error(
                        at(node),
                        format!("default lists `{repeated}` more than once"),
                    ));
                }
            }
            for element in &elements {
                if !choices.is_empty() && !choices.contains(element) {
                    out.push(Diagnostic::error(
                        at(node),
                        format!(
                            "default `{element}` is not one of the allowed values: {}",
                            list(&choices)
                        ),
                    ));
                }
                if let (Some(pattern), ParamValue::String(text)) = (&pattern, element)
                    && !pattern.is_match(text)
                {
                    out.push(Diagnostic::error(
                        at(node),
                        format!(
                            "default `{text}` does not match the pattern `{}`",
                            pattern.as_str()
                        ),
                    ));
                }
            }
            Some(value)
        });
        if out.len() == errors_before {
            params.push(Param {
                name: name.to_owned(),
                kind,
                required,
                default,
                choices,
                pattern,
                description,
                at: scalar_at(key),
            });
        }
    }
    params
}

fn list(values: &[ParamValue]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn param_type(node: &Node, out: &mut Vec<Diagnostic>) -> Option<ParamType> {
    let text = yaml::string(node, "type", out)?;
    let kind = ParamType::ALL.into_iter().find(|kind| kind.as_str() == text);
    if kind.is_none() {
        let message = format!(
            "unknown parameter type `{text}`: use string, integer, number, boolean or list"
        );
        out.push(Diagnostic::error(
            at(node),
            with_suggestion(message, &text, ParamType::ALL.map(ParamType::as_str)),
        ));
    }
    kind
}

fn param_value(
    node: &Node,
    kind: ParamType,
    field: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<ParamValue> {
    match kind {
        ParamType::String => yaml::string(node, field, out).map(ParamValue::String),
        ParamType::Integer => yaml::integer(node, field, out).map(ParamValue::Integer),
        ParamType::Number => yaml::number(node, field, out).map(ParamValue::Number),
        ParamType::Boolean => yaml::boolean(node, field, out).map(ParamValue::Boolean),
        ParamType::List => {
            let items = yaml::sequence(node, field, out)?;
            let strings: Vec<String> =
                items.iter().filter_map(|item| yaml::string(item, field, out)).collect();
            (strings.len() == items.len()).then_some(ParamValue::List(strings))
        }
    }
}
