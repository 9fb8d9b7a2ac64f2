#!/usr/bin/env python3
"""The driver's own speed, as a whole process: `steady run` of N no-op steps (`run: ["true"]`)
on a SQLite file (`synchronous=FULL`, two durable commits per step), beside a plain shell loop
spawning the same N processes, measured back to back so both see the same machine. Steady runs
twice a round: on a fresh file, which it first creates and migrates (about 20 ms), and on a
file that exists already, as an operator's does from the second run on.

Beside them runs the floor: a minimal driver in this script that, for each step, makes one
durable SQLite commit (WAL, `synchronous=FULL`, one row), spawns `/bin/true` with
`posix_spawn` and waits for it, then makes a second durable commit, and does nothing else.
No driver that keeps two durable commits a step can beat it on the same disk, and on a virtual
disk what a sync costs moves from minute to minute: the floor shows what the disk allowed in
that very round, and Steady/floor what Steady's own work adds.

Usage (after `cargo build --release`):

    scripts/bench-driver.py                       # 200 and 1,000 steps, 5 rounds each
    scripts/bench-driver.py --steps 1000 --rounds 3 --binary target/release/steady
    scripts/bench-driver.py --dir /dev/shm        # the database on tmpfs: the CPU path alone
    scripts/bench-driver.py --per-step 5000       # one long run: what each step costs, by window

A whole run's rate also carries the fixed costs of its start and of the WAL's first fill, so it
says little about whether the per-step cost grows with the run's length. `--per-step N` answers
that: one `steady run` of N steps on an existing file, then the mean cost of a step in windows
of the run (steps [0, 100), [100, 1000), then each 1,000; the first carries the WAL's first
fill), read from the times the run recorded for its steps (`run_steps.started_at`,
microseconds), and a durable commit's time measured just after, since the disk moves.
"""

import argparse
import datetime
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def runbook(path: Path, steps: int) -> None:
    lines = [f"name: bench-{steps}", "description: no-op steps, for the driver benchmark", "steps:"]
    for n in range(steps):
        lines += [f"  - id: s{n}", '    run: ["true"]']
    path.write_text("\n".join(lines) + "\n")


def steady_run(binary: str, book: Path, folder: Path, existing: Path | None = None) -> float:
    """Seconds for `steady run` of `book` on a fresh database file, or on a copy of `existing`."""
    db = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if existing is not None:
        shutil.copyfile(existing, db)
    started = time.perf_counter()
    done = subprocess.run(
        [binary, "run", str(book), "--db", f"sqlite://{db}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"steady run failed: {done.stderr.decode()[-2000:]}")
    return elapsed


def migrated(binary: str, folder: Path) -> Path:
    """A database file Steady created and migrated, in one file (its WAL checkpointed)."""
    path = folder / "existing.db"
    subprocess.run(
        [binary, "migrate", "--db", f"sqlite://{path}"], check=True, stdout=subprocess.DEVNULL
    )
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return path


def shell_loop(steps: int) -> float:
    started = time.perf_counter()
    # bash, as the baseline (the project's shared PERF.md) was measured (dash forks faster: about 0.6 s for 1,000).
    subprocess.run(["bash", "-c", f"for ((i = 0; i < {steps}; i++)); do /bin/true; done"], check=True)
    return time.perf_counter() - started


def floor(steps: int, folder: Path) -> tuple[float, float]:
    """The least a driver with two durable commits a step can take here: seconds for `steps`
    steps, and the median milliseconds of one durable commit among them."""
    path = folder / "floor.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE steps (n INTEGER PRIMARY KEY, status TEXT NOT NULL)")
    commits = []

    def commit(statement: str, n: int) -> None:
        began = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute(statement, (n,))
        db.execute("COMMIT")
        commits.append(time.perf_counter() - began)

    started = time.perf_counter()
    for n in range(steps):
        commit("INSERT INTO steps VALUES (?, 'running')", n)
        os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)
        commit("UPDATE steps SET status = 'succeeded' WHERE n = ?", n)
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed, statistics.median(commits) * 1000


def step_times(db_path: Path) -> list[tuple[datetime.datetime, datetime.datetime]]:
    """When each step of the run in `db_path` started and finished, in sequence order."""

    def at(text: str) -> datetime.datetime:
        # Steady stores RFC 3339 in UTC with microseconds: `2026-12-02T01:53:16.976698Z`.
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")

    db = sqlite3.connect(db_path)
    rows = db.execute(
        "SELECT started_at, finished_at FROM run_steps WHERE phase = 'main' ORDER BY position"
    ).fetchall()
    db.close()
    return [(at(started), at(finished)) for started, finished in rows]


