//! Steady's engine: the runbook language and, in later layers, the run state machine.
//!
//! # Layout
//!
//! - [`runbook`]: the model of a procedure and `parse`, which reads, validates and lints YAML.
//! - [`diagnostic`]: errors and warnings with the line and column an author has to edit.
//! - [`template`]: Jinja templates and expressions (minijinja), shell quoting, secret masking.
//! - [`params`]: parameter values given for a plan or run, checked against the runbook.
//! - [`plan`]: the procedure rendered with its parameters, as a person would follow it.
//! - [`duration`]: `500ms`, `30s`, `5m`, `1h30m`, `90d`.
//!
//! The engine does no I/O of its own: it is given text and returns values and diagnostics.
//! It knows nothing of HTTP servers or SQL.

pub mod diagnostic;
pub mod duration;
pub mod params;
pub mod plan;
pub mod runbook;
pub mod template;

pub use diagnostic::{Diagnostic, Position, Severity};
pub use duration::Duration;
pub use runbook::{Parsed, Runbook, parse};
