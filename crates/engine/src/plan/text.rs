//! A plan as a person reads it in a terminal: `steady plan`'s output and the text of a step.

use std::fmt::{self, Write as _};

use super::{Action, Plan, PlannedStep};
use crate::runbook::OnFailure;

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.title {
            Some(title) => writeln!(f, "{}: {title}", self.runbook)?,
            None => writeln!(f, "{}", self.runbook)?,
        }
        if let Some(description) = &self.description {
            writeln!(f, "{}", description.trim_end())?;
        }
        writeln!(f)?;
        let mut facts = Vec::new();
        if let Some(owner) = &self.owner {
            facts.push(("Owner", vec![owner.clone()]));
        }
        if let Some(review_every) = &self.review_every {
            facts.push(("Review", vec![format!("every {review_every}")]));
        }
        if let Some(rto) = &self.rto {
            facts.push(("RTO", vec![format!("recover within {rto}")]));
        }
        if let Some(lock) = &self.lock {
            facts.push(("Lock", vec![lock.clone()]));
        }
        if !self.contacts.is_empty() {
            facts.push((
                "Contacts",
                self.contacts.iter().map(|c| format!("{}: {}", c.name, c.how)).collect(),
            ));
        }
        if !self.roles.is_empty() {
            let roles = self
                .roles
                .iter()
                .map(|role| match &role.description {
                    Some(description) => format!("{}: {description}", role.name),
                    None => role.name.clone(),
                })
                .collect();
            facts.push(("Roles", roles));
        }
        if !self.params.is_empty() {
            let params = self
                .params
                .iter()
                .map(|param| {
                    let default = if param.is_default { " (default)" } else { "" };
                    format!("{} = {}{default}", param.name, param.value)
                })
                .collect();
            facts.push(("Parameters", params));
        }
        for (label, lines) in facts {
            for (index, line) in lines.iter().enumerate() {
                let label = if index == 0 { label } else { "" };
                writeln!(f, "{label:<12}{line}")?;
            }
        }
        writeln!(f, "\nSteps")?;
        for step in &self.steps {
            write!(f, "{step}")?;
        }
        if !self.rollback.is_empty() {
            writeln!(f, "\nRollback (runs when a step with on_failure: rollback fails)")?;
            for step in &self.rollback {
                write!(f, "{step}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for PlannedStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tags = Vec::new();
        if self.read_only {
            tags.push("read-only".to_owned());
        }
        if self.idempotent {
            tags.push("idempotent".to_owned());
        }
        match &self.action {
            Action::Approval { role, .. } => tags.push(format!("GATE: {role}")),
            Action::Manual { role, .. } => tags.push(format!("MANUAL: {role}")),
            _ => {}
        }
        let title = match &self.name {
            Some(name) => format!("{name} ({})", self.id),
            None => self.id.clone(),
        };
        let tags = if tags.is_empty() { String::new() } else { format!("  [{}]", tags.join(", ")) };
        writeln!(f, "{:>5}. {title}{tags}", self.number)?;

        let mut lines: Vec<(&str, String)> = Vec::new();
        if let Some(when) = &self.when {
            lines.push(("only if", when.clone()));
        }
        match &self.action {
            Action::Run { argv } => {
                let command = shlex::try_join(argv.iter().map(String::as_str))
                    .unwrap_or_else(|_| argv.join(" "));
                lines.push(("run", command));
            }
            Action::Shell { command } => lines.push(("sh", command.clone())),
            Action::Http { method, url, headers, json, body } => {
                lines.push(("http", format!("{method} {url}")));
                for (name, value) in headers {
                    lines.push(("header", format!("{name}: {value}")));
                }
                if let Some(json) = json {
                    lines.push(("json", json.to_string()));
                }
                if let Some(body) = body {
                    lines.push(("body", body.clone()));
                }
            }
            Action::Check { expression } => lines.push(("check", expression.clone())),
            Action::Manual { instructions, .. } => {
                lines.push(("do", instructions.trim_end().to_owned()))
            }
            Action::Approval {
                approvals,
                timeout,
                prompt,
                allow_self_approval,
                escalate_to,
                ..
            } => {
                if let Some(prompt) = prompt {
                    lines.push(("asks", prompt.clone()));
                }
                let mut rule =
                    format!("{approvals} approval{}", if *approvals == 1 { "" } else { "s" });
                rule.push_str(if *allow_self_approval {
                    "; the commander may approve"
                } else {
                    "; not the commander"
                });
                if let Some(timeout) = timeout {
                    let _ = write!(rule, "; times out after {timeout}");
                }
                match escalate_to {
                    Some(escalation) => {
                        let _ = write!(rule, ", then escalates to {escalation}");
                    }
                    None if timeout.is_some() => rule.push_str(", then fails"),
                    None => {}
                }
                lines.push(("needs", rule));
            }
            Action::Sleep { duration } => lines.push(("wait", duration.clone())),
            Action::Parallel { branches } => {
                lines.push(("parallel", format!("{} branches at once", branches.len())))
            }
            // An offline plan shows a fan-out by its items (below); a run records this.
            Action::ForEach { items, .. } => lines.push((
                "items",
                items.iter().map(crate::runbook::item_text).collect::<Vec<_>>().join(", "),
            )),
        }
        if let Some(fan_out) = &self.fan_out {
            let count = match &fan_out.items {
                Some(items) => format!("{} items", items.len()),
                None => format!("the items of {}", fan_out.for_each),
            };
            lines.push((
                "for each",
                format!(
                    "{} as {}: at most {} at once, stop after {} failed",
                    count, fan_out.name, fan_out.concurrency, fan_out.max_failures
                ),
            ));
        }
        if let Some(description) = &self.description {
            lines.push(("note", description.trim_end().to_owned()));
        }
        if !self.expect.is_empty() {
            lines.push(("expect", self.expect.join(", ")));
        }
        let mut limits = Vec::new();
        if let Some(timeout) = &self.timeout {
            limits.push(format!("timeout {timeout}"));
        }
        if let Some(retries) = &self.retries {
            limits.push(format!("retry {retries}"));
        }
        if self.on_failure != OnFailure::Pause {
            limits.push(format!("on failure {}", self.on_failure.as_str()));
        }
        if !limits.is_empty() {
            lines.push(("limits", limits.join(", ")));
        }
        for (label, text) in lines {
            for (index, line) in text.lines().enumerate() {
                let label = if index == 0 { label } else { "" };
                writeln!(f, "{:7}{label:<9}{line}", "")?;
            }
        }
        for child in &self.children {
            write!(f, "{child}")?;
        }
        Ok(())
    }
}
