//! What the crash campaigns share (SQLite in `tests/cli/crash.rs`, several PostgreSQL nodes in
//! `tests/cluster/kills.rs`): seeded randomness, their size from the environment, and the
//! ledger of side effects that only the steps write.

use std::collections::BTreeMap;
use std::path::Path;

/// A small deterministic generator, so that a failure can be replayed from its seed.
#[derive(Debug)]
pub struct Seeded(pub u64);

impl Seeded {
    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// A campaign's setting from the environment (`STEADY_CRASH_KILLS`, say), or its default.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// How many times each line appears in a ledger file: how often each side effect happened.
pub fn ledger(path: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}
