//! A test file's YAML read into a [`TestFile`], strictly: unknown fields, wrong shapes and
//! unknown words are errors at their line and column, like a runbook's.

use marked_yaml::Node;
use regex::Regex;

use crate::diagnostic::{Diagnostic, without_bom};
use crate::run::{Completion, Decision, RunMode, RunStatus, StepStatus};
use crate::runbook::yaml;

use super::{Case, EffectStub, Expect, Given, ParsedTests, Placed, Stub, TestFile};

const FILE_FIELDS: &[&str] = &["runbook", "defaults", "cases"];
const DEFAULT_FIELDS: &[&str] = &["mode", "commander", "params", "assign", "secrets", "given"];
const CASE_FIELDS: &[&str] =
    &["name", "mode", "commander", "params", "assign", "secrets", "given", "decisions", "expect"];
const EXPECT_FIELDS: &[&str] = &["status", "ran", "not_run", "steps", "rendered"];
const STUB_FIELDS: &[&str] = &[
    "exit_code",
    "stdout",
    "stderr",
    "status",
    "body",
    "error",
    "takes",
    "approve",
    "reject",
    "done",
    "failed",
    "note",
];

/// Reads a test file. Every problem is reported, not just the first.
pub fn parse(source: &str) -> ParsedTests {
    let mut out = Vec::new();
    let file = read_file(without_bom(source), &mut out);
    let file = if out.iter().any(Diagnostic::is_error) { None } else { file };
    ParsedTests { file, diagnostics: out }
}

fn read_file(source: &str, out: &mut Vec<Diagnostic>) -> Option<TestFile> {
    let root = match yaml::load_mapping(
        source,
        "a test file must be a YAML mapping with `runbook` and `cases`",
    ) {
        Ok(root) => root,
        Err(diagnostic) => {
            out.push(diagnostic);
            return None;
        }
    };
    let fields = yaml::fields(&root, "a test file", FILE_FIELDS, out)?;
    let runbook = fields.require("runbook", "a test file", out).and_then(|node| {
        let name = yaml::string(node, "runbook", out)?;
        // A name, never a path: a test file must not make `steady test` read (and show the
        // lines of) a file that is no runbook.
        if !crate::runbook::parse::is_runbook_name(&name) {
            out.push(Diagnostic::error(
                yaml::at(node),
                "`runbook` is the name of the runbook tested (lowercase letters, digits and \
                 `-`), never a path",
            ));
            return None;
        }
        Some(name)
    });
    let runbook_at = fields.key_at("runbook");
    let defaults = match fields.get("defaults") {
        Some(node) => read_defaults(node, out),
        None => Defaults::default(),
    };
    let mut cases = Vec::new();
    if let Some(node) = fields.require("cases", "a test file", out)
        && let Some(items) = yaml::sequence(node, "cases", out)
    {
        if items.is_empty() {
            out.push(Diagnostic::error(yaml::at(node), "`cases` is empty: write at least one"));
        }
        for item in items {
            if let Some(case) = read_case(item, &defaults, out) {
                if let Some(first) = cases.iter().find(|c: &&Case| c.name == case.name) {
                    out.push(Diagnostic::error(
                        case.at,
                        format!(
                            "a second case named `{}` (first on line {}): name each case once",
                            case.name, first.at.line
                        ),
                    ));
                }
                cases.push(case);
            }
        }
    }
    Some(TestFile { runbook: runbook?, runbook_at, cases })
}

/// What `defaults:` gives every case: each case's own `params`, `assign` (by role), `secrets`
/// and `given` (by step) come on top, and its own `mode` or `commander` replaces the default.
#[derive(Debug, Default)]
struct Defaults {
    mode: Option<RunMode>,
    commander: Option<String>,
    params: Vec<(String, String)>,
    assign: Vec<Placed<(String, String)>>,
    secrets: Vec<(String, String)>,
    given: Vec<Placed<(String, Given)>>,
}

fn read_defaults(node: &Node, out: &mut Vec<Diagnostic>) -> Defaults {
    let Some(fields) = yaml::fields(node, "`defaults`", DEFAULT_FIELDS, out) else {
        return Defaults::default();
    };
    Defaults {
        mode: fields.get("mode").and_then(|node| word(node, "mode", out)),
        commander: fields.get("commander").and_then(|node| yaml::string(node, "commander", out)),
        params: fields.get("params").map(|node| read_params(node, out)).unwrap_or_default(),
        assign: fields.get("assign").map(|node| read_assign(node, out)).unwrap_or_default(),
        secrets: fields.get("secrets").map(|node| read_secrets(node, out)).unwrap_or_default(),
        given: fields.get("given").map(|node| read_given_map(node, out)).unwrap_or_default(),
    }
}

