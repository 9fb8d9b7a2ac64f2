//! The verdict on an attempt: what an effect produced, judged by the step's `expect`, masked
//! for storage, and whether the step is retried.

use std::time::Duration as StdDuration;

use serde_json::Value;

use crate::run::*;
use crate::runbook::{Retries, Step, StepKind};
use crate::runner::{self, Ending, Stop};

use crate::secrets::Secrets;

use super::context::Revealed;

/// Turns what an effect produced into an attempt's result, by the step's `expect`. The
/// verdict reads the real output; the attempt keeps it masked (masked first, then cut to
/// `MAX_OUTPUT`). The real output comes back too when masking changed it, for the
/// expressions and templates of later steps in this drive.
pub(super) fn judge(
    secrets: &Secrets,
    step: &Step,
    number: u32,
    (started_at, finished_at): (Timestamp, Timestamp),
    output: runner::Output,
    timeout: StdDuration,
) -> (Attempt, Option<Revealed>) {
    let real_stdout = String::from_utf8_lossy(&output.stdout);
    let trimmed = real_stdout.trim_end_matches(['\n', '\r']);
    let (stdout, stdout_truncated) =
        secrets.mask_capture(&output.stdout, output.stdout_truncated, MAX_OUTPUT);
    let (stderr, stderr_truncated) =
        secrets.mask_capture(&output.stderr, output.stderr_truncated, MAX_OUTPUT);
    let (status, error) = match output.ending {
        Ending::Completed => match &step.kind {
            StepKind::Run(_) => match output.exit_code {
                None => (
                    StepStatus::Failed,
                    Some(format!("killed by {}", output.signal.unwrap_or("a signal"))),
                ),
                Some(code) => {
                    let expected: &[i32] = if step.expect.exit_code.is_empty() {
                        &[0]
                    } else {
                        &step.expect.exit_code
                    };
                    if !expected.contains(&code) {
                        (
                            StepStatus::Failed,
                            Some(format!("exit code {code}, expected {}", join(expected))),
                        )
                    } else if let Some(pattern) =
                        step.expect.stdout.as_ref().filter(|p| !p.is_match(trimmed))
                    {
                        (
                            StepStatus::Failed,
                            Some(format!("stdout does not match `{}`", pattern.as_str())),
                        )
                    } else {
                        (StepStatus::Succeeded, None)
                    }
                }
            },
            StepKind::Http(_) => {
                let code = output.http_status.unwrap_or(0);
                let ok = if step.expect.status.is_empty() {
                    (200..300).contains(&code)
                } else {
                    step.expect.status.contains(&code)
                };
                let expected = if step.expect.status.is_empty() {
                    "2xx".to_owned()
                } else {
                    join(&step.expect.status)
                };
                if ok {
                    (StepStatus::Succeeded, None)
                } else if let Some(location) = &output.location {
                    let location = secrets.mask(location);
                    (
                        StepStatus::Failed,
                        Some(format!(
                            "HTTP status {code}, expected {expected}: the redirect to {location} was not followed (only GET and HEAD follow redirects, and only within the same origin)"
                        )),
                    )
                } else {
                    (StepStatus::Failed, Some(format!("HTTP status {code}, expected {expected}")))
                }
            }
            _ => (StepStatus::Succeeded, None),
        },
        Ending::TimedOut => (
            StepStatus::TimedOut,
            Some(format!("timed out after {}", crate::Duration::from_std(timeout))),
        ),
        Ending::Stopped(Stop::Cancel) => {
            (StepStatus::Cancelled, Some("the run was cancelled".to_owned()))
        }
        Ending::Stopped(_) => (
            StepStatus::Interrupted,
            Some("interrupted: the driver was stopped while the step ran".to_owned()),
        ),
        Ending::Error => (StepStatus::Failed, output.error.as_deref().map(|e| secrets.mask(e))),
    };
    let masked_trimmed = stdout.trim_end_matches(['\n', '\r']);
    // Parsed from the masked text, then masked again: a JSON escape (`\u002B`) can spell a
    // secret that the text form did not show.
    let json = serde_json::from_str(masked_trimmed)
        .ok()
        .filter(|_| !masked_trimmed.is_empty())
        .map(|mut json: Value| {
            secrets.mask_json(&mut json);
            json
        });
    let real_stderr = String::from_utf8_lossy(&output.stderr);
    let revealed = (stdout != real_stdout || stderr != real_stderr).then(|| Revealed {
        attempt: number,
        stdout: real_stdout.clone().into_owned(),
        stderr: real_stderr.into_owned(),
    });
    let attempt = Attempt {
        step_id: step.id.clone(),
        number,
        status: Some(status),
        started_at: Some(started_at),
        finished_at: Some(finished_at),
        exit_code: output.exit_code,
        http_status: output.http_status,
        final_url: output.final_url.as_deref().map(|url| secrets.mask(url)),
        json,
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        error,
    };
    (attempt, revealed)
}

fn join<T: ToString>(values: &[T]) -> String {
    values.iter().map(ToString::to_string).collect::<Vec<_>>().join(" or ")
}

/// What an attempt's result means for its step: the step's status after it, and the retry
/// it earns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Verdict {
    /// The attempt's own status (`failed` when it has none).
    pub(super) status: StepStatus,
    /// The step's status after the attempt: `pending` again when it is retried.
    pub(super) step_status: StepStatus,
    /// The step's `retries`, when this failure is retried (after their `delay`).
    pub(super) retry: Option<Retries>,
}

/// Decides whether a finished attempt is retried: a failure is, while the attempts made since
/// the commander last asked for a retry (`attempts_before_round`) stay within the step's
/// `retries.count`.
pub(super) fn verdict(step: &Step, attempts_before_round: u32, attempt: &Attempt) -> Verdict {
    let status = attempt.status.unwrap_or(StepStatus::Failed);
    let tries = attempt.number - attempts_before_round;
    let retry = step.retries.filter(|retries| status.is_failure() && tries <= retries.count);
    let step_status = if retry.is_some() { StepStatus::Pending } else { status };
    Verdict { status, step_status, retry }
}
