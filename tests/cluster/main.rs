//! Several real `steady serve` processes on one real PostgreSQL database, as a team runs Steady
//! when one machine must not be the single point of failure: runs started on one node are
//! answered on another, a node SIGKILLed while driving a run is replaced by another within the
//! lease, and nothing is done twice; each period of a runbook's `verify` schedule is verified
//! once, by one node. Side effects are counted in ledger files only the steps write.

// Helpers here are only called from tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod kills;
mod nodes;
mod verification;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
pub use steady_testkit::cluster::Cluster;

/// How long a driver's lease lasts in these tests: how soon a dead node's runs move on.
pub const LEASE: Duration = Duration::from_secs(2);

/// A cluster of `size` nodes of this build's `steady`, publishing `runbooks`.
pub fn cluster(name: &str, size: usize, runbooks: &[(&str, &str)]) -> Cluster {
    Cluster::start(Path::new(env!("CARGO_BIN_EXE_steady")), name, size, LEASE, runbooks)
}

/// The same, every node told `serve_args` too.
pub fn cluster_with(
    name: &str,
    size: usize,
    runbooks: &[(&str, &str)],
    serve_args: &[&str],
) -> Cluster {
    let binary = Path::new(env!("CARGO_BIN_EXE_steady"));
    let db = steady_testkit::postgres_database();
    Cluster::start_on(binary, db, name, size, LEASE, runbooks, serve_args)
}

/// The status of one step of a run as the API shows it.
pub fn step_status<'a>(run: &'a Value, step: &str) -> &'a str {
    run["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["id"] == step))
        .and_then(|s| s["status"].as_str())
        .unwrap_or_default()
}