/// The defaults' entries whose key the case does not give itself, then the case's own.
fn on_top<T: Clone>(defaults: &[T], own: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    let mut merged: Vec<T> = defaults
        .iter()
        .filter(|default| own.iter().all(|mine| key(mine) != key(default)))
        .cloned()
        .collect();
    merged.extend(own);
    merged
}

fn read_case(node: &Node, defaults: &Defaults, out: &mut Vec<Diagnostic>) -> Option<Case> {
    let fields = yaml::fields(node, "a case", CASE_FIELDS, out)?;
    let at = fields.at();
    let name = fields.require("name", "a case", out).and_then(|node| {
        let name = yaml::string(node, "name", out)?;
        // A case's name is printed on a line of its own and in a JUnit report: a blank one
        // says nothing, and a control character could forge another line.
        if name.trim().is_empty() || name.chars().any(|c| c.is_control() || is_noncharacter(c)) {
            out.push(Diagnostic::error(
                yaml::at(node),
                "a case's name is a line of words: not blank, and without control characters",
            ));
            return None;
        }
        Some(name)
    });
    let mode = match fields.get("mode") {
        None => Some(defaults.mode.unwrap_or(RunMode::Live)),
        Some(node) => word(node, "mode", out),
    };
    let commander = match fields.get("commander") {
        None => Some(defaults.commander.clone().unwrap_or_else(|| "commander".to_owned())),
        Some(node) => yaml::string(node, "commander", out),
    };
    let params = fields.get("params").map(|node| read_params(node, out)).unwrap_or_default();
    let params = on_top(&defaults.params, params, |(name, _)| name);
    let params_at = fields.key_at("params");
    let assign = fields.get("assign").map(|node| read_assign(node, out)).unwrap_or_default();
    let assign = on_top(&defaults.assign, assign, |placed| &placed.value.0);
    let secrets = fields.get("secrets").map(|node| read_secrets(node, out)).unwrap_or_default();
    let secrets = on_top(&defaults.secrets, secrets, |(name, _)| name);
    let given = fields.get("given").map(|node| read_given_map(node, out)).unwrap_or_default();
    let given = on_top(&defaults.given, given, |placed| &placed.value.0);
    let mut decisions = Vec::new();
    if let Some(node) = fields.get("decisions") {
        for (step, value) in yaml::entries(node, "decisions", out) {
            let words: Vec<Decision> = match value {
                Node::Sequence(items) => {
                    items.iter().filter_map(|item| word(item, "decision", out)).collect()
                }
                other => word(other, "decision", out).into_iter().collect(),
            };
            let at = yaml::scalar_at(step);
            decisions.push(Placed { value: (step.as_str().to_owned(), words), at });
        }
    }
    let expect = match fields.require("expect", "a case", out) {
        Some(node) => read_expect(node, out),
        None => None,
    };
    Some(Case {
        name: name?,
        at,
        mode: mode?,
        commander: commander?,
        params,
        params_at,
        assign,
        secrets,
        given,
        decisions,
        expect: expect?,
    })
}

