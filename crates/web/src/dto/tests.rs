use super::{group_progress, plural_of};
use steady_engine::run::{Phase, StepState, StepStatus};

#[test]
fn items_whose_driver_died_are_counted_as_interrupted_not_failed() {
    let source = r#"
name: restart
steps:
  - id: restart
    for_each: "[1, 2, 3, 4, 5]"
    as: host
    max_failures: 2
    run: ["true"]
"#;
    let parsed = steady_engine::parse(source);
    let runbook = parsed.runbook.unwrap_or_else(|| panic!("{:?}", parsed.diagnostics));
    let step = &runbook.steps[0];
    let mut group = StepState::pending("restart", Phase::Main, 0);
    group.status = StepStatus::Interrupted;
    let statuses = [
        StepStatus::Succeeded,
        StepStatus::Succeeded,
        StepStatus::Succeeded,
        StepStatus::Interrupted,
        StepStatus::Failed,
    ];
    let children: Vec<StepState> = statuses
        .iter()
        .enumerate()
        .map(|(n, status)| {
            let id = steady_engine::run::item_id("restart", n);
            let mut child = StepState::child(&id, "restart", Phase::Main, n);
            child.status = *status;
            child
        })
        .collect();
    let children: Vec<&StepState> = children.iter().collect();
    assert_eq!(
        group_progress(step, &group, &children),
        "3 of 5 hosts, 1 failed, 1 interrupted, limit 2"
    );
}

#[test]
fn a_fan_out_name_is_made_plural_only_when_that_reads_right() {
    assert_eq!(plural_of("host"), "hosts");
    assert_eq!(plural_of("item"), "items");
    assert_eq!(plural_of("pod"), "pods");
    for odd in ["i", "ip", "is", "address", "hosts", "DNS"] {
        assert_eq!(plural_of(odd), "items", "{odd}");
    }
}
