//! Whatever an author or an attacker feeds the parser, it answers with diagnostics, never a
//! panic: arbitrary text, steps assembled from the language's own keys with values of every
//! shape, and the shipped runbooks (and one with groups and fan-outs, and one with a trigger)
//! mangled at random. Likewise alert payloads: arbitrary bytes and real payloads mangled, read
//! by every source, then handed to the shipped trigger.

use proptest::prelude::*;
use steady_engine::parse;
use steady_engine::runbook::AlertSource;
use steady_engine::trigger;

const SHIPPED: &str = include_str!("../../../../runbooks/traffic-shift.yaml");
const GROUPS: &str = include_str!("../fixtures/valid/parallel-and-fan-out.yaml");
const TRIGGERED: &str = include_str!("../../../../runbooks/postgres-failover.yaml");
const PAYLOADS: [&str; 5] = [
    include_str!("../fixtures/alerts/alertmanager-firing.json"),
    include_str!("../fixtures/alerts/alertmanager-grouped.json"),
    include_str!("../fixtures/alerts/grafana-firing.json"),
    include_str!("../fixtures/alerts/grafana-resolved.json"),
    include_str!("../fixtures/alerts/json-body.json"),
];

/// Reads a body as every source and applies the shipped runbook's triggers to whatever alerts
/// come out: none of it may panic.
fn read_and_apply(body: &[u8]) {
    let runbook = parse(TRIGGERED).runbook.expect("the shipped runbook is valid");
    for source in AlertSource::ALL {
        for alert in trigger::parse_payload(source, body).unwrap_or_default() {
            let _ = trigger::alert_key(&alert);
            for trigger in &runbook.triggers {
                let _ = trigger::resolve(&runbook, trigger, &alert);
            }
        }
    }
}

/// A step's keys, the new ones of groups and fan-outs among them, so that generated steps
/// actually reach the code that reads them.
const KEYS: &str = "(id|run|check|manual|approval|sleep|parallel|for_each|as|concurrency|max_failures|on_failure|when|retries|timeout|idempotent|read_only)";
/// Values of every shape a key could be given: nested branches, lists, mappings, numbers out
/// of range, percentages, templates where expressions go, and references to items.
const VALUES: &str = r#"(\[\]|\{\}|-?[0-9]{1,3}%?|"[0-9]{1,3}%"|abc|params|item|params\.hosts|steps\.[a-z]{1,2}(\.items)?|"\{\{ ?item ?\}\}"|\[a, ?b\]|\{ ?role: ?[a-z]{1,2} ?\}|\n {6,10}- id: [a-z]{1,2}\n {8,12}(run|parallel|for_each|as): ?[a-z\[\]]{0,4})"#;

fn mangled(original: &str, cuts: Vec<(usize, usize, String)>) -> String {
    let mut source = original.to_owned();
    for (at, length, insert) in cuts {
        let mut start = at.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + length).min(source.len());
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        source.replace_range(start..end, &insert);
    }
    source
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(source in "\\PC{0,400}") {
        let _ = parse(&source);
    }

    #[test]
    fn yaml_shaped_text_never_panics(source in "([a-z_]{1,8}: ?(\\{\\{ ?[a-z._]{0,12} ?\\}\\}|[\\[\\]{}\"'|>:*&!-]|[a-z0-9 ]{0,6}){0,4}\n {0,6}(- )?){0,20}") {
        let _ = parse(&source);
    }

    #[test]
    fn steps_of_every_shape_never_panic(steps in prop::collection::vec(prop::collection::vec((KEYS, VALUES), 1..6), 1..5)) {
        let mut source = "name: fuzz\nroles: { a: {} }\nparams:\n  hosts: { type: list, default: [a, b] }\nsteps:\n".to_owned();
        for (index, fields) in steps.iter().enumerate() {
            source.push_str(&format!("  - id: s{index}\n"));
            for (key, value) in fields {
                source.push_str(&format!("    {key}: {value}\n"));
            }
        }
        let parsed = parse(&source);
        prop_assert_eq!(parsed.runbook.is_some(), !parsed.has_errors());
    }

    #[test]
    fn a_mangled_runbook_never_panics(cuts in prop::collection::vec((0..SHIPPED.len(), 0usize..40, "\\PC{0,6}"), 1..6)) {
        let parsed = parse(&mangled(SHIPPED, cuts));
        // A valid result must come with no errors, an invalid one with at least one.
        prop_assert_eq!(parsed.runbook.is_some(), !parsed.has_errors());
    }

    #[test]
    fn a_mangled_runbook_with_groups_and_fan_outs_never_panics(cuts in prop::collection::vec((0..GROUPS.len(), 0usize..40, "(\\PC|\n){0,6}"), 1..6)) {
        let parsed = parse(&mangled(GROUPS, cuts));
        prop_assert_eq!(parsed.runbook.is_some(), !parsed.has_errors());
    }

    #[test]
    fn a_mangled_runbook_with_a_trigger_never_panics(cuts in prop::collection::vec((0..TRIGGERED.len(), 0usize..40, "(\\PC|\n){0,6}"), 1..6)) {
        let parsed = parse(&mangled(TRIGGERED, cuts));
        prop_assert_eq!(parsed.runbook.is_some(), !parsed.has_errors());
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_hook(body in prop::collection::vec(any::<u8>(), 0..600)) {
        read_and_apply(&body);
    }

    #[test]
    fn a_mangled_payload_never_panics(which in 0..PAYLOADS.len(), cuts in prop::collection::vec((0..2500usize, 0usize..40, "[\\PC\"{}\\[\\],:0-9]{0,6}"), 1..6)) {
        read_and_apply(mangled(PAYLOADS[which], cuts).as_bytes());
    }
}
