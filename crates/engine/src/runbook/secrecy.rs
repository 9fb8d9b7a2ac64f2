//! Rules that keep secrets where the author meant them and parameters out of option position.
//!
//! Two errors. A secret in an `http` step whose scheme, host or port comes from a parameter —
//! directly, or through an earlier step's output that the parameter steers — that anyone
//! starting a run could point at their own listener (a parameter without `enum` or an anchored
//! `pattern`). And a secret used other than written out as `{{ secrets.NAME }}`: approvers, plans
//! and dry runs see `***` in its place, so a template that tests, filters or slices a secret (or a
//! `when` or `for_each` that reads one) would run differently from what people saw and approved.
//! Two lints: a secret on a command line, where every user of the
//! machine reads it in `ps`; and a free-form string parameter that forms a whole argument or
//! begins a shell word, where a value like `-oProxyCommand=…` becomes an option.

use std::collections::HashSet;

use super::*;

pub(super) fn check(runbook: &Runbook, out: &mut Vec<Diagnostic>) {
    let checker = Checker { runbook };
    // Most runbooks declare no secret: then only the option-injection lint has work to do,
    // and validation does not compile every template a second time.
    let has_secrets = !runbook.secrets.is_empty();
    // Steps whose output may hold a secret (they were given one): their output is written out
    // whole or not at all, like a secret. Each step is judged once, in order, so that a step
    // reading an earlier step's output reuses that step's verdict.
    let mut tainted: HashSet<&str> = HashSet::new();
    if has_secrets {
        for step in runbook.all_steps() {
            let mut visited = HashSet::new();
            if step_templates(step).into_iter().any(|t| checker.carries_secret(t, &mut visited)) {
                tainted.insert(step.id.as_str());
            }
        }
    }
    for step in runbook.all_steps() {
        if has_secrets {
            checker.secrets_only_written(step, &tainted, out);
        }
        match &step.kind {
            StepKind::Http(request) if has_secrets => checker.destination(step, request, out),
            StepKind::Run(command) => {
                if has_secrets {
                    checker.secret_on_command_line(step, command, out);
                }
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
}

impl<'a> Checker<'a> {
    /// The variables a piece of template text reads, as dotted paths (`params.host`,
    /// `steps.fetch.stdout`, or a bare root such as `params` when it is read whole).
    fn reads(&self, source: &'a str) -> HashSet<String> {
        // What the tags' text names. A value can only be reached through its root's name
        // (`params`, `steps`, `secrets`), so this finds every read, and forms that minijinja's
        // own analysis misses (a slice, `x[1:]`, hides its subject); a name inside a string
        // literal counts too, which errs on the safe side. It also costs no second compile.
        let mut reads = HashSet::new();
        for (_, tag) in pieces(source).into_iter().filter(|(is_tag, _)| *is_tag) {
            reads.extend(named(tag));
        }
        reads
    }

    fn reads_secret(&self, source: &'a str) -> bool {
        self.reads(source).iter().any(|path| path == "secrets" || path.starts_with("secrets."))
    }

    /// Whether a template carries a secret: reads one, or reads the output of a step whose
    /// templates carry one (a step that prints a secret hands it on).
    fn carries_secret(&self, source: &'a str, visited: &mut HashSet<&'a str>) -> bool {
        let reads = self.reads(source);
        if reads.iter().any(|path| path == "secrets" || path.starts_with("secrets.")) {
            return true;
        }
        reads.iter().filter_map(|path| path.strip_prefix("steps.")).any(|rest| {
            let id = rest.split('.').next().unwrap_or(rest);
            let Some(step) = self.step(id) else { return false };
            visited.insert(step.id.as_str())
                && step_templates(step).into_iter().any(|t| self.carries_secret(t, visited))
        })
    }

    fn step(&self, id: &str) -> Option<&'a Step> {
        self.runbook.find_step(id)
    }

    /// The parameters a piece of template text reads.
    fn params(&self, source: &'a str) -> Vec<&'a Param> {
        let reads = self.reads(source);
        // `params` read whole (`params[name]`, a loop, a filter) may be any of them.
        if reads.contains("params") {
            return self.runbook.params.iter().collect();
        }
        let mut found: Vec<&Param> = reads
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
        let mut visited = HashSet::new();
        if !sources.iter().any(|source| self.carries_secret(source, &mut visited)) {
            return;
        }
        let tags = origin_tags(&request.url.source);
        if tags.is_empty() {
            return;
        }
        // Each `{{ … }}` before the path, read on its own; a block (`{% … %}`) around the origin
        // cannot be read apart from the rest, so then the whole URL counts.
        let mut reads: HashSet<String> = if tags.iter().all(|tag| tag.starts_with("{{")) {
            tags.iter().flat_map(|tag| self.reads(tag)).collect()
        } else {
            self.reads(&request.url.source)
        };
        // A fan-out's item is whatever its `for_each` yields: an origin that names the item is
        // steered by what `for_each` reads.
        if let Some(fan_out) = &step.fan_out
            && tags.iter().any(|tag| names_word(tag, &fan_out.name))
        {
            reads.extend(named(&fan_out.items.source));
        }
        // A note is whatever the person who completes a manual step types.
        for path in &reads {
            let mut parts = path.split('.');
            if let (Some("steps"), Some(id), Some("note")) =
                (parts.next(), parts.next(), parts.next())
            {
                out.push(Diagnostic::error(
                    request.url.at,
                    format!(
                        "step `{}` sends a secret to a URL whose scheme, host or port comes from the note of step `{id}`, which the person completing it types: name the host in the runbook or in a parameter with an `enum` or an anchored `pattern`",
                        step.id
                    ),
                ));
            }
        }
        let mut seen = HashSet::new();
        for (param, through) in self.steering(&reads, &mut HashSet::new()) {
            if constrained(param, Constraint::Anchored) || !seen.insert(param.name.as_str()) {
                continue;
            }
            let via = through
                .map(|id| format!(" (through the output of step `{id}`)"))
                .unwrap_or_default();
            out.push(Diagnostic::error(
                request.url.at,
                format!(
                    "step `{}` sends a secret to a URL whose scheme, host or port comes from parameter `{}`{via}, which anyone starting a run could point at their own server: give `{}` an `enum` or a `pattern` anchored with ^ and $",
                    step.id, param.name, param.name
                ),
            ));
        }
    }

    /// The parameters that steer what `reads` names: parameters read directly (all of them when
    /// `params` is read whole, as by `params[name]` or a loop), and those that steer the
    /// templates of any step whose output is read, with that step's id.
    fn steering(
        &self,
        reads: &HashSet<String>,
        visited: &mut HashSet<&'a str>,
    ) -> Vec<(&'a Param, Option<&'a str>)> {
        let mut found = Vec::new();
        for path in reads {
            let mut parts = path.split('.');
            match (parts.next(), parts.next()) {
                (Some("params"), None) => {
                    found.extend(self.runbook.params.iter().map(|p| (p, None)))
                }
                (Some("params"), Some(name)) => {
                    found.extend(self.runbook.param(name).map(|p| (p, None)));
                }
                (Some("steps"), None) => {
                    found.extend(self.runbook.params.iter().map(|p| (p, None)));
                }
                (Some("steps"), Some(id)) => {
                    let Some(step) = self.step(id) else {
                        continue;
                    };
                    if !visited.insert(step.id.as_str()) {
                        continue;
                    }
                    let reads: HashSet<String> =
                        step_templates(step).into_iter().flat_map(|t| self.reads(t)).collect();
                    found.extend(
                        self.steering(&reads, visited)
                            .into_iter()
                            .map(|(param, through)| (param, through.or(Some(step.id.as_str())))),
                    );
                }
                _ => {}
            }
        }
        found
    }

    /// A secret may only be written out whole, as `{{ secrets.NAME }}`, and never read by `when`
    /// or `for_each`.
    fn secrets_only_written(
        &self,
        step: &'a Step,
        tainted: &HashSet<&str>,
        out: &mut Vec<Diagnostic>,
    ) {
        let holds_secret = |tag: &str| {
            names_secrets(tag)
                || named(tag).iter().any(|path| {
                    path.strip_prefix("steps.").is_some_and(|rest| {
                        tainted.contains(rest.split('.').next().unwrap_or(rest))
                    })
                })
        };
        let refuse = |at: Position, what: &str, out: &mut Vec<Diagnostic>| {
            out.push(Diagnostic::error(
                at,
                format!(
                    "step `{}` {what}: a secret may only be written out as `{{{{ secrets.NAME }}}}`, because approvers, plans and dry runs see `***` in its place and a step that tests or changes a secret would run differently from what they saw",
                    step.id
                ),
            ));
        };
        let reads_secret = |expression: &Expression| {
            named(&expression.source)
                .iter()
                .any(|path| path == "secrets" || path.starts_with("secrets."))
        };
        if let Some(when) = step.when.as_ref().filter(|when| reads_secret(when)) {
            refuse(when.at, "reads a secret in `when`", out);
        }
        if let Some(fan_out) = step.fan_out.as_ref().filter(|f| reads_secret(&f.items)) {
            refuse(fan_out.items.at, "reads a secret in `for_each`", out);
        }
        for (source, at) in step_template_sites(step) {
            let pieces = pieces(source);
            let writes_secret = pieces.iter().any(|(is_tag, tag)| *is_tag && holds_secret(tag));
            if !writes_secret {
                continue;
            }
            let inspected = pieces
                .iter()
                .any(|(is_tag, tag)| *is_tag && holds_secret(tag) && !written_out(tag));
            // Blocks that capture or transform what is inside them (`filter`, `set`, macros)
            // could change a secret written within; only choosing and repeating are allowed.
            let transformed = pieces
                .iter()
                .any(|(is_tag, tag)| *is_tag && tag.starts_with("{%") && !plain_block(tag));
            if inspected || transformed {
                refuse(
                    at,
                    "uses a secret (or the output of a step that was given one) in a template other than by writing it out",
                    out,
                );
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

/// The variables a piece of template text names, found in the text itself: `params.x`,
/// `steps.id.field`, `secrets.X`, or a bare root (`params[...]`) as the root alone.
fn named(source: &str) -> HashSet<String> {
    static NAMED: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let pattern = NAMED.get_or_init(|| {
        regex::Regex::new(r"\b(params|steps|secrets)\b((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*){0,2})")
            .unwrap_or_else(|_| unreachable!("a fixed, valid pattern"))
    });
    pattern
        .captures_iter(source)
        .map(|found| {
            let rest: String = found[2].chars().filter(|c| !c.is_whitespace()).collect();
            format!("{}{rest}", &found[1])
        })
        .collect()
}

/// Whether a piece of template text names `name` as a whole word (a fan-out's item).
fn names_word(text: &str, name: &str) -> bool {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(name).any(|(start, _)| {
        let before = text[..start].chars().next_back();
        let after = text[start + name.len()..].chars().next();
        // `x.host` is a field of something else, not the item.
        !before.is_some_and(|c| is_word(c) || c == '.') && !after.is_some_and(is_word)
    })
}

/// Whether a tag names `secrets` at all.
fn names_secrets(tag: &str) -> bool {
    named(tag).iter().any(|path| path.starts_with("secrets"))
}

/// Whether a block tag only chooses or repeats (`if`, `elif`, `else`, `for` and their ends).
fn plain_block(tag: &str) -> bool {
    let inner = tag.trim_start_matches("{%").trim_start_matches('-').trim_start();
    let keyword = inner.split(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or_default();
    matches!(keyword, "if" | "elif" | "else" | "endif" | "for" | "endfor")
}

/// Whether a tag only writes a value out: exactly `{{ secrets.NAME }}`, or a step's field read
/// by names and indexes (`{{ steps.fetch.json.items[0].name }}`), spaces and whitespace control
/// allowed — no filter, slice, operator or call that could change what is written.
fn written_out(tag: &str) -> bool {
    static PLAIN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let plain = PLAIN.get_or_init(|| {
        regex::Regex::new(
            r#"^\{\{-?\s*(secrets\.[A-Za-z0-9_]+|steps\.[a-z][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*|\[\s*([0-9]+|'[^']*'|"[^"]*")\s*\])*)\s*-?\}\}$"#,
        )
        .unwrap_or_else(|_| unreachable!("a fixed, valid pattern"))
    });
    plain.is_match(tag)
}

/// Every template text of a step.
fn step_templates(step: &Step) -> Vec<&str> {
    step_template_sites(step).into_iter().map(|(source, _)| source).collect()
}

/// Every template text of a step with where it stands.
fn step_template_sites(step: &Step) -> Vec<(&str, Position)> {
    fn push<'s>(template: &'s Template, sites: &mut Vec<(&'s str, Position)>) {
        sites.push((template.source.as_str(), template.at));
    }
    let mut sites: Vec<(&str, Position)> = Vec::new();
    match &step.kind {
        StepKind::Run(Command::Argv(argv)) => argv.iter().for_each(|t| push(t, &mut sites)),
        StepKind::Run(Command::Shell(line)) => push(line, &mut sites),
        StepKind::Http(request) => {
            push(&request.url, &mut sites);
            request.headers.iter().for_each(|(_, t)| push(t, &mut sites));
            match &request.body {
                Some(HttpBody::Text(body)) => push(body, &mut sites),
                Some(HttpBody::Json(json)) => {
                    let mut strings = Vec::new();
                    json_strings(json, &mut strings);
                    sites.extend(strings.into_iter().map(|s| (s, step.at)));
                }
                None => {}
            }
        }
        StepKind::Manual(manual) => push(&manual.instructions, &mut sites),
        StepKind::Approval(approval) => {
            if let Some(prompt) = &approval.prompt {
                push(prompt, &mut sites);
            }
        }
        StepKind::Check(_) | StepKind::Sleep(_) | StepKind::Parallel(_) => {}
    }
    step.env.iter().for_each(|(_, t)| push(t, &mut sites));
    sites
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
