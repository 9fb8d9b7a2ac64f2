//! Time as the engine reads it. The engine asks its [`Clock`] for "now" wherever a deadline,
//! a lease or a timestamp is decided, so that a story about a 30-minute gate timeout can move
//! a [`TestClock`] forward instead of waiting. Waiting itself (a `sleep` step, a retry's
//! delay, the lease keeper's tick) stays on tokio's timer.

use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use chrono::SubsecRound;

use crate::run::Timestamp;

/// Where the engine reads the current time: UTC, microseconds, as stored.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> Timestamp;

    /// `duration` from now; the end of time when that overflows.
    fn later(&self, duration: Duration) -> Timestamp {
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|duration| self.now().checked_add_signed(duration))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    }
}

/// The system's clock: what a running Steady uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now().trunc_subsecs(6)
    }
}

/// The system's time moved forward by as much as a test says: for stories about deadlines and
/// escalations of half an hour that must not wait half an hour, while leases, sleeps and
/// everything else keep running in real time.
#[derive(Debug, Default)]
pub struct TestClock {
    ahead: Mutex<chrono::Duration>,
}

impl TestClock {
    /// Moves the clock forward by `by`, for good.
    pub fn advance(&self, by: Duration) {
        let mut ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        *ahead += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        let ahead = *self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        let now = SystemClock.now();
        now.checked_add_signed(ahead).unwrap_or(now)
    }
}

/// Time that passes only when the tokio runtime's clock says so: on a runtime started paused
/// (`start_paused`), which jumps ahead whenever every task waits on a timer, a retry's hour of
/// delay or a gate's half-hour timeout costs nothing. What `steady test` runs cases on.
#[derive(Debug)]
pub struct VirtualClock {
    base: Timestamp,
    start: tokio::time::Instant,
}

impl VirtualClock {
    /// A clock that reads `base` now, and moves with the runtime's clock from here. Must be
    /// made inside a tokio runtime.
    pub fn starting_at(base: Timestamp) -> VirtualClock {
        VirtualClock { base, start: tokio::time::Instant::now() }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Timestamp {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.base.checked_add_signed(elapsed).unwrap_or(self.base).trunc_subsecs(6)
    }
}
