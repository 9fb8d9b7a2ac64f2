//! Whatever an author or an attacker feeds the parser, it answers with diagnostics, never a
//! panic: arbitrary text, and the shipped runbooks mangled at random.

use proptest::prelude::*;
use steady_engine::parse;

const SHIPPED: &str = include_str!("../../../../runbooks/traffic-shift.yaml");

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
    fn a_mangled_runbook_never_panics(cuts in prop::collection::vec((0..SHIPPED.len(), 0usize..40, "\\PC{0,6}"), 1..6)) {
        let mut source = SHIPPED.to_owned();
        for (at, length, insert) in cuts {
            let mut start = at.min(source.len());
            while !source.is_char_boundary(start) { start -= 1; }
            let mut end = (start + length).min(source.len());
            while !source.is_char_boundary(end) { end -= 1; }
            source.replace_range(start..end, &insert);
        }
        let parsed = parse(&source);
        // A valid result must come with no errors, an invalid one with at least one.
        prop_assert_eq!(parsed.runbook.is_some(), !parsed.has_errors());
    }
}