def windows(steps: int) -> list[tuple[int, int]]:
    """Half-open windows of step positions: [0, 100), [100, 1000), then each 1,000; a
    remainder under 100 steps joins the window before it."""
    bounds = [0, *(b for b in [100, *range(1000, steps, 1000)] if b < steps), steps]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 100:
        del bounds[-2]
    return list(zip(bounds, bounds[1:]))


def per_step(binary: str, steps: int, folder: Path, existing: Path) -> None:
    """One `steady run` of `steps` steps on a copy of `existing`, then the mean milliseconds a
    step took in each window of the run: from the start of its first step to the start of the
    step after its last (the end of the run's last step, for the last window)."""
    book = folder / f"bench-{steps}.yaml"
    runbook(book, steps)
    seconds = steady_run(binary, book, folder, existing)
    times = step_times(folder / "bench.db")
    if len(times) != steps:
        raise SystemExit(f"expected {steps} steps, found {len(times)}")
    _, commit = floor(200, folder)
    print(
        f"{steps} steps in {seconds:.3f} s = {steps / seconds:.0f} steps/s as a whole process "
        f"(a durable commit took {commit:.2f} ms just after, in a 200-step floor)"
    )
    for first, end in windows(steps):
        began = times[first][0]
        ended = times[end][0] if end < steps else times[-1][1]
        mean = (ended - began).total_seconds() / (end - first) * 1000
        print(f"  steps {first:>5} to {end - 1:>5}: {mean:.2f} ms a step")


def bench(binary: str, step_counts: list[int], rounds: int, folder: Path, existing: Path) -> None:
    """Each step count, `rounds` times: the shell loop, the floor and `steady run` on a fresh
    and on an existing file, back to back, then the medians."""
    for steps in step_counts:
        book = folder / f"bench-{steps}.yaml"
        runbook(book, steps)
        fresh, reused = [], []
        for round_ in range(1, rounds + 1):
            loop = shell_loop(steps)
            least, commit = floor(steps, folder)
            run = steady_run(binary, book, folder)
            again = steady_run(binary, book, folder, existing)
            fresh.append((run, loop, least))
            reused.append((again, loop, least))
            print(
                f"{steps:>5} steps, round {round_}: shell loop {loop:.3f} s; "
                f"floor {least:.3f} s = {steps / least:.0f} steps/s (a durable commit {commit:.2f} ms), "
                f"floor/loop {least / loop:.2f}"
            )
            for label, seconds in (("fresh file", run), ("existing file", again)):
                print(
                    f"        steady run, {label}: {seconds:.3f} s = {steps / seconds:.0f} steps/s "
                    f"({seconds / steps * 1000:.2f} ms a step), steady/loop {seconds / loop:.2f}, "
                    f"steady/floor {seconds / least:.2f}"
                )
        floors = [least / loop for _, loop, least in fresh]
        verdict = (
            "; the floor alone is above 2 x the loop in the median round: there the disk, before "
            "any work of a driver's own, leaves no room under 2 x"
            if statistics.median(floors) > 2
            else ""
        )
        print(
            f"{steps:>5} steps, the floor: median {statistics.median(floors):.2f} x the loop "
            f"(best {min(floors):.2f}){verdict}"
        )
        for label, results in (("fresh file", fresh), ("existing file", reused)):
            rates = [steps / run for run, _, _ in results]
            ratios = [run / loop for run, loop, _ in results]
            over_floor = [run / least for run, _, least in results]
            print(
                f"{steps:>5} steps, {label}: median {statistics.median(rates):.0f} steps/s "
                f"(best {max(rates):.0f}), steady/loop median {statistics.median(ratios):.2f} "
                f"(best {min(ratios):.2f}), steady/floor median {statistics.median(over_floor):.2f}"
            )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/steady")
    parser.add_argument("--dir", help="where the database goes (default: a new folder under the current one)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--steps", type=positive, action="append", help="repeatable; default 200 and 1000")
    mode.add_argument(
        "--per-step",
        type=positive,
        metavar="STEPS",
        help="instead: one run of STEPS steps, and the mean cost of a step in [0, 100), "
        "[100, 1000), then each 1,000 steps",
    )
    parser.add_argument("--rounds", type=positive, default=5, help="rounds of each step count (not with --per-step)")
    args = parser.parse_args()
    if not Path(args.binary).exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    folder = Path(tempfile.mkdtemp(prefix="steady-bench-", dir=args.dir or "."))
    print(f"database folder: {folder}")
    try:
        existing = migrated(args.binary, folder)
        if args.per_step is not None:
            per_step(args.binary, args.per_step, folder, existing)
        else:
            bench(args.binary, args.steps or [200, 1000], args.rounds, folder, existing)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
