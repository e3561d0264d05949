//! Thin timely wrappers around the pure stages.
//!
//! Timestamps are [`DataflowTime`]s: an event-time watermark in milliseconds with a cut number
//! below it. Every record travels at a time whose watermark is no later than its own event time,
//! so an input frontier `F` means no record with event time below `watermark_of(F)` is still to
//! come. Each wrapper stashes its input in its stage, and when the frontier
//! advances asks the stage for everything the new frontier completes, emitting it at the time of
//! the capability it held (the previous frontier), then downgrading to the new frontier.
//!
//! The stages are shared with the caller (`Rc<RefCell<_>>`, both on the worker's thread) so that a
//! streaming run can checkpoint their state at a cut and restore it before the first record.
//!
//! - [`SensorStageExt::sensor_stage`]: readings exchanged by sensor, plus the registry as a
//!   differential collection and the planning loop's status changes (broadcast: an asset's
//!   sensors live on every worker), into the per-sensor stage; six output streams.
//! - [`AssetStageExt::asset_stage`]: asset inputs and status changes, both exchanged by asset,
//!   into the per-asset stage; four output streams.
//!
//! A status change (a [`MaintenanceScheduled`] a person caused: rejected, completed) takes
//! effect at the watermark of its time: the stage first processes everything before that
//! watermark, then applies the change, then goes on. Which records come before it is therefore
//! fixed by its time alone, whatever the arrival order.

use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;

use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Capability;
use timely::dataflow::StreamVec;
use timely::progress::frontier::MutableAntichain;

use vigil_events::{
    stable_hash_str, watermark_of, AnomalyDetected, DriftDetected, EventTime, HumanDecisionRequested, Incident,
    MaintenancePredicted, MaintenanceScheduled, RejectedReading, SensorReading, WindowFeatures,
};

use crate::asset_stage::{AssetOutputs, AssetStage};
use crate::sensor_stage::{AssetInput, SensorOutputs, SensorSpec, SensorStage};

/// The streams the sensor stage produces.
pub struct SensorStreams<'scope> {
    /// Readings kept.
    pub readings: StreamVec<'scope, EventTime, SensorReading>,
    /// Readings rejected by the stage.
    pub rejected: StreamVec<'scope, EventTime, RejectedReading>,
    /// Closed windows.
    pub features: StreamVec<'scope, EventTime, WindowFeatures>,
    /// Hard-limit and robust anomalies.
    pub anomalies: StreamVec<'scope, EventTime, AnomalyDetected>,
    /// Drift.
    pub drift: StreamVec<'scope, EventTime, DriftDetected>,
    /// Inputs of the asset stage.
    pub asset: StreamVec<'scope, EventTime, AssetInput>,
}

/// The streams the asset stage produces.
pub struct AssetStreams<'scope> {
    /// Multivariate anomalies.
    pub anomalies: StreamVec<'scope, EventTime, AnomalyDetected>,
    /// Predictions.
    pub predictions: StreamVec<'scope, EventTime, MaintenancePredicted>,
    /// Proposals.
    pub schedule: StreamVec<'scope, EventTime, MaintenanceScheduled>,
    /// Decision requests.
    pub decisions: StreamVec<'scope, EventTime, HumanDecisionRequested>,
    /// Incident revisions.
    pub incidents: StreamVec<'scope, EventTime, Incident>,
}

fn single(f: &MutableAntichain<EventTime>) -> Option<EventTime> {
    f.frontier().iter().next().copied()
}

/// The least of several frontiers (`None` when all are empty).
fn combined(frontiers: &[MutableAntichain<EventTime>]) -> Option<EventTime> {
    frontiers.iter().filter_map(single).min()
}

/// Status changes held until the frontier passes their time.
struct HeldChanges(Vec<(EventTime, MaintenanceScheduled)>);

impl HeldChanges {
    fn hold(&mut self, t: EventTime, c: MaintenanceScheduled) {
        self.0.push((t, c));
    }

