//! Hostile secret values and output through the masker: never a panic, and no declared secret
//! survives masking or a cut of masked output at any limit.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use steady_engine::secrets::Secrets;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // `secret\u{1}secret\u{1}…\u{2}output`: up to four secrets, then what a step printed.
    let Some((secrets, output)) = text.split_once('\u{2}') else { return };
    let values: Vec<&str> = secrets.split('\u{1}').take(4).collect();
    let names: Vec<String> = (0..values.len()).map(|i| format!("S{i}")).collect();
    let source = format!("name: fuzzed\nsecrets: [{}]\nsteps:\n  - id: nap\n    sleep: 1ms\n", names.join(", "));
    let Some(runbook) = steady_engine::parse(&source).runbook else { return };
    let available: BTreeMap<String, String> =
        names.iter().cloned().zip(values.iter().map(|v| (*v).to_owned())).collect();
    let Ok(secrets) = Secrets::for_runbook(&runbook, &available) else { return };
    let masked = secrets.mask(output);
    let limit = output.len() / 2;
    let (cut, _) = secrets.mask_capture(output.as_bytes(), data.len() % 2 == 0, limit);
    assert!(cut.len() <= limit);
    for value in secrets.values().values() {
        assert!(!masked.contains(value.as_str()), "a secret survived masking");
        assert!(!cut.contains(value.as_str()), "a secret survived a cut");
    }
});
