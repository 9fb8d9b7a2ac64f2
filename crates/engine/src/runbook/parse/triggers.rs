//! Triggers: which alerts propose the runbook and how its parameters are read from them, read
//! from the node tree. What their templates refer to is checked with the rest, in
//! `references`; here, their shape and the parameters they name.

use marked_yaml::Node;

use super::*;

const TRIGGER_FIELDS: &[&str] = &["source", "when", "params", "then"];

/// Reads `triggers:`, given the runbook's parameters (as far as they could be read).
pub(super) fn triggers(node: &Node, params: &[Param], out: &mut Vec<Diagnostic>) -> Vec<Trigger> {
    let Some(items) = yaml::sequence(node, "triggers", out) else {
        return Vec::new();
    };
    // Like `steps: []` and `enum: []`: an empty list says nothing an absent one does not, and
    // is more likely a trigger deleted by mistake than a decision.
    if items.is_empty() {
        out.push(Diagnostic::error(
            at(node),
            "`triggers` must list at least one trigger: leave it out when no alert proposes this runbook",
        ));
    }
    items.iter().filter_map(|item| trigger(item, params, out)).collect()
}

fn trigger(node: &Node, params: &[Param], out: &mut Vec<Diagnostic>) -> Option<Trigger> {
    let errors_before = out.len();
    let fields = yaml::fields(node, "a trigger", TRIGGER_FIELDS, out)?;
    let source = fields.require("source", "a trigger", out).and_then(|node| source(node, out));
    // Without `when`, every alert of the source would propose the runbook: an author says
    // which alerts it answers.
    let when =
        fields.require("when", "a trigger", out).and_then(|node| expression(node, "when", out));
    let mappings = match fields.get("params") {
        Some(node) => mappings(node, params, fields.key_at("params"), out),
        None => {
            required(params, &[], fields.at(), out);
            Some(Vec::new())
        }
    };
    let then = fields.get("then").and_then(|node| action(node, out)).unwrap_or_default();
    let trigger =
        Trigger { source: source?, when: when?, params: mappings?, then, at: fields.at() };
    (out.len() == errors_before).then_some(trigger)
}

fn source(node: &Node, out: &mut Vec<Diagnostic>) -> Option<AlertSource> {
    let text = yaml::string(node, "source", out)?;
    let source = AlertSource::from_name(&text);
    if source.is_none() {
        let message = format!("unknown alert source `{text}`: use alertmanager, grafana or json");
        out.push(Diagnostic::error(
            at(node),
            with_suggestion(message, &text, AlertSource::ALL.map(AlertSource::as_str)),
        ));
    }
    source
}

fn action(node: &Node, out: &mut Vec<Diagnostic>) -> Option<TriggerAction> {
    let text = yaml::string(node, "then", out)?;
    let action = TriggerAction::ALL.into_iter().find(|action| action.as_str() == text);
    if action.is_none() {
        let message = format!("unknown `then` `{text}`: use propose or dry-run");
        out.push(Diagnostic::error(
            at(node),
            with_suggestion(message, &text, TriggerAction::ALL.map(TriggerAction::as_str)),
        ));
    }
    action
}

/// The parameters a trigger gives, each a template over the alert; `None` when `params` is
/// not a mapping (so that required parameters are not also reported missing).
fn mappings(
    node: &Node,
    params: &[Param],
    params_at: Position,
    out: &mut Vec<Diagnostic>,
) -> Option<Vec<ParamMapping>> {
    let Node::Mapping(_) = node else {
        yaml::entries(node, "params", out);
        return None;
    };
    let mut mappings = Vec::new();
    let entries = yaml::entries(node, "params", out);
    for (key, value) in &entries {
        let name = key.as_str();
        if !params.iter().any(|param| param.name == name) {
            let message = format!(
                "unknown parameter `{name}`: the runbook declares no such parameter under `params`"
            );
            out.push(Diagnostic::error(
                scalar_at(key),
                with_suggestion(message, name, params.iter().map(|param| param.name.as_str())),
            ));
            continue;
        }
        if let Some(value) = template(value, &format!("params.{name}"), out) {
            mappings.push(ParamMapping { name: name.to_owned(), at: scalar_at(key), value });
        }
    }
    let given: Vec<&str> = entries.iter().map(|(key, _)| key.as_str()).collect();
    required(params, &given, params_at, out);
    Some(mappings)
}

/// Reports the required parameters a trigger does not give (a parameter with a default is
/// never required): a proposal is a run, and a run cannot start without them.
fn required(params: &[Param], given: &[&str], at: Position, out: &mut Vec<Diagnostic>) {
    let missing: Vec<String> = params
        .iter()
        .filter(|param| param.required && !given.contains(&param.name.as_str()))
        .map(|param| format!("`{}`", param.name))
        .collect();
    let (noun, names) = match missing.as_slice() {
        [] => return,
        [one] => ("parameter", one.clone()),
        [first @ .., last] => ("parameters", format!("{} and {last}", first.join(", "))),
    };
    out.push(Diagnostic::error(
        at,
        format!("the trigger does not give required {noun} {names}: a proposal is a run, which needs every required parameter, so map it under `params`"),
    ));
}
