//! Duplicate detection per sensor within an event-time horizon.
//!
//! Input: the id hash and event time of each reading of one sensor, in event-time order.
//! Output: whether the id was already seen within the horizon (a duplicate). The first reading
//! with an id in (event time, source position) order is kept, so the choice does not depend on
//! arrival order. State: the ids of the readings of the last `horizon` milliseconds of event
//! time (bounded by the sensor's rate times the horizon).
//!
//! Derived ids hash the sensor, event time and value, so two readings with the same derived id
//! have the same event time: for them it is enough to remember the ids at the latest event time
//! (readings come in event-time order), which spares the hash set on the hot path.

use std::collections::{HashSet, VecDeque};

use vigil_events::EventTime;

/// Seen ids of one sensor.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Dedupe {
    seen: HashSet<u64, ahash::RandomState>,
    order: VecDeque<(EventTime, u64)>,
    derived_ts: EventTime,
    derived_at_ts: Vec<u64>,
}

impl Dedupe {
    /// Returns `true` when the derived id `id` of a reading at `ts` was already seen. Readings
    /// must come in event-time order.
    pub fn is_duplicate_derived(&mut self, id: u64, ts: EventTime) -> bool {
        if ts != self.derived_ts {
            self.derived_ts = ts;
            self.derived_at_ts.clear();
        } else if self.derived_at_ts.contains(&id) {
            return true;
        }
        self.derived_at_ts.push(id);
        false
    }

    /// Returns `true` when `id` was seen within `horizon_ms` before `ts`; records it otherwise.
    pub fn is_duplicate(&mut self, id: u64, ts: EventTime, horizon_ms: i64) -> bool {
        while let Some(&(t, old)) = self.order.front() {
            if t >= ts.saturating_sub(horizon_ms) {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        if !self.seen.insert(id) {
            return true;
        }
        self.order.push_back((ts, id));
        false
    }

    /// Ids held.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no id is held.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_compared_at_their_time() {
        let mut d = Dedupe::default();
        assert!(!d.is_duplicate_derived(1, 10));
        assert!(!d.is_duplicate_derived(2, 10));
        assert!(d.is_duplicate_derived(1, 10));
        assert!(!d.is_duplicate_derived(1, 11));
    }

    #[test]
    fn duplicates_within_the_horizon_only() {
        let mut d = Dedupe::default();
        assert!(!d.is_duplicate(7, 0, 1000));
        assert!(d.is_duplicate(7, 500, 1000));
        assert!(!d.is_duplicate(8, 900, 1000));
        assert!(!d.is_duplicate(7, 2000, 1000), "forgotten after the horizon");
        assert!(d.len() <= 2);
    }
}
