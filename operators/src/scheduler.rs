//! Maintenance scheduling policy per asset.
//!
//! Input: the asset's predictions, in order. Output: a proposal (`MaintenanceScheduled` with
//! status `proposed`) when the remaining useful life is under the horizon with enough confidence,
//! or health is under the threshold; and a decision request when the proposal's priority is at or
//! above the level that needs a person. Never two open proposals for one asset: while one is open
//! the asset gets no new proposal.
//!
//! The planning loop feeds back ([`AssetSchedule::on_status`]): a rejection closes the proposal
//! and holds back proposals of the same or lower priority for `reject_cooldown_hours` of event
//! time (the planner said no; asking again at the next prediction would be noise), while a worse
//! one is still proposed; an approval keeps the proposal open until the work is done; a
//! completion closes it. A change to a
//! proposal that is not the open one (replayed after a restart, or late) changes nothing, so the
//! feedback is idempotent.
//!
//! State per asset: the open proposal, a counter, and the hold a rejection left.

use vigil_events::{EventTime, ScheduleStatus, Severity};

use crate::predictor::Prediction;

/// Settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchedulerConfig {
    /// Propose when the RUL is under this many hours.
    pub rul_horizon_hours: f64,
    /// Propose when health is under this.
    pub health_threshold: f64,
    /// Least confidence of a RUL to act on it.
    pub min_confidence: f64,
    /// Proposals of this priority or higher ask a person to decide.
    pub decision_from: Severity,
    /// Hours a person has to decide (at most: the answer is due by the planned start of the
    /// work when that comes sooner).
    pub decision_deadline_hours: f64,
    /// After a rejection, hours of event time in which the asset gets no proposal of the same or
    /// a lower priority.
    pub reject_cooldown_hours: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            rul_horizon_hours: 24.0,
            health_threshold: 0.5,
            min_confidence: 0.5,
            decision_from: Severity::Medium,
            decision_deadline_hours: 4.0,
            reject_cooldown_hours: 24.0,
        }
    }
}

/// A proposal the policy made.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// Sequence number of the proposal for the asset (1-based).
    pub seq: u32,
    /// Time of the proposal.
    pub ts: EventTime,
    /// When the work should happen.
    pub scheduled_for: EventTime,
    /// Priority.
    pub priority: Severity,
    /// Why.
    pub reason: String,
    /// Whether a person must decide.
    pub requires_decision: bool,
    /// Decide before this: `decision_deadline_hours` after the proposal, or the planned start
    /// of the work (`scheduled_for`) when that is sooner — never after it.
    pub deadline: EventTime,
}

/// The id of an asset's `seq`-th proposal.
pub fn proposal_id(asset: &str, seq: u32) -> String {
    format!("{asset}-p{seq}")
}

/// The sequence number in a proposal id made by [`proposal_id`].
pub fn proposal_seq(id: &str) -> Option<u32> {
    id.rsplit_once("-p").and_then(|(_, n)| n.parse().ok())
}

/// A rejection's hold on new proposals.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Hold {
    priority: Severity,
    until: EventTime,
}

/// Per-asset scheduling state.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AssetSchedule {
    open: Option<u32>,
    seq: u32,
    hold: Option<Hold>,
}

impl AssetSchedule {
    /// Whether a proposal is open.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    /// The open proposal's sequence number.
    pub fn open(&self) -> Option<u32> {
        self.open
    }

    /// Takes a status change of proposal `seq` that the planning loop recorded, at event time
    /// `at` (the dataflow's watermark when it arrived). Returns whether it closed the open proposal.
    pub fn on_status(
        &mut self,
        cfg: &SchedulerConfig,
        seq: u32,
        status: ScheduleStatus,
        priority: Severity,
        at: EventTime,
    ) -> bool {
        if self.open != Some(seq) {
            return false;
        }
        match status {
            ScheduleStatus::Rejected => {
                self.open = None;
                self.hold = Some(Hold { priority, until: at.saturating_add((cfg.reject_cooldown_hours * 3_600_000.0) as i64) });
                true
            }
            ScheduleStatus::Completed => {
                self.open = None;
                self.hold = None;
                true
            }
            _ => false,
        }
    }

