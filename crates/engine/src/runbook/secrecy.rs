//! Rules that keep secrets where the author meant them and parameters out of option position.
//!
//! One error: a secret in an `http` step whose scheme, host or port comes from a parameter
//! that anyone starting a run could point at their own listener (a parameter without `enum`
//! or an anchored `pattern`). Two lints: a secret on a command line, where every user of the
//! machine reads it in `ps`; and a free-form string parameter that forms a whole argument or
//! begins a shell word, where a value like `-oProxyCommand=…` becomes an option.

use std::collections::HashSet;

use super::*;
use crate::template::{Compiler, Target};

pub(super) fn check(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    let compiler = Compiler::new();
    let checker = Checker { runbook, compiler };
    for step in runbook.steps.iter().chain(&runbook.rollback) {
        match &step.kind {
            StepKind::Http(request) => checker.destination(step, request, out),
            StepKind::Run(command) => {
                checker.secret_on_command_line(step, command, out);
                checker.option_injection(step, command, out);
            }
            _ => {}
        }
    }
}

/// Whether a parameter's values are fixed by its author: an `enum`, or a `pattern` anchored
/// at both ends.
fn constrained(param: &Param, what: Constraint) -> bool {
    if !param.choices.is_empty() {
        return true;
    }
    let Some(pattern) = &param.pattern else { return false };
    match what {
        Constraint::AnyPattern => true,
        Constraint::Anchored => {
            let source = pattern.as_str();
            let starts = source.starts_with('^') || source.starts_with("\\A");
            let ends =
                (source.ends_with('$') && !source.ends_with("\\$")) || source.ends_with("\\z");
            starts && ends
        }
    }
}

#[derive(Clone, Copy)]
enum Constraint {
    Anchored,
    AnyPattern,
}

struct Checker<'a> {
    runbook: &'a Runbook,
    compiler: Compiler<'a>,
}

impl<'a> Checker<'a> {
    /// The variables a piece of template text reads, as dotted paths. Validation compiled
    /// every template before this runs, so failures here mean nothing is read.
    fn reads(&self, source: &'a str) -> HashSet<String> {
        self.compiler.template(source, Target::Text).unwrap_or_default()
    }

    fn reads_secret(&self, source: &'a str) -> bool {
        self.reads(source).iter().any(|path| path == "secrets" || path.starts_with("secrets."))
    }

    /// The parameters a piece of template text reads.
    fn params(&self, source: &'a str) -> Vec<&'a Param> {
        let mut found: Vec<&Param> = self
            .reads(source)
            .iter()
            .filter_map(|path| path.strip_prefix("params."))
            .filter_map(|name| self.runbook.param(name.split('.').next().unwrap_or(name)))
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found.dedup_by(|a, b| a.name == b.name);
        found
    }

    fn destination(&self, step: &Step, request: &'a HttpRequest, out: &mut Vec<Diagnostic>) {
        let mut sources: Vec<&str> = vec![request.url.source.as_str()];
        sources.extend(request.headers.iter().map(|(_, value)| value.source.as_str()));
        match &request.body {
            Some(HttpBody::Text(body)) => sources.push(&body.source),
            Some(HttpBody::Json(json)) => json_strings(json, &mut sources),
            None => {}
        }
        if !sources.iter().any(|source| self.reads_secret(source)) {
            return;
        }
        for tag in origin_tags(&request.url.source) {
            for param in self.params(tag) {
                if !constrained(param, Constraint::Anchored) {
                    out.push(Diagnostic::error(
                        request.url.at,
                        format!(
                            "step `{}` sends a secret to a URL whose scheme, host or port comes from parameter `{}`, which anyone starting a run could point at their own server: give `{}` an `enum` or a `pattern` anchored with ^ and $",
                            step.id, param.name, param.name
                        ),
                    ));
                }
            }
        }
    }

    fn secret_on_command_line(&self, step: &Step, command: &'a Command, out: &mut Vec<Diagnostic>) {
        let templates: Vec<&Template> = match command {
            Command::Argv(argv) => argv.iter().collect(),
            Command::Shell(line) => vec![line],
        };
        if let Some(template) = templates.into_iter().find(|t| self.reads_secret(&t.source)) {
            out.push(Diagnostic::warning(
                template.at,
                format!(
                    "step `{}` puts a secret on its command line, where anyone on the machine can read it (`ps`): pass it in `env` and read the variable instead",
                    step.id
                ),
            ));
        }
    }

    fn option_injection(&self, step: &Step, command: &'a Command, out: &mut Vec<Diagnostic>) {
        let mut warned: HashSet<&str> = HashSet::new();
        let mut warn = |template: &Template, param: &'a Param| {
            if !warned.insert(param.name.as_str()) {
                return;
            }
            out.push(Diagnostic::warning(
                template.at,
                format!(
                    "step `{}` starts an argument with parameter `{}`, which has neither `enum` nor `pattern`: a value such as `-oProxyCommand=…` would become an option; constrain `{}` with a pattern, or put `--` before it where the command supports it",
                    step.id, param.name, param.name
                ),
            ));
        };
        match command {
            Command::Argv(argv) => {
                for argument in argv.iter().take_while(|argument| argument.source.trim() != "--") {
                    let Some(tag) = leading_tag(&argument.source) else { continue };
                    for param in self.free_strings(tag) {
                        warn(argument, param);
                    }
                }
            }
            Command::Shell(line) => {
                for tag in word_leading_tags(&line.source) {
                    for param in self.free_strings(tag) {
                        warn(line, param);
                    }
                }
            }
        }
    }

