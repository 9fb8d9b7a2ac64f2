//! What rehearsals say about a live run or drill under way, in the situation header: when it
//! should finish, and which step takes longer than it ever did in rehearsal (also marked on
//! the step itself). The page looks again by itself when a step is about to outlast its
//! longest rehearsal, since nothing is written to the audit log at that moment.

use steady_engine::rehearsal::Outlook;

use super::steps::StepView;
use crate::page::CodeSpans;
use crate::runbooks::figures::{about, figure};

/// The header's view of the outlook.
pub(crate) struct OutlookView {
    /// "expected to finish in ~7m (from 5 rehearsals)".
    pub(crate) expected: Option<CodeSpans>,
    /// "`promote` is slower than any rehearsal: 3m 12s so far, longest 2m 10s".
    pub(crate) slower: Vec<CodeSpans>,
    /// When the page should refresh itself to mark the next step slower than any rehearsal.
    pub(crate) look_again_at: Option<String>,
}

impl OutlookView {
    pub(crate) fn new(outlook: &Outlook) -> OutlookView {
        let expected = outlook.expected.as_ref().map(|expected| {
            let from = match expected.rehearsals {
                1 => "from 1 rehearsal".to_owned(),
                n => format!("from {n} rehearsals"),
            };
            let code = |ids: &[String]| {
                ids.iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ")
            };
            let mut unknown = Vec::new();
            if !expected.past_median.is_empty() {
                unknown.push(format!("past the rehearsed median: {}", code(&expected.past_median)));
            }
            if !expected.never_rehearsed.is_empty() {
                unknown.push(format!("never rehearsed: {}", code(&expected.never_rehearsed)));
            }
            let text = if !unknown.is_empty() {
                format!(
                    "expected to take at least {} more ({from}; {})",
                    about(expected.remaining),
                    unknown.join("; ")
                )
            } else if expected.remaining.is_zero() {
                format!("expected to finish any moment ({from})")
            } else {
                format!("expected to finish in {} ({from})", about(expected.remaining))
            };
            CodeSpans(text)
        });
        let slower = outlook
            .slower
            .iter()
            .map(|slower| {
                CodeSpans(format!(
                    "`{}` is slower than any rehearsal: {} so far, longest {}",
                    slower.step_id,
                    figure(slower.running_for),
                    figure(slower.longest)
                ))
            })
            .collect();
        let look_again_at =
            outlook.slower_from.map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        OutlookView { expected, slower, look_again_at }
    }
}

/// Marks each step, branch or item of `steps` that is slower than any rehearsal.
pub(crate) fn mark_slower(steps: &mut [StepView], outlook: &Outlook) {
    for step in steps {
        if let Some(slower) = outlook.slower.iter().find(|slower| slower.step_id == step.id) {
            step.slower =
                Some(format!("slower than any rehearsal (longest {})", figure(slower.longest)));
        }
        if let Some(group) = &mut step.group {
            mark_slower(&mut group.children, outlook);
        }
    }
}