    /// The changes `frontier` completes, in time order (stable: arrival order within a time).
    fn ready(&mut self, frontier: Option<EventTime>) -> Vec<(EventTime, MaintenanceScheduled)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        self.0.sort_by_key(|(t, _)| *t);
        let n = self.0.iter().take_while(|(t, _)| frontier.is_none_or(|f| *t < f)).count();
        self.0.drain(..n).collect()
    }
}

fn downgrade_all(caps: &mut Vec<Capability<EventTime>>, to: Option<EventTime>) {
    match to {
        Some(t) => {
            for c in caps.iter_mut() {
                if *c.time() < t {
                    c.downgrade(&t);
                }
            }
        }
        None => caps.clear(),
    }
}

/// The per-sensor stage as a timely operator.
pub trait SensorStageExt<'scope> {
    /// Runs the per-sensor stage on a stream of accepted readings, a registry collection (the
    /// `inner` stream of a differential collection of [`SensorSpec`]s) and the planning loop's
    /// status changes.
    fn sensor_stage(
        self,
        registry: StreamVec<'scope, EventTime, (SensorSpec, EventTime, isize)>,
        changes: StreamVec<'scope, EventTime, MaintenanceScheduled>,
        stage: Rc<RefCell<SensorStage>>,
    ) -> SensorStreams<'scope>;
}

impl<'scope> SensorStageExt<'scope> for StreamVec<'scope, EventTime, SensorReading> {
    fn sensor_stage(
        self,
        registry: StreamVec<'scope, EventTime, (SensorSpec, EventTime, isize)>,
        changes: StreamVec<'scope, EventTime, MaintenanceScheduled>,
        stage: Rc<RefCell<SensorStage>>,
    ) -> SensorStreams<'scope> {
        let mut builder = OperatorBuilder::new("SensorStage".to_owned(), self.scope());
        let mut readings_in = builder.new_input(self, Exchange::new(|r: &SensorReading| r.sensor_key));
        let mut registry_in =
            builder.new_input(registry, Exchange::new(|u: &(SensorSpec, EventTime, isize)| stable_hash_str(&u.0.sensor_id)));
        let mut changes_in = builder.new_input(changes.broadcast(), timely::dataflow::channels::pact::Pipeline);
        let (o0, readings) = builder.new_output();
        let (o1, rejected) = builder.new_output();
        let (o2, features) = builder.new_output();
        let (o3, anomalies) = builder.new_output();
        let (o4, drift) = builder.new_output();
        let (o5, asset) = builder.new_output();
        let (mut o0, mut o1, mut o2, mut o3, mut o4, mut o5) = (
            OutputBuilder::from(o0),
            OutputBuilder::from(o1),
            OutputBuilder::from(o2),
            OutputBuilder::from(o3),
            OutputBuilder::from(o4),
            OutputBuilder::from(o5),
        );

        builder.build(move |capabilities| {
            let mut caps = capabilities;
            let mut out = SensorOutputs::default();
            let mut held = HeldChanges(Vec::new());
            let mut last: Option<EventTime> = Some(EventTime::MIN);
            move |frontiers| {
                let mut stage = stage.borrow_mut();
                registry_in.for_each(|_cap, data| {
                    for (spec, _t, diff) in data.drain(..) {
                        stage.apply_registry(spec, diff);
                    }
                });
                readings_in.for_each(|_cap, data| {
                    for r in data.drain(..) {
                        stage.push(r);
                    }
                });
                changes_in.for_each(|cap, data| {
                    for c in data.drain(..) {
                        held.hold(cap.least().copied().unwrap_or(EventTime::MIN), c);
                    }
                });
                let frontier = combined(frontiers);
                if frontier == last || caps.is_empty() {
                    return;
                }
                for (t, c) in held.ready(frontier) {
                    stage.advance(Some(watermark_of(t)), &mut out);
                    stage.apply_status(&c);
                }
                stage.advance(frontier.map(watermark_of), &mut out);
                if !out.is_empty() {
                    let (mut h0, mut h1, mut h2, mut h3, mut h4, mut h5) =
                        (o0.activate(), o1.activate(), o2.activate(), o3.activate(), o4.activate(), o5.activate());
                    h0.session(&caps[0]).give_iterator(out.readings.drain(..));
                    h1.session(&caps[1]).give_iterator(out.rejected.drain(..));
                    h2.session(&caps[2]).give_iterator(out.features.drain(..));
                    h3.session(&caps[3]).give_iterator(out.anomalies.drain(..));
                    h4.session(&caps[4]).give_iterator(out.drift.drain(..));
                    h5.session(&caps[5]).give_iterator(out.asset.drain(..));
                }
                downgrade_all(&mut caps, frontier);
                last = frontier;
            }
        });

        SensorStreams { readings, rejected, features, anomalies, drift, asset }
    }
}

