//! Diagnostics: what the validator and linter say about a runbook, and where.

use std::fmt;

/// A place in a runbook's source text, both numbers counted from 1 as editors show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The runbook cannot be published or run until this is fixed.
    Error,
    /// The runbook is valid, but probably not what its author meant or safe to run.
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One finding about a runbook, anchored at the place an author has to edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub at: Position,
    pub message: String,
}

impl Diagnostic {
    pub fn error(at: Position, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, at, message: message.into() }
    }

    pub fn warning(at: Position, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, at, message: message.into() }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The compiler-style line every tool understands: `path:line:column: error: message`.
    pub fn render(&self, path: &str) -> String {
        format!("{path}:{}: {}: {}", self.at, self.severity.as_str(), self.message)
    }
}

/// Suggests the closest of `candidates` to a misspelt `word`, if one is close enough to be
/// what the author meant.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Appends "; did you mean `x`?" to a message when there is a close candidate.
pub(crate) fn with_suggestion<'a>(
    message: String,
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> String {
    match did_you_mean(word, candidates) {
        Some(candidate) => format!("{message}; did you mean `{candidate}`?"),
        None => message,
    }
}
