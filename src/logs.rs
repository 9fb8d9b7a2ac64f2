//! The server's log: `tracing` events and spans written to standard error, as text or as one
//! JSON object a line, filtered like `RUST_LOG`. Only `steady serve` logs; the other commands
//! speak to the person at the terminal instead.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, spans with their fields, message, fields.
    Text,
    /// One JSON object per line for log collectors, with the spans' fields in `spans`.
    Json,
}

/// Installs the process's log subscriber. The filter comes from `STEADY_LOG`, else
/// `RUST_LOG`, else `info` (directives such as `info,tower_http=warn`).
pub fn install(format: LogFormat) -> anyhow::Result<()> {
    let (variable, directives) = ["STEADY_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| {
            std::env::var(name).ok().filter(|value| !value.is_empty()).map(|value| (name, value))
        })
        .unwrap_or(("the default", "info".to_owned()));
    let filter = EnvFilter::try_new(&directives)
        .with_context(|| format!("invalid log filter in {variable}: {directives}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        // Colours only for a person watching; a log file gets plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(true).try_init(),
    };
    installed.map_err(|error| anyhow::anyhow!("cannot install the log: {error}"))
}
