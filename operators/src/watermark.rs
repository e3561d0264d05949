//! Watermark of one ordered source (a file, a partition, the simulator of one worker).
//!
//! Input: the event time of each record as it arrives, and the wall clock. Output: the
//! watermark — the greatest event time seen minus the allowed lateness — and whether a record is
//! behind it (`too_late`). A source idle for longer than `idle_timeout_ms` of wall-clock time stops
//! holding windows open: its watermark moves on with the wall clock from the last event time seen,
//! as if time kept passing with no data. State: two integers.

use vigil_events::EventTime;

/// Watermark tracker of one source.
#[derive(Debug, Clone)]
pub struct Watermark {
    lateness_ms: i64,
    idle_timeout_ms: i64,
    max_seen: Option<EventTime>,
    last_activity_wall: i64,
    idle_advance: i64,
}

impl Watermark {
    /// A tracker with the given lateness and idle timeout.
    pub fn new(lateness_ms: i64, idle_timeout_ms: i64, now_wall: i64) -> Self {
        Watermark { lateness_ms, idle_timeout_ms, max_seen: None, last_activity_wall: now_wall, idle_advance: 0 }
    }

    /// The current watermark; `EventTime::MIN` before any record.
    pub fn get(&self) -> EventTime {
        match self.max_seen {
            Some(m) => m.saturating_sub(self.lateness_ms).saturating_add(self.idle_advance),
            None => EventTime::MIN,
        }
    }

    /// Whether a record at `ts` is behind the watermark.
    pub fn is_late(&self, ts: EventTime) -> bool {
        ts < self.get()
    }

    /// Records an accepted record's event time.
    pub fn observe(&mut self, ts: EventTime, now_wall: i64) {
        let wm = self.get();
        self.last_activity_wall = now_wall;
        if self.max_seen.is_none_or(|m| ts > m) {
            self.max_seen = Some(ts);
        }
        // Idle advance is folded into the new maximum so the watermark never goes back.
        if self.idle_advance > 0 {
            self.idle_advance = 0;
            if self.get() < wm {
                self.max_seen = Some(wm + self.lateness_ms);
            }
        }
    }

    /// Lets the watermark move on when the source has been idle longer than the timeout.
    pub fn tick(&mut self, now_wall: i64) {
        let idle = now_wall - self.last_activity_wall;
        if self.max_seen.is_some() && idle > self.idle_timeout_ms {
            // After the timeout, the lateness allowance is used up and event time follows the wall clock.
            self.idle_advance = self.idle_advance.max(self.lateness_ms + (idle - self.idle_timeout_ms));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_trails_the_max_by_the_lateness() {
        let mut w = Watermark::new(30_000, 10_000, 0);
        assert_eq!(w.get(), EventTime::MIN);
        w.observe(100_000, 0);
        w.observe(90_000, 0);
        assert_eq!(w.get(), 70_000);
        assert!(w.is_late(69_999));
        assert!(!w.is_late(70_000));
    }

    #[test]
    fn an_idle_source_does_not_hold_the_watermark() {
        let mut w = Watermark::new(30_000, 10_000, 0);
        w.observe(100_000, 0);
        w.tick(5_000);
        assert_eq!(w.get(), 70_000, "not idle yet");
        w.tick(15_000);
        assert_eq!(w.get(), 105_000, "lateness used up, then wall time");
        w.observe(101_000, 16_000);
        assert!(w.get() >= 105_000, "never goes back");
    }
}
