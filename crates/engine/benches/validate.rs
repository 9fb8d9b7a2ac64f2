//! Parse + validate + lint of 1,000 generated runbooks of 50 steps each: what `steady
//! validate` and `serve` start-up do with a large runbooks folder. Target: under 1 s in all,
//! at most 20 µs a step, in a release build.
//!
//! Run with `cargo bench -p steady-engine --bench validate`.

use divan::Bencher;

const RUNBOOKS: usize = 1_000;
const STEPS: usize = 50;

fn main() {
    divan::main();
}

/// A runbook that uses every step kind, templates and expressions in every step, in the
/// proportions of the shipped runbooks.
fn generated_runbook(index: usize) -> String {
    let mut source = format!(
        "name: generated-{index}\n\
         title: Generated runbook {index}\n\
         owner: team-bench\n\
         review_every: 90d\n\
         lock: \"bench/{{{{ params.cluster }}}}\"\n\
         roles:\n  approver: {{ description: Signs off }}\n  operator: {{ description: Does the manual work }}\n\
         secrets: [TOKEN]\n\
         params:\n  cluster: {{ type: string, required: true, pattern: \"^[a-z0-9-]+$\" }}\n  \
         limit: {{ type: integer, default: 10 }}\n  mode: {{ type: string, enum: [fast, careful], default: careful }}\n\
         steps:\n"
    );
    for step in 0..STEPS {
        let previous = step.saturating_sub(1);
        let body = match step % 10 {
            0 => "    approval: { role: approver, timeout: 30m, prompt: \"Go on with {{ params.cluster }}?\" }\n".to_owned(),
            1 | 5 => "    run: [\"psql\", \"-h\", \"{{ params.cluster }}-db\", \"-Atc\", \"select 1\"]\n    read_only: true\n    timeout: 15s\n".to_owned(),
            2 | 6 => "    run: pg_ctl promote -D /srv/{{ params.cluster }} && echo done\n    idempotent: true\n    timeout: 60s\n    retries: { count: 3, delay: 5s }\n".to_owned(),
            3 => format!("    check: \"steps.s{previous}.stdout | length <= params.limit\"\n"),
            4 => "    http: { method: POST, url: \"https://hooks.example.com/{{ secrets.TOKEN }}\", json: { text: \"{{ params.cluster }} at {{ run.id }}\" } }\n    timeout: 10s\n    on_failure: continue\n".to_owned(),
            7 => "    manual: { role: operator, instructions: \"Look at the {{ params.cluster }} dashboard.\" }\n".to_owned(),
            8 => format!("    when: \"steps.s{previous}.status == 'succeeded'\"\n    sleep: 5s\n"),
            _ => "    run: [\"true\"]\n    read_only: true\n    timeout: 5s\n    expect: { stdout: \"^$\" }\n".to_owned(),
        };
        source.push_str(&format!("  - id: s{step}\n    name: Step {step}\n{body}"));
    }
    source
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn parse_validate_lint_1000_runbooks_of_50_steps(bencher: Bencher) {
    let sources: Vec<String> = (0..RUNBOOKS).map(generated_runbook).collect();
    let first = steady_engine::parse(&sources[0]);
    assert!(
        first.diagnostics.is_empty(),
        "the generated runbook is valid and clean: {:?}",
        first.diagnostics
    );
    bencher.bench_local(|| {
        for source in &sources {
            divan::black_box(steady_engine::parse(source));
        }
    });
}
