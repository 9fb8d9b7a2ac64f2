//! Hostile parameter values rendered into every shipped runbook's templates and expressions:
//! never a panic or a hang, and a value rendered into a shell command stays one word.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use steady_engine::plan::Plan;
use steady_engine::runbook::Runbook;

fn runbooks() -> &'static [Runbook] {
    static RUNBOOKS: OnceLock<Vec<Runbook>> = OnceLock::new();
    RUNBOOKS.get_or_init(|| {
        let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/../runbooks");
        let mut runbooks = Vec::new();
        for entry in std::fs::read_dir(folder).expect("runbooks folder") {
            let source = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            runbooks
                .push(steady_engine::parse(&source).runbook.expect("shipped runbooks are valid"));
        }
        runbooks
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((&choice, _)) = data.split_first() else { return };
    let runbook = &runbooks()[usize::from(choice) % runbooks().len()];
    // Every parameter gets the hostile text (or a piece of it), as typed in a form.
    let pieces: Vec<&str> = text.split('\u{1}').collect();
    let given: Vec<(String, String)> = runbook
        .params
        .iter()
        .enumerate()
        .map(|(index, param)| (param.name.clone(), pieces[index % pieces.len()].to_owned()))
        .collect();
    let Ok(values) = steady_engine::params::resolve(runbook, &given) else { return };
    let _ = Plan::new(runbook, &values);
});
