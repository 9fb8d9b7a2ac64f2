#!/usr/bin/env bash
# The speed of `steady test`: 1,000 cases of a 20-step runbook (18 run steps, a check and a
# gate), written into a temporary folder and run by a release build. Prints the summary line
# (cases/s) and the process's CPU time and peak memory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin steady
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import sys
dir = sys.argv[1]
steps = []
for i in range(20):
    if i == 10:
        steps.append(f"  - id: s{i}\n    approval: {{ role: approver }}\n")
    elif i == 5:
        steps.append(f"  - id: s{i}\n    check: \"steps.s4.stdout == 'ok'\"\n")
    else:
        steps.append(f"  - id: s{i}\n    run: [\"echo\", \"{{{{ params.host }}}}\", \"{i}\"]\n    read_only: true\n    timeout: 5s\n")
open(f"{dir}/bench.yaml", "w").write(
    "name: bench\nroles:\n  approver: {}\nparams:\n  host: { type: string, default: db1, pattern: \"^[a-z0-9]+$\" }\nsteps:\n" + "".join(steps))
given = "".join(f"      s{i}: {{ stdout: ok }}\n" for i in range(20) if i not in (5, 10))
cases = "".join(
    f"  - name: case {c}\n    assign: {{ approver: alex }}\n    given:\n{given}      s10: {{ approve: [alex] }}\n    expect: {{ status: succeeded }}\n"
    for c in range(1000))
open(f"{dir}/bench.test.yaml", "w").write("runbook: bench\ncases:\n" + cases)
PY
target="${CARGO_TARGET_DIR:-target}"
/usr/bin/time -f "cpu %U s user + %S s system, peak %M KiB" "$target/release/steady" test "$dir" | tail -1