    /// String parameters a tag reads that have neither `enum` nor `pattern`.
    fn free_strings(&self, tag: &'a str) -> Vec<&'a Param> {
        self.params(tag)
            .into_iter()
            .filter(|param| param.kind == ParamType::String)
            .filter(|param| !constrained(param, Constraint::AnyPattern))
            .collect()
    }
}

fn json_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(source) => out.push(source),
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_strings(item, out)),
        serde_json::Value::Object(fields) => {
            fields.values().for_each(|item| json_strings(item, out))
        }
        _ => {}
    }
}

/// A template's text cut into literal text and tags (`{{ … }}`, `{% … %}`), in order.
fn pieces(source: &str) -> Vec<(bool, &str)> {
    let mut pieces = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{").into_iter().chain(rest.find("{%")).min() {
        let close = if rest[open..].starts_with("{{") { "}}" } else { "%}" };
        let Some(end) = rest[open + 2..].find(close).map(|end| open + 2 + end + 2) else { break };
        if open > 0 {
            pieces.push((false, &rest[..open]));
        }
        pieces.push((true, &rest[open..end]));
        rest = &rest[end..];
    }
    if !rest.is_empty() {
        pieces.push((false, rest));
    }
    pieces
}

/// The tags of a URL template that stand before the end of its origin (scheme, host and port):
/// the first `/`, `?` or `#` in literal text that is not part of `://`.
fn origin_tags(url: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    for (is_tag, text) in pieces(url) {
        if is_tag {
            tags.push(text);
            continue;
        }
        let mut rest = text;
        while let Some(at) = rest.find(['/', '?', '#']) {
            if rest[at..].starts_with("//") && rest[..at].ends_with(':') {
                rest = &rest[at + 2..];
                continue;
            }
            if rest[at..].starts_with("//") && at == 0 && tags.is_empty() {
                rest = &rest[2..];
                continue;
            }
            return tags;
        }
    }
    tags
}

/// The tag an argument begins with, if it begins with one.
fn leading_tag(argument: &str) -> Option<&str> {
    match pieces(argument).first() {
        Some((true, tag)) => Some(tag),
        _ => None,
    }
}

/// The tags of a shell command that begin a word, before a `--` word.
fn word_leading_tags(line: &str) -> Vec<&str> {
    let mut tags = Vec::new();
    let mut at_word_start = true;
    for (is_tag, text) in pieces(line) {
        if is_tag {
            if at_word_start {
                tags.push(text);
            }
            at_word_start = false;
            continue;
        }
        if text.split_whitespace().any(|word| word == "--") {
            break;
        }
        at_word_start = text.ends_with(|c: char| c.is_whitespace() || ";|&(".contains(c));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_tags_are_those_before_the_path() {
        assert_eq!(origin_tags("{{ params.api }}/x/{{ params.p }}"), ["{{ params.api }}"]);
        assert_eq!(
            origin_tags("https://{{ params.h }}.example.com/{{ params.p }}"),
            ["{{ params.h }}"]
        );
        assert_eq!(origin_tags("https://api.example.com/{{ params.p }}"), Vec::<&str>::new());
        assert_eq!(
            origin_tags("https://api.example.com:{{ params.port }}/x"),
            ["{{ params.port }}"]
        );
        assert!(origin_tags("{{ secrets.HOOK }}").len() == 1);
    }

    #[test]
    fn word_leading_tags_stop_at_double_dash() {
        assert_eq!(word_leading_tags("ssh {{ params.h }} -- {{ params.x }}"), ["{{ params.h }}"]);
        assert_eq!(word_leading_tags("echo x{{ params.h }} {{ params.y }}"), ["{{ params.y }}"]);
    }
}
