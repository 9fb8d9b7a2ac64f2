//! Where each step of a sequence sits and which gate it runs behind, built once when a runbook
//! is parsed: a driver asks both at every step, and searching a runbook of thousands of steps
//! each time made a long run slower the further it got.

use std::collections::HashMap;

use super::Step;

/// The index of one sequence (`steps` or `rollback`) of a runbook.
#[derive(Debug, Clone, Default)]
pub struct SequenceIndex {
    /// Step id → its position in the sequence.
    by_id: HashMap<String, usize>,
    /// For each position, the position of the nearest approval gate before it, if any.
    gate_before: Vec<Option<usize>>,
}

impl SequenceIndex {
    pub(super) fn of(steps: &[Step]) -> SequenceIndex {
        let mut gate = None;
        let mut gate_before = Vec::with_capacity(steps.len());
        for (position, step) in steps.iter().enumerate() {
            gate_before.push(gate);
            if step.is_gate() {
                gate = Some(position);
            }
        }
        let by_id = steps.iter().enumerate().map(|(n, step)| (step.id.clone(), n)).collect();
        SequenceIndex { by_id, gate_before }
    }

    /// Where step `id` sits in `steps`, the sequence this index was built from. Runbooks are
    /// not changed once parsed; should `steps` ever differ from what was indexed, it is
    /// searched instead, so the answer is always right.
    pub fn position(&self, steps: &[Step], id: &str) -> Option<usize> {
        match self.by_id.get(id) {
            Some(&n) if steps.get(n).is_some_and(|step| step.id == id) => Some(n),
            _ => steps.iter().position(|step| step.id == id),
        }
    }

    /// The nearest approval gate before position `position` of `steps`, if any.
    pub fn gate_before<'s>(&self, steps: &'s [Step], position: usize) -> Option<&'s Step> {
        let indexed = self.gate_before.len() == steps.len();
        match self.gate_before.get(position) {
            Some(&gate) if indexed => gate.map(|gate| &steps[gate]),
            _ => steps.get(..position)?.iter().rev().find(|step| step.is_gate()),
        }
    }
}