/// The per-asset stage as a timely operator.
pub trait AssetStageExt<'scope> {
    /// Runs the per-asset stage on its inputs and the planning loop's status changes.
    fn asset_stage(
        self,
        changes: StreamVec<'scope, EventTime, MaintenanceScheduled>,
        stage: Rc<RefCell<AssetStage>>,
    ) -> AssetStreams<'scope>;
}

impl<'scope> AssetStageExt<'scope> for StreamVec<'scope, EventTime, AssetInput> {
    fn asset_stage(
        self,
        changes: StreamVec<'scope, EventTime, MaintenanceScheduled>,
        stage: Rc<RefCell<AssetStage>>,
    ) -> AssetStreams<'scope> {
        let mut builder = OperatorBuilder::new("AssetStage".to_owned(), self.scope());
        let mut input = builder.new_input(self, Exchange::new(|i: &AssetInput| stable_hash_str(i.asset_id())));
        let mut changes_in = builder.new_input(changes, Exchange::new(|c: &MaintenanceScheduled| stable_hash_str(&c.asset_id)));
        let (o0, anomalies) = builder.new_output();
        let (o1, predictions) = builder.new_output();
        let (o2, schedule) = builder.new_output();
        let (o3, decisions) = builder.new_output();
        let (o4, incidents) = builder.new_output();
        let (mut o0, mut o1, mut o2, mut o3, mut o4) = (
            OutputBuilder::from(o0),
            OutputBuilder::from(o1),
            OutputBuilder::from(o2),
            OutputBuilder::from(o3),
            OutputBuilder::from(o4),
        );

        builder.build(move |capabilities| {
            let mut caps = capabilities;
            let mut out = AssetOutputs::default();
            let mut held = HeldChanges(Vec::new());
            let mut last: Option<EventTime> = Some(EventTime::MIN);
            move |frontiers| {
                let mut stage = stage.borrow_mut();
                input.for_each(|_cap, data| {
                    for i in data.drain(..) {
                        stage.push(i);
                    }
                });
                changes_in.for_each(|cap, data| {
                    for c in data.drain(..) {
                        held.hold(cap.least().copied().unwrap_or(EventTime::MIN), c);
                    }
                });
                let frontier = combined(frontiers);
                if frontier == last || caps.is_empty() {
                    return;
                }
                for (t, c) in held.ready(frontier) {
                    stage.advance(Some(watermark_of(t)), &mut out);
                    stage.apply_status(&c, watermark_of(t));
                }
                stage.advance(frontier.map(watermark_of), &mut out);
                {
                    let (mut h0, mut h1, mut h2, mut h3, mut h4) =
                        (o0.activate(), o1.activate(), o2.activate(), o3.activate(), o4.activate());
                    h0.session(&caps[0]).give_iterator(out.anomalies.drain(..));
                    h1.session(&caps[1]).give_iterator(out.predictions.drain(..));
                    h2.session(&caps[2]).give_iterator(out.schedule.drain(..));
                    h3.session(&caps[3]).give_iterator(out.decisions.drain(..));
                    h4.session(&caps[4]).give_iterator(out.incidents.drain(..));
                }
                downgrade_all(&mut caps, frontier);
                last = frontier;
            }
        });

        AssetStreams { anomalies, predictions, schedule, decisions, incidents }
    }
}
