//! How the CLI shows problems: compiler-style lines on stderr, coloured on a terminal, each
//! followed by the source line it points at.

use anstream::eprintln;
use anstyle::{AnsiColor, Style};
use steady_engine::{Diagnostic, Severity};

use crate::terminal::printable;

const BOLD: Style = Style::new().bold();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const WARNING: Style = AnsiColor::Yellow.on_default().bold();
const GUTTER: Style = AnsiColor::Blue.on_default().bold();

/// Prints each of `diagnostics` as `path:line:column: error: message`, followed by the line of
/// `source` it points at. The lines are split once for all of them: a runbook of thousands of
/// steps has thousands of findings.
pub fn diagnostics<'d>(
    path: &str,
    source: &str,
    diagnostics: impl IntoIterator<Item = &'d Diagnostic>,
) {
    let lines: Vec<&str> = steady_engine::source_lines(source).collect();
    for diagnostic in diagnostics {
        let line = diagnostic.at.line.checked_sub(1).and_then(|index| lines.get(index));
        show(path, line.copied(), diagnostic);
    }
}

fn show(path: &str, line: Option<&str>, diagnostic: &Diagnostic) {
    let style = match diagnostic.severity {
        Severity::Error => ERROR,
        Severity::Warning => WARNING,
    };
    let at = diagnostic.at;
    eprintln!(
        "{BOLD}{path}:{at}:{BOLD:#} {style}{}{style:#}{BOLD}:{BOLD:#} {}",
        diagnostic.severity.as_str(),
        printable(&diagnostic.message)
    );
    if let Some(line) = line {
        let number = at.line.to_string();
        let pad = " ".repeat(number.len());
        let before: String = line.chars().take(at.column.saturating_sub(1)).collect();
        let caret = " ".repeat(printable(&before).chars().count());
        eprintln!("{GUTTER}{number} |{GUTTER:#} {}", printable(line));
        eprintln!("{GUTTER}{pad} |{GUTTER:#} {caret}{style}^{style:#}");
    }
}

/// Prints a problem that has no place in a file: `error: message`.
pub fn error(message: &str) {
    eprintln!("{ERROR}error{ERROR:#}{BOLD}:{BOLD:#} {}", printable(message));
}

/// Prints a problem with a file as a whole: `path: error: message`.
pub fn file_error(path: &str, message: &str) {
    eprintln!("{BOLD}{path}:{BOLD:#} {ERROR}error{ERROR:#}{BOLD}:{BOLD:#} {}", printable(message));
}

/// Prints a warning about a file as a whole: `path: warning: message`.
pub fn file_warning(path: &str, message: &str) {
    eprintln!("{BOLD}{path}:{BOLD:#} {WARNING}warning{WARNING:#}{BOLD}:{BOLD:#} {message}");
}
