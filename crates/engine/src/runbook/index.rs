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
    /// A branch's id → the position of its group in the sequence and its own among the
    /// group's branches.
    branch_by_id: HashMap<String, (usize, usize)>,
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
        let branch_by_id = steps
            .iter()
            .enumerate()
            .flat_map(|(n, step)| {
                step.branches()
                    .iter()
                    .enumerate()
                    .map(move |(b, branch)| (branch.id.clone(), (n, b)))
            })
            .collect();
        SequenceIndex { by_id, branch_by_id, gate_before }
    }

    /// The step with this id in `steps`, the sequence this index was built from, or among the
    /// branches of its groups; searched like [`SequenceIndex::position`] should `steps` differ.
    pub fn find<'s>(&self, steps: &'s [Step], id: &str) -> Option<&'s Step> {
        if let Some(position) = self.position(steps, id) {
            return steps.get(position);
        }
        let indexed = self.branch_by_id.get(id).and_then(|&(group, branch)| {
            steps.get(group)?.branches().get(branch).filter(|step| step.id == id)
        });
        indexed.or_else(|| steps.iter().flat_map(Step::branches).find(|step| step.id == id))
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

#[cfg(test)]
mod tests {
    use super::SequenceIndex;

    const RUNBOOK: &str = r#"
name: drain
steps:
  - id: check
    run: ["true"]
  - id: drain
    parallel:
      - id: east
        run: ["true"]
      - id: west
        run: ["true"]
  - id: done
    run: ["true"]
rollback:
  - id: undo
    parallel:
      - id: undo_east
        run: ["true"]
      - id: undo_west
        run: ["true"]
"#;

    #[test]
    fn every_step_is_found_by_its_id_with_the_index_or_without_it() {
        let parsed = crate::runbook::parse(RUNBOOK);
        let mut runbook = parsed.runbook.unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
        for _ in 0..2 {
            for id in ["check", "drain", "east", "west", "done", "undo", "undo_east", "undo_west"] {
                assert_eq!(runbook.find_step(id).map(|step| step.id.as_str()), Some(id));
            }
            assert!(runbook.find_step("nowhere").is_none());
            // A runbook built without an index (as tests may) is searched instead.
            runbook.steps_index = SequenceIndex::default();
            runbook.rollback_index = SequenceIndex::default();
        }
    }
}
