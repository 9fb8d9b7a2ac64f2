#!/usr/bin/env python3
"""The driver's own speed, as a whole process: `steady run` of N no-op steps (`run: ["true"]`)
on a fresh SQLite file (`synchronous=FULL`, two durable commits per step), beside a plain shell
loop spawning the same N processes, measured back to back so both see the same machine.

It also measures what this disk charges for one durable commit (a 16 KiB write and
`fdatasync`, about what a commit writes to the WAL), since on a virtual disk that cost moves
from minute to minute and two of them are in every step.

Usage (after `cargo build --release`):

    scripts/bench-driver.py                       # 200 and 1,000 steps, 5 rounds each
    scripts/bench-driver.py --steps 1000 --rounds 3 --binary target/release/steady
    scripts/bench-driver.py --dir /dev/shm        # the database on tmpfs: the CPU path alone
"""

import argparse
import os
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


def steady_run(binary: str, book: Path, folder: Path) -> float:
    db = folder / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
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


def shell_loop(steps: int) -> float:
    started = time.perf_counter()
    # bash, as PERF.md's baseline was measured (dash forks faster: about 0.6 s for 1,000).
    subprocess.run(["bash", "-c", f"for ((i = 0; i < {steps}; i++)); do /bin/true; done"], check=True)
    return time.perf_counter() - started


def sync_latency(folder: Path, samples: int = 200) -> float:
    """The median time of a 16 KiB overwrite and `fdatasync` in `folder`, in milliseconds."""
    path = folder / "sync-probe"
    block = os.urandom(16 * 1024)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, block)
        os.fsync(fd)
        times = []
        for _ in range(samples):
            os.lseek(fd, 0, os.SEEK_SET)
            started = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default="target/release/steady")
    parser.add_argument("--steps", type=int, action="append", help="repeatable; default 200 and 1000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where the database goes (default: a new folder under the current one)")
    args = parser.parse_args()
    if not Path(args.binary).exists():
        raise SystemExit(f"{args.binary} not found: run `cargo build --release` first")
    folder = Path(tempfile.mkdtemp(prefix="steady-bench-", dir=args.dir or "."))
    print(f"database folder: {folder}; durable 16 KiB write there: {sync_latency(folder):.2f} ms (median)")
    for steps in args.steps or [200, 1000]:
        book = folder / f"bench-{steps}.yaml"
        runbook(book, steps)
        ratios, rates = [], []
        for round_ in range(1, args.rounds + 1):
            loop = shell_loop(steps)
            run = steady_run(args.binary, book, folder)
            ratios.append(run / loop)
            rates.append(steps / run)
            print(
                f"{steps:>5} steps, round {round_}: steady run {run:.3f} s = {steps / run:.0f} steps/s "
                f"({run / steps * 1000:.2f} ms a step); shell loop {loop:.3f} s; steady/loop {run / loop:.2f}"
            )
        print(
            f"{steps:>5} steps: median {statistics.median(rates):.0f} steps/s "
            f"(best {max(rates):.0f}), steady/loop median {statistics.median(ratios):.2f} "
            f"(best {min(ratios):.2f})"
        )
    print(f"durable 16 KiB write at the end: {sync_latency(folder):.2f} ms (median)")
    for leftover in folder.iterdir():
        leftover.unlink()
    folder.rmdir()


if __name__ == "__main__":
    main()
