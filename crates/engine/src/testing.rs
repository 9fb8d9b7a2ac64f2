//! Runbook tests (`steady test`): a test file beside a runbook (`NAME.test.yaml`) says what the
//! world answers each step and what the runbook must then do; every case runs through the real
//! engine — rendering, `expect`, `check`, `when`, retries, gates, rollback, decisions — on a
//! [`MemoryStore`](crate::store::memory::MemoryStore), with stubbed effects and a
//! [`VirtualClock`](crate::clock::VirtualClock), so that a case costs microseconds and an
//! hour of retry delays or a gate's timeout costs nothing.
//!
//! ```yaml
//! runbook: postgres-failover
//! cases:
//!   - name: too much lag stops before promotion
//!     params: { cluster: main }
//!     assign: { approver: alex, dba: carol }
//!     given:
//!       lag: { stdout: "5000" }        # run: exit_code, stdout, stderr; http: status, body
//!       fence: done                    # manual: done | failed
//!       go: { approve: [alex] }        # gate: approve | reject | timeout
//!     decisions: { lag_ok: abort }
//!     expect:
//!       status: failed
//!       ran: [standby_in_recovery, lag, lag_ok]
//!       not_run: [promote]
//! ```
//!
//! - [`parse`] reads a test file into [`TestFile`], every problem located.
//! - [`check`] holds a test file against the runbook it tests (steps, roles, parameters and
//!   what each step can be given), also located.
//! - [`run`] runs every case and reports the first difference of each that fails.
//!
//! A case never reaches the world: an effect it does not stub fails the case by name.

mod case;
mod check;
mod parse;
mod people;
mod stubs;

use std::time::Duration;

use regex::Regex;

use crate::diagnostic::{Diagnostic, Position};
use crate::run::{Completion, Decision, RunMode, RunStatus, StepStatus};

pub use case::{CaseReport, run, run_within};
pub use check::check;
pub use parse::parse;

/// What a test file's name ends with: `postgres-failover.test.yaml` tests `postgres-failover`.
pub const SUFFIXES: [&str; 2] = [".test.yaml", ".test.yml"];

/// Whether `file_name` names a test file rather than a runbook.
pub fn is_test_file(file_name: &str) -> bool {
    SUFFIXES.iter().any(|suffix| file_name.ends_with(suffix))
}

/// A test file read from YAML, with its diagnostics: `file` is `None` when it has errors.
#[derive(Debug)]
pub struct ParsedTests {
    pub file: Option<TestFile>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The cases of one runbook.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The name of the runbook tested.
    pub runbook: String,
    pub runbook_at: Position,
    pub cases: Vec<Case>,
}

/// One story: what people and the world do, and what the runbook must then have done.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub at: Position,
    /// `live` unless the case says `mode: drill` or `mode: dry-run`.
    pub mode: RunMode,
    /// Who starts the run and answers its decisions (`commander`, default `commander`): as
    /// the starter, the engine refuses them on gates that do not allow self-approval.
    pub commander: String,
    /// Parameter values as text, as `-p KEY=VALUE` gives them; a list as a JSON array.
    pub params: Vec<(String, String)>,
    pub params_at: Position,
    /// Role → the people who hold it in the run.
    pub assign: Vec<Placed<(String, String)>>,
    /// Values of the runbook's secrets for this case; a declared secret not given here is
    /// `test-secret-<NAME>`.
    pub secrets: Vec<(String, String)>,
    /// Step id (a branch's, a fan-out's for all its items, or one item's `restart[2]`) →
    /// what it is given.
    pub given: Vec<Placed<(String, Given)>>,
    /// Step id (or an item's id) → the commander's answers, in order, each time the run
    /// needs attention there.
    pub decisions: Vec<Placed<(String, Vec<Decision>)>>,
    pub expect: Expect,
}

/// A value and where it is written.
#[derive(Debug, Clone)]
pub struct Placed<T> {
    pub value: T,
    pub at: Position,
}

/// What a step is given: one answer for every attempt (or every time it waits), or a list of
/// answers in order, after which nothing more is given.
#[derive(Debug, Clone)]
pub struct Given {
    pub answers: Vec<Placed<Stub>>,
    /// Written as a list: the n-th attempt gets the n-th answer, and there is no (n+1)-th.
    pub in_order: bool,
}

impl Given {
    /// The answer for the `n`-th attempt or wait, from 1.
    pub fn nth(&self, n: u32) -> Option<&Stub> {
        let index = usize::try_from(n.saturating_sub(1)).unwrap_or(usize::MAX);
        if self.in_order {
            self.answers.get(index).map(|answer| &answer.value)
        } else {
            self.answers.first().map(|answer| &answer.value)
        }
    }
}

/// What the world or people answer a step, once.
#[derive(Debug, Clone, PartialEq)]
pub enum Stub {
    /// A `run` or `http` step's effect ends so.
    Effect(EffectStub),
    /// The step runs past its timeout (a `run` or `http` step), or nobody answers the gate or
    /// manual step before its deadline.
    Timeout,
    /// A gate: these people approve, one after another.
    Approve(Vec<String>),
    /// A gate: this person rejects.
    Reject(String),
    /// A manual step: done or failed, by this person (else the first holder of its role).
    Manual { completion: Completion, by: Option<String>, note: Option<String> },
}

impl Stub {
    /// What a test file calls this kind of answer, for "`go` is a gate: it takes …" errors.
    pub fn describe(&self) -> &'static str {
        match self {
            Stub::Effect(effect) if effect.is_http() => "an HTTP answer (`status`, `body`)",
            Stub::Effect(_) => "a process's ending (`exit_code`, `stdout`, `stderr`)",
            Stub::Timeout => "`timeout`",
            Stub::Approve(_) => "`approve`",
            Stub::Reject(_) => "`reject`",
            Stub::Manual { completion: Completion::Done, .. } => "`done`",
            Stub::Manual { completion: Completion::Failed, .. } => "`failed`",
        }
    }
}

/// How a stubbed effect ends. A process: `exit_code` (default 0), `stdout`, `stderr`. An HTTP
/// request: `status` (default 200), `body` (text, or YAML written as JSON). Either: `error`
/// (it could not be started or sent), `takes` (how much virtual time it takes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EffectStub {
    pub exit_code: Option<i32>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub status: Option<u16>,
    pub body: Option<String>,
    pub error: Option<String>,
    pub takes: Option<Duration>,
}

impl EffectStub {
    /// Whether it is written as an HTTP answer.
    pub fn is_http(&self) -> bool {
        self.status.is_some() || self.body.is_some()
    }

    /// Whether it is written as a process's ending.
    pub fn is_process(&self) -> bool {
        self.exit_code.is_some() || self.stdout.is_some() || self.stderr.is_some()
    }
}

/// What the run must have done when nothing more can happen.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The run's status then.
    pub status: Placed<RunStatus>,
    /// The steps that started, in order: the runbook's own steps and rollback steps, not the
    /// branches or items of a group (name those in `steps`).
    pub ran: Option<Placed<Vec<String>>>,
    /// Steps (branches and items included) that must never have started.
    pub not_run: Vec<Placed<String>>,
    /// Step id → the status it must end in.
    pub steps: Vec<Placed<(String, StepStatus)>>,
    /// Step id → a regular expression its rendered command or request must match: an argv
    /// joined as a shell would quote it, a shell command as written, `METHOD URL` then each
    /// header and the body on lines of their own for HTTP, a gate's prompt, a manual step's
    /// instructions.
    pub rendered: Vec<Placed<(String, Regex)>>,
}
