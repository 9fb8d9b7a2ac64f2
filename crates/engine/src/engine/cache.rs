//! The parsed runbooks a node keeps at hand, bounded: a long-lived server sees every version
//! ever published, and parsing one again is cheap next to keeping them all for ever.

use std::collections::HashMap;
use std::sync::Arc;

use crate::runbook::Runbook;

/// At most this many parsed runbook versions are kept: far more than a node drives at once.
pub(crate) const CAPACITY: usize = 64;

/// Parsed runbooks by name and version; when full, the one used longest ago makes room.
#[derive(Debug, Default)]
pub(crate) struct RunbookCache {
    /// Each runbook with the tick of its last use.
    entries: HashMap<(String, u32), (Arc<Runbook>, u64)>,
    /// Counts uses, to tell which entry was used longest ago.
    tick: u64,
}

impl RunbookCache {
    pub(crate) fn get(&mut self, key: &(String, u32)) -> Option<Arc<Runbook>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(runbook, used)| {
            *used = tick;
            runbook.clone()
        })
    }

    pub(crate) fn insert(&mut self, key: (String, u32), runbook: Arc<Runbook>) {
        self.tick += 1;
        if self.entries.len() >= CAPACITY && !self.entries.contains_key(&key) {
            let oldest =
                self.entries.iter().min_by_key(|(_, (_, used))| *used).map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (runbook, self.tick));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook(name: &str) -> Arc<Runbook> {
        let source = format!("name: {name}\nsteps:\n  - id: nap\n    sleep: 1ms\n");
        Arc::new(crate::runbook::parse(&source).runbook.expect("a valid runbook"))
    }

    #[test]
    fn a_server_that_sees_many_versions_keeps_only_the_recently_used() {
        let mut cache = RunbookCache::default();
        let hot = ("hot".to_owned(), 1);
        cache.insert(hot.clone(), runbook("hot"));
        for version in 1..=1000 {
            cache.insert(("busy".to_owned(), version), runbook("busy"));
            assert!(cache.get(&hot).is_some(), "a runbook in use stays");
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.get(&("busy".to_owned(), 1000)).is_some());
        assert!(cache.get(&("busy".to_owned(), 1)).is_none(), "the oldest made room");
    }
}
