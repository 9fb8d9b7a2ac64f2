//! Any text given to the runbook reader: never a panic or a hang, and a runbook is either
//! produced or refused with at least one error; every diagnostic points at a line of the text
//! (counted as YAML counts them: a lone `\r` ends a line too).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let parsed = steady_engine::parse(source);
    if parsed.runbook.is_none() {
        assert!(parsed.has_errors(), "refused without an error: {source:?}");
    }
    for diagnostic in &parsed.diagnostics {
        assert!(steady_engine::source_line(source, diagnostic.at.line).is_some(), "{diagnostic:?}");
    }
});
