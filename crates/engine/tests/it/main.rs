//! Integration tests of the runbook language, as a runbook author meets it.
//!
//! - `diagnostics`: a corpus of broken runbooks, one fault each, and the exact error each gets;
//!   lint fixtures and the warnings they get.
//! - `quoting`: hostile parameter values stay one shell word, checked with a real `/bin/sh`.
//! - `params`: parameter values given on a command line, checked against their declarations.
//! - `never_panics`: arbitrary and mangled input never panics the parser or validator.
//! - `runbook_tests`: `steady test`: answers, expectations, failures and broken test files.

mod diagnostics;
mod never_panics;
mod params;
mod quoting;
mod runbook_tests;

/// Renders diagnostics the way `steady validate` shows them: the compiler-style line, then
/// the source line with a caret under the column.
pub fn render_diagnostics(
    file: &str,
    source: &str,
    diagnostics: &[steady_engine::Diagnostic],
) -> String {
    let mut rendered = String::new();
    for diagnostic in diagnostics {
        rendered.push_str(&diagnostic.render(file));
        rendered.push('\n');
        if let Some(line) = steady_engine::source_line(source, diagnostic.at.line) {
            let caret =
                " ".repeat(line.chars().take(diagnostic.at.column.saturating_sub(1)).count());
            rendered.push_str(&format!("  | {line}\n  | {caret}^\n"));
        }
    }
    rendered
}
