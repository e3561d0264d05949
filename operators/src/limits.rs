//! Hard limits per sensor type, checked on every reading.
//!
//! Input: each accepted reading of one sensor, in event-time order, and the sensor's operating
//! limits (from its type, or the registry). Output: a [`LimitBreach`] when the value leaves the
//! band, with a severity from how far beyond the limit it is; nothing for the following readings
//! of the same excursion (one event per excursion, not one per reading), until the value is back
//! inside by a hysteresis margin. Immediate: no window wait. State: one flag per sensor.

/// Operating limits of a sensor.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Low limit.
    pub low: Option<f64>,
    /// High limit.
    pub high: Option<f64>,
}

/// A reading outside the limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitBreach {
    /// The limit crossed.
    pub limit: f64,
    /// `high` or `low`.
    pub side: &'static str,
    /// The value.
    pub value: f64,
    /// Excess over the limit relative to the band width (or the limit's magnitude).
    pub score: f64,
}

/// Per-sensor excursion state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct HardLimitDetector {
    in_breach: bool,
}

impl HardLimitDetector {
    /// Checks one reading.
    pub fn observe(&mut self, value: f64, limits: Limits) -> Option<LimitBreach> {
        let band = match (limits.low, limits.high) {
            (Some(l), Some(h)) if h > l => h - l,
            (_, Some(h)) => h.abs().max(1.0),
            (Some(l), None) => l.abs().max(1.0),
            (None, None) => return None,
        };
        let hysteresis = 0.02 * band;
        let breach = match (limits.low, limits.high) {
            (_, Some(h)) if value > h => Some((h, "high", (value - h) / band)),
            (Some(l), _) if value < l => Some((l, "low", (l - value) / band)),
            _ => None,
        };
        match breach {
            Some((limit, side, excess)) => {
                let first = !self.in_breach;
                self.in_breach = true;
                first.then_some(LimitBreach { limit, side, value, score: 1.0 + excess })
            }
            None => {
                let above = limits.high.map_or(f64::INFINITY, |h| h - value);
                let below = limits.low.map_or(f64::INFINITY, |l| value - l);
                let inside_by = above.min(below);
                if inside_by >= hysteresis {
                    self.in_breach = false;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_excursion() {
        let lim = Limits { low: Some(0.0), high: Some(100.0) };
        let mut d = HardLimitDetector::default();
        let values = [50.0, 101.0, 105.0, 99.5, 101.0, 90.0, 120.0, -5.0];
        let hits: Vec<_> = values.iter().map(|v| d.observe(*v, lim).map(|b| b.side)).collect();
        assert_eq!(hits, vec![None, Some("high"), None, None, None, None, Some("high"), None]);
        let mut d = HardLimitDetector::default();
        assert_eq!(d.observe(-5.0, lim).unwrap().side, "low");
    }

    #[test]
    fn no_limits_no_events() {
        let mut d = HardLimitDetector::default();
        assert!(d.observe(1e9, Limits::default()).is_none());
    }
}
