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

/// The text of line `number` (from 1) of a source, counting lines as YAML and editors do:
/// `\r\n`, a lone `\r` and `\n` each end a line (`str::lines` knows no lone `\r`, and would
/// show the wrong line for a position in a file with old Mac line ends).
pub fn source_line(source: &str, number: usize) -> Option<&str> {
    source_lines(source).nth(number.checked_sub(1)?)
}

/// Every line of a source in order, counted as [`source_line`] counts them; a final line
/// break is followed by one empty line.
pub fn source_lines(source: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(without_bom(source));
    std::iter::from_fn(move || {
        let text = rest?;
        match text.find(['\r', '\n']) {
            Some(end) => {
                let skip = if text[end..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&text[end + skip..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The text without a leading UTF-8 byte-order mark, which some editors write and none show.
pub(crate) fn without_bom(source: &str) -> &str {
    source.strip_prefix('\u{feff}').unwrap_or(source)
}

/// Moves a position past the end of the text to the end of its last line, where an author
/// can see it: the YAML reader places problems found at the end of the input (a flow mapping
/// left open, a missing field of an empty document) one line past the last one when the text
/// has no final line break. Found by fuzzing. `lines` are the source's, split once by
/// [`source_lines`]: a runbook of a thousand steps has a thousand lint findings, and finding
/// each one's line from the start of the text made reading it quadratic.
pub(crate) fn within(lines: &[&str], at: Position) -> Position {
    if (1..=lines.len()).contains(&at.line) {
        return at;
    }
    let line = at.line.clamp(1, lines.len().max(1));
    let text = lines.get(line - 1).copied().unwrap_or_default();
    Position { line, column: text.chars().count() + 1 }
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

#[cfg(test)]
mod tests {
    use super::source_line;

    #[test]
    fn lines_end_at_any_line_break_yaml_knows() {
        let source = "name: x\r\nsteps:\r  - id: a\n    sleep: 1s";
        assert_eq!(source_line(source, 1), Some("name: x"));
        assert_eq!(source_line(source, 2), Some("steps:"));
        assert_eq!(source_line(source, 3), Some("  - id: a"));
        assert_eq!(source_line(source, 4), Some("    sleep: 1s"));
        assert_eq!(source_line(source, 5), None);
        assert_eq!(source_line(source, 0), None);
        assert_eq!(source_line("a\n", 2), Some(""));
        assert_eq!(source_line("a\n", 3), None);
    }

    #[test]
    fn a_position_past_the_end_moves_to_the_end_of_the_last_line() {
        let source = "name: x\nsteps: [";
        let lines: Vec<&str> = super::source_lines(source).collect();
        let at = |line, column| super::Position { line, column };
        assert_eq!(super::within(&lines, at(2, 3)), at(2, 3));
        assert_eq!(super::within(&lines, at(3, 1)), at(2, 9));
        assert_eq!(super::within(&lines, at(0, 1)), at(1, 8));
        assert_eq!(super::within(&[], at(4, 1)), at(1, 1));
    }
}
