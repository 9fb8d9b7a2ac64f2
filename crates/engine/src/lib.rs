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
//! - [`run`]: run and step statuses, the records a store keeps, and `Transition`.
//! - [`store`]: the `Store` trait the engine needs; `steady-storage` implements it.
//! - [`machine`]: the pure decision of what a run needs next.
//! - [`policy`]: who may act on a run: commanding, answering gates and manual steps, notes.
//! - [`rehearsal`]: what succeeded drills and live runs measured — each step's and the whole
//!   procedure's median, p90 and longest — and a run's expected finish against them.
//! - [`engine`]: starting, driving and answering runs; leases and crash recovery.
//! - [`runner`]: the effects: processes, HTTP requests, sleeps.
//! - [`audit`]: audit events and the hash chain.
//! - [`testing`]: runbook tests (`steady test`): test files, and cases run through the engine
//!   on a memory store with stubbed effects and a virtual clock.
//! - [`trigger`]: alerts from Alertmanager, Grafana or any JSON sender, read from their
//!   webhook payloads; a runbook's `triggers:` applied to them (`when`, parameters rendered
//!   from the alert and checked); the key that tells the same alert again.
//! - [`verification`]: continuous verification's periods, failure summaries and state.
//! - [`accounts`]: users with global roles, sessions and API tokens, and the `Accounts` trait.
//!
//! Parsing, validation, rendering and the state machine's decisions do no I/O. Effects live
//! in `runner` and behind the `Store` trait. The engine knows nothing of HTTP servers or SQL.

pub mod accounts;
pub mod audit;
pub mod clock;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod machine;
pub mod params;
pub mod plan;
pub mod policy;
pub mod rehearsal;
pub mod run;
pub mod runbook;
pub mod runner;
pub mod secrets;
pub mod store;
pub mod template;
pub mod testing;
pub mod trigger;
pub mod verification;

pub use diagnostic::{Diagnostic, Position, Severity, source_line, source_lines};
pub use duration::Duration;
pub use runbook::{Parsed, Runbook, parse};