/// `assign`: role → a person or a list of people.
fn read_assign(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Placed<(String, String)>> {
    let mut assign = Vec::new();
    for (role, people) in yaml::entries(node, "assign", out) {
        for person in strings(people, "a role's holders", out) {
            assign.push(Placed { value: (role.as_str().to_owned(), person.value), at: person.at });
        }
    }
    assign
}

/// `secrets`: name → a stand-in value.
fn read_secrets(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let mut secrets = Vec::new();
    for (name, value) in yaml::entries(node, "secrets", out) {
        if let Some(value) = yaml::string(value, "a secret's value", out) {
            secrets.push((name.as_str().to_owned(), value));
        }
    }
    secrets
}

/// `given`: step id → its answers.
fn read_given_map(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<Placed<(String, Given)>> {
    let mut given = Vec::new();
    for (step, value) in yaml::entries(node, "given", out) {
        if let Some(stub) = read_given(value, out) {
            given.push(Placed {
                value: (step.as_str().to_owned(), stub),
                at: yaml::scalar_at(step),
            });
        }
    }
    given
}

/// Parameters as `-p` would give them: a scalar as its text, a list as a JSON array.
fn read_params(node: &Node, out: &mut Vec<Diagnostic>) -> Vec<(String, String)> {
    let mut params = Vec::new();
    for (name, value) in yaml::entries(node, "params", out) {
        let text = match value {
            Node::Sequence(_) => {
                let items = strings(value, "a list parameter's items", out);
                serde_json::Value::from(items.into_iter().map(|i| i.value).collect::<Vec<_>>())
                    .to_string()
            }
            _ => match yaml::string(value, "a parameter's value", out) {
                Some(text) => text,
                None => continue,
            },
        };
        params.push((name.as_str().to_owned(), text));
    }
    params
}

fn read_given(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Given> {
    match node {
        Node::Sequence(items) => {
            if items.is_empty() {
                out.push(Diagnostic::error(
                    yaml::at(node),
                    "an empty list gives nothing: leave the step out instead",
                ));
                return None;
            }
            let answers = items
                .iter()
                .filter_map(|item| {
                    read_stub(item, out).map(|s| Placed { value: s, at: yaml::at(item) })
                })
                .collect();
            Some(Given { answers, in_order: true })
        }
        _ => {
            let stub = read_stub(node, out)?;
            Some(Given {
                answers: vec![Placed { value: stub, at: yaml::at(node) }],
                in_order: false,
            })
        }
    }
}

fn read_stub(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Stub> {
    if let Node::Scalar(scalar) = node {
        return match scalar.as_str() {
            "done" => Some(Stub::Manual { completion: Completion::Done, by: None, note: None }),
            "failed" => Some(Stub::Manual { completion: Completion::Failed, by: None, note: None }),
            "timeout" => Some(Stub::Timeout),
            other => {
                out.push(Diagnostic::error(
                    yaml::at(node),
                    format!(
                        "unknown answer `{other}`: write `done`, `failed`, `timeout`, or a mapping \
                         (`exit_code`/`stdout`/`stderr`, `status`/`body`, `approve`, `reject`)"
                    ),
                ));
                None
            }
        };
    }
    let fields = yaml::fields(node, "an answer", STUB_FIELDS, out)?;
    let keys: Vec<&str> = STUB_FIELDS.iter().copied().filter(|key| fields.has(key)).collect();
    let people = |key: &str, out: &mut Vec<Diagnostic>| -> Option<String> {
        fields.get(key).and_then(|n| yaml::string(n, key, out))
    };
    let only = |allowed: &[&str], what: &str, out: &mut Vec<Diagnostic>| {
        for key in keys.iter().filter(|key| !allowed.contains(key)) {
            out.push(Diagnostic::error(
                fields.key_at(key),
                format!("`{key}` does not go with {what}"),
            ));
        }
    };
    if let Some(node) = fields.get("approve") {
        only(&["approve"], "`approve`", out);
        let people: Vec<String> =
            strings(node, "`approve`", out).into_iter().map(|p| p.value).collect();
        if people.is_empty() {
            out.push(Diagnostic::error(yaml::at(node), "`approve` names nobody"));
        }
        return Some(Stub::Approve(people));
    }
    if fields.has("reject") {
        only(&["reject"], "`reject`", out);
        return people("reject", out).map(Stub::Reject);
    }
    for (key, completion) in [("done", Completion::Done), ("failed", Completion::Failed)] {
        if fields.has(key) {
            only(&[key, "note"], &format!("`{key}`"), out);
            let by = people(key, out);
            let note = people("note", out);
            return Some(Stub::Manual { completion, by, note });
        }
    }
    if fields.has("note") {
        out.push(Diagnostic::error(fields.key_at("note"), "`note` goes with `done` or `failed`"));
    }
    let mut effect = EffectStub::default();
    if let Some(node) = fields.get("exit_code") {
        effect.exit_code = yaml::integer(node, "exit_code", out).and_then(|code| {
            let code = i32::try_from(code).ok().filter(|code| (0..=255).contains(code));
            if code.is_none() {
                out.push(Diagnostic::error(yaml::at(node), "`exit_code` must be 0 to 255"));
            }
            code
        });
    }
    effect.stdout = people("stdout", out);
    effect.stderr = people("stderr", out);
    if let Some(node) = fields.get("status") {
        effect.status = yaml::integer(node, "status", out).and_then(|status| {
            let status = u16::try_from(status).ok().filter(|s| (100..=599).contains(s));
            if status.is_none() {
                out.push(Diagnostic::error(yaml::at(node), "`status` must be 100 to 599"));
            }
            status
        });
    }
    if let Some(node) = fields.get("body") {
        effect.body = match node {
            Node::Scalar(scalar) => Some(scalar.as_str().to_owned()),
            other => Some(yaml::to_json(other).to_string()),
        };
    }
    effect.error = people("error", out);
    if let Some(node) = fields.get("takes") {
        effect.takes = yaml::string(node, "takes", out).and_then(|text| {
            match text.parse::<crate::Duration>() {
                Ok(duration) => Some(duration.as_std()),
                Err(error) => {
                    out.push(Diagnostic::error(yaml::at(node), format!("`takes`: {error}")));
                    None
                }
            }
        });
    }
    if effect.is_http() && effect.is_process() {
        out.push(Diagnostic::error(
            fields.at(),
            "an answer is a process's ending (`exit_code`, `stdout`, `stderr`) or an HTTP \
             answer (`status`, `body`), not both",
        ));
    }
    Some(Stub::Effect(effect))
}

fn read_expect(node: &Node, out: &mut Vec<Diagnostic>) -> Option<Expect> {
    let fields = yaml::fields(node, "`expect`", EXPECT_FIELDS, out)?;
    let status = fields.require("status", "`expect`", out).and_then(|node| {
        word::<RunStatus>(node, "status", out).map(|value| Placed { value, at: yaml::at(node) })
    });
    let ran = fields.get("ran").map(|node| Placed {
        value: strings(node, "`ran`", out).into_iter().map(|p| p.value).collect(),
        at: yaml::at(node),
    });
    let not_run = fields.get("not_run").map(|node| strings(node, "`not_run`", out));
    let mut steps = Vec::new();
    if let Some(node) = fields.get("steps") {
        for (step, value) in yaml::entries(node, "`steps`", out) {
            if let Some(status) = word::<StepStatus>(value, "step status", out) {
                steps.push(Placed {
                    value: (step.as_str().to_owned(), status),
                    at: yaml::scalar_at(step),
                });
            }
        }
    }
    let mut rendered = Vec::new();
    if let Some(node) = fields.get("rendered") {
        for (step, value) in yaml::entries(node, "`rendered`", out) {
            let Some(pattern) = yaml::string(value, "a regular expression", out) else {
                continue;
            };
            match Regex::new(&pattern) {
                Ok(regex) => rendered.push(Placed {
                    value: (step.as_str().to_owned(), regex),
                    at: yaml::scalar_at(step),
                }),
                Err(error) => out.push(Diagnostic::error(
                    yaml::at(value),
                    format!("invalid regular expression: {error}"),
                )),
            }
        }
    }
    Some(Expect { status: status?, ran, not_run: not_run.unwrap_or_default(), steps, rendered })
}

/// A word of a closed set (`failed`, `abort`, `drill`), or an error listing the set.
fn word<T>(node: &Node, what: &str, out: &mut Vec<Diagnostic>) -> Option<T>
where
    T: std::str::FromStr + Copy + Named,
{
    let text = yaml::string(node, what, out)?;
    match text.parse::<T>() {
        Ok(value) if T::names().iter().any(|known| known.name() == value.name()) => Some(value),
        _ => {
            let names: Vec<&str> = T::names().iter().map(|v| v.name()).collect();
            let message = format!("unknown {what} `{text}`: one of {}", names.join(", "));
            out.push(Diagnostic::error(
                yaml::at(node),
                crate::diagnostic::with_suggestion(message, &text, names.iter().copied()),
            ));
            None
        }
    }
}

/// The closed sets a test file names by word.
trait Named: Sized + 'static {
    fn names() -> &'static [Self];
    fn name(&self) -> &'static str;
}

macro_rules! named {
    ($($type:ty),*) => {$(
        impl Named for $type {
            fn names() -> &'static [Self] {
                <$type>::ALL
            }
            fn name(&self) -> &'static str {
                self.as_str()
            }
        }
    )*};
}
named!(RunMode, StepStatus, Decision);

/// A case runs a run that a person started: it is never a proposal, so never `proposed` or
/// `dismissed`.
impl Named for RunStatus {
    fn names() -> &'static [Self] {
        const CASE_ENDS: [RunStatus; 7] = [
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::NeedsAttention,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::RolledBack,
            RunStatus::Cancelled,
        ];
        &CASE_ENDS
    }
    fn name(&self) -> &'static str {
        self.as_str()
    }
}

/// A Unicode noncharacter (U+FFFE, U+FFFF, U+FDD0…): not allowed in XML.
fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xFDD0..=0xFDEF).contains(&code) || code & 0xFFFE == 0xFFFE
}

/// One string, or a list of strings, each with its place.
fn strings(node: &Node, what: &str, out: &mut Vec<Diagnostic>) -> Vec<Placed<String>> {
    let one = |node: &Node, out: &mut Vec<Diagnostic>| {
        yaml::string(node, what, out).map(|value| Placed { value, at: yaml::at(node) })
    };
    match node {
        Node::Sequence(items) => items.iter().filter_map(|item| one(item, out)).collect(),
        _ => one(node, out).into_iter().collect(),
    }
}