    /// Applies the policy to a prediction.
    pub fn on_prediction(&mut self, cfg: &SchedulerConfig, p: &Prediction) -> Option<Proposal> {
        if self.open.is_some() {
            return None;
        }
        let rul_trigger = p.rul_hours.filter(|h| *h < cfg.rul_horizon_hours && p.confidence >= cfg.min_confidence);
        let health_trigger = p.health < cfg.health_threshold;
        if rul_trigger.is_none() && !health_trigger {
            return None;
        }
        let priority = match (rul_trigger, p.health) {
            (Some(h), _) if h < 6.0 => Severity::Critical,
            (_, h) if h < 0.2 => Severity::Critical,
            (Some(h), _) if h < 12.0 => Severity::High,
            (_, h) if h < 0.35 => Severity::High,
            (Some(_), _) => Severity::Medium,
            _ => Severity::Low,
        };
        if let Some(hold) = &self.hold {
            if p.ts < hold.until && priority <= hold.priority {
                return None;
            }
            self.hold = None;
        }
        let lead_ms = match rul_trigger {
            Some(h) => (h * 0.5 * 3_600_000.0) as i64,
            None => 24 * 3_600_000,
        };
        let reason = match rul_trigger {
            Some(h) => format!(
                "remaining useful life {h:.1} h is under the {:.0} h horizon; {}",
                cfg.rul_horizon_hours,
                p.reasons.join("; ")
            ),
            None => format!("health {:.2} is under {:.2}; {}", p.health, cfg.health_threshold, p.reasons.join("; ")),
        };
        self.seq += 1;
        self.open = Some(self.seq);
        let scheduled_for = p.ts.saturating_add(lead_ms);
        // An answer after the work's planned start comes too late to plan it.
        let deadline = p.ts.saturating_add((cfg.decision_deadline_hours * 3_600_000.0) as i64).min(scheduled_for);
        Some(Proposal {
            seq: self.seq,
            ts: p.ts,
            scheduled_for,
            priority,
            reason,
            requires_decision: priority >= cfg.decision_from,
            deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(rul: Option<f64>, health: f64) -> Prediction {
        Prediction { ts: 0, health, failure_probability: 0.0, rul_hours: rul, confidence: 0.9, reasons: vec!["r".into()] }
    }

    #[test]
    fn proposes_once_while_open() {
        let cfg = SchedulerConfig::default();
        let mut s = AssetSchedule::default();
        assert!(s.on_prediction(&cfg, &pred(None, 0.9)).is_none());
        let p = s.on_prediction(&cfg, &pred(Some(5.0), 0.8)).unwrap();
        assert_eq!((p.seq, p.priority, p.requires_decision), (1, Severity::Critical, true));
        assert!(s.on_prediction(&cfg, &pred(Some(1.0), 0.1)).is_none(), "never two open proposals");
        assert!(s.on_status(&cfg, 1, ScheduleStatus::Completed, Severity::Critical, 0));
        assert_eq!(s.on_prediction(&cfg, &pred(None, 0.4)).unwrap().seq, 2);
    }

    #[test]
    fn a_rejection_holds_back_equal_proposals_but_not_worse_ones() {
        let cfg = SchedulerConfig::default();
        let mut s = AssetSchedule::default();
        let p = s.on_prediction(&cfg, &pred(Some(20.0), 0.8)).unwrap();
        assert_eq!(p.priority, Severity::Medium);
        // Another proposal's change, or an approval, leaves the open one open.
        assert!(!s.on_status(&cfg, 7, ScheduleStatus::Rejected, p.priority, 0));
        assert!(!s.on_status(&cfg, 1, ScheduleStatus::Scheduled, p.priority, 0));
        assert_eq!(s.open(), Some(1));
        assert!(s.on_status(&cfg, 1, ScheduleStatus::Rejected, p.priority, 1_000));
        // Replayed: nothing more happens.
        assert!(!s.on_status(&cfg, 1, ScheduleStatus::Rejected, p.priority, 1_000));
        let mut same = pred(Some(20.0), 0.8);
        same.ts = 3_600_000;
        assert!(s.on_prediction(&cfg, &same).is_none(), "held back within the cooldown");
        let mut worse = pred(Some(3.0), 0.8);
        worse.ts = 3_600_000;
        assert_eq!(s.on_prediction(&cfg, &worse).unwrap().priority, Severity::Critical);
        assert!(s.on_status(&cfg, 2, ScheduleStatus::Completed, Severity::Critical, 2 * 3_600_000));
        assert_eq!(s.open(), None);
    }

    #[test]
    fn the_hold_ends_after_the_cooldown() {
        let cfg = SchedulerConfig::default();
        let mut s = AssetSchedule::default();
        let p = s.on_prediction(&cfg, &pred(Some(20.0), 0.8)).unwrap();
        s.on_status(&cfg, p.seq, ScheduleStatus::Rejected, p.priority, 0);
        let mut later = pred(Some(20.0), 0.8);
        later.ts = (cfg.reject_cooldown_hours * 3_600_000.0) as i64;
        assert_eq!(s.on_prediction(&cfg, &later).unwrap().seq, 2);
    }

    #[test]
    fn the_answer_is_due_no_later_than_the_planned_work() {
        let cfg = SchedulerConfig::default();
        // RUL from minutes to the horizon: the work is planned at half the RUL, which is sooner
        // than the decision deadline (4 h) whenever the RUL is under 8 h.
        for rul in [0.0, 0.3, 1.0, 2.5, 5.0, 7.9, 8.0, 10.4, 20.0, 23.9] {
            let mut s = AssetSchedule::default();
            let mut p = pred(Some(rul), 0.8);
            p.ts = 1_700_000_000_000;
            let prop = s.on_prediction(&cfg, &p).unwrap();
            assert!(
                prop.deadline <= prop.scheduled_for,
                "RUL {rul} h: answer by {} after the work at {}",
                prop.deadline,
                prop.scheduled_for
            );
            assert!(prop.deadline >= p.ts, "RUL {rul} h");
            let wanted = (p.ts + (cfg.decision_deadline_hours * 3_600_000.0) as i64).min(prop.scheduled_for);
            assert_eq!(prop.deadline, wanted, "RUL {rul} h");
        }
        // Health alone plans the work a day ahead: the usual deadline holds.
        let mut s = AssetSchedule::default();
        let prop = s.on_prediction(&cfg, &pred(None, 0.3)).unwrap();
        assert_eq!(prop.deadline, (cfg.decision_deadline_hours * 3_600_000.0) as i64);
    }

    #[test]
    fn proposal_ids_round_trip() {
        assert_eq!(proposal_seq(&proposal_id("pump-p-0001", 12)), Some(12));
        assert_eq!(proposal_seq("nonsense"), None);
    }

    #[test]
    fn low_confidence_rul_is_ignored() {
        let cfg = SchedulerConfig::default();
        let mut s = AssetSchedule::default();
        let mut p = pred(Some(2.0), 0.9);
        p.confidence = 0.1;
        assert!(s.on_prediction(&cfg, &p).is_none());
    }
}
