//! The dataflow graph of one worker, shared by bounded replays and streaming runs.
//!
//! Inputs: accepted readings, records rejected at the source, the sensor registry (a
//! differential collection), and the status changes people record in the planning ledger
//! (approved, rejected, completed), which flow back into the stages. The graph: the per-sensor stage (exchanged by sensor), the per-asset
//! stage (exchanged by asset), and one history sink per table. A sink also hands each event to
//! the Kafka output topics when a streaming run has them.
//!
//! The stages and the sinks are shared with the worker loop ([`Graph`]): a streaming run reads
//! the sinks' frontiers to know when a cut is complete, syncs their files, and checkpoints the
//! stages' state.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use differential_dataflow::input::InputSession;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Concat, Input, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};
use timely::worker::Worker;

use vigil_connectors::history::{FileEntry, HistoryRow, TableWriter, WriterConfig};
use vigil_connectors::ConnectorError;
use vigil_events::{
    dataflow_time, AnomalyDetected, DataflowTime, DriftDetected, EventTime, HumanDecisionRequested, Incident, IncidentStatus,
    MaintenancePredicted, MaintenanceScheduled, RejectedReading, SensorReading, WindowFeatures, WindowKind,
};
use vigil_operators::asset_stage::AssetStage;
use vigil_operators::dataflow::{AssetStageExt, SensorStageExt};
use vigil_operators::sensor_stage::{SensorSpec, SensorStage};

use crate::config::VigilConfig;
use crate::outputs::Outputs;
use crate::run::{AnomalyBrief, DriftBrief, IncidentBrief, ProposalBrief, RunStats};

/// Statistics of one worker, shared by its sinks.
pub(crate) type Shared = Rc<RefCell<RunStats>>;

/// A history sink as the worker loop sees it.
pub(crate) trait SinkHandle {
    /// The sink's input frontier (`None`: input complete).
    fn frontier(&self) -> Option<DataflowTime>;
    /// Writes everything received so far into durable staged files; returns the new files.
    fn sync(&self) -> Result<Vec<FileEntry>, ConnectorError>;
}

struct SinkState<R: HistoryRow + Send + 'static> {
    writer: Option<TableWriter<R>>,
    frontier: Option<DataflowTime>,
}

impl<R: HistoryRow + Send + 'static> SinkHandle for RefCell<SinkState<R>> {
    fn frontier(&self) -> Option<DataflowTime> {
        self.borrow().frontier
    }
    fn sync(&self) -> Result<Vec<FileEntry>, ConnectorError> {
        match self.borrow_mut().writer.as_mut() {
            Some(w) => w.sync(),
            None => Ok(Vec::new()),
        }
    }
}

/// One worker's graph and its handles.
pub(crate) struct Graph {
    pub(crate) readings_in: InputHandleVec<DataflowTime, SensorReading>,
    pub(crate) rejected_in: InputHandleVec<DataflowTime, RejectedReading>,
    pub(crate) registry_in: InputSession<DataflowTime, SensorSpec, isize>,
    pub(crate) changes_in: InputHandleVec<DataflowTime, MaintenanceScheduled>,
    pub(crate) probe: ProbeHandle<DataflowTime>,
    pub(crate) sensor: Rc<RefCell<SensorStage>>,
    pub(crate) asset: Rc<RefCell<AssetStage>>,
    pub(crate) sinks: Vec<Rc<dyn SinkHandle>>,
    pub(crate) stats: Shared,
    /// The time the inputs are at.
    pub(crate) time: DataflowTime,
}

impl Graph {
    /// Advances the inputs to watermark `w` (no-op unless it moves them forward).
    pub(crate) fn advance(&mut self, w: EventTime) {
        self.advance_time(dataflow_time(w));
    }

    /// Advances the inputs to dataflow time `t` (a cut advances within one watermark).
    pub(crate) fn advance_time(&mut self, t: DataflowTime) {
        if t > self.time {
            self.time = t;
            self.readings_in.advance_to(t);
            self.rejected_in.advance_to(t);
            self.registry_in.advance_to(t);
            self.registry_in.flush();
            self.changes_in.advance_to(t);
        }
    }

    /// The watermark of the inputs.
    pub(crate) fn watermark(&self) -> EventTime {
        vigil_events::watermark_of(self.time)
    }

    /// Whether every sink has received everything before `t`.
    pub(crate) fn sinks_reached(&self, t: DataflowTime) -> bool {
        self.sinks.iter().all(|s| s.frontier().is_none_or(|f| f >= t))
    }

    /// Closes the inputs (everything in flight then flows out to the sinks); returns the
    /// statistics the sinks keep filling.
    pub(crate) fn close(self) -> Shared {
        let Graph { readings_in, rejected_in, registry_in, changes_in, stats, .. } = self;
        drop((readings_in, rejected_in, registry_in, changes_in));
        stats
    }
}

/// Builds the graph on `worker`. `wcfg` configures the writer of each table (`None`: the table
/// is not written, as in a backtest); `outputs` adds the
/// Kafka output topics.
pub(crate) fn build(
    worker: &mut Worker,
    cfg: &VigilConfig,
    now_ms: fn() -> i64,
    wcfg: impl Fn(&str) -> Option<WriterConfig>,
    outputs: Option<Arc<Outputs>>,
) -> Graph {
    let stats: Shared = Rc::new(RefCell::new(RunStats::default()));
    let mut readings_in: InputHandleVec<DataflowTime, SensorReading> = InputHandleVec::new();
    let mut rejected_in: InputHandleVec<DataflowTime, RejectedReading> = InputHandleVec::new();
    let mut registry_in: InputSession<DataflowTime, SensorSpec, isize> = InputSession::new();
    let mut changes_in: InputHandleVec<DataflowTime, MaintenanceScheduled> = InputHandleVec::new();
    let probe = ProbeHandle::new();
    let sensor = Rc::new(RefCell::new(SensorStage::new(cfg.sensor_stage_config(), Box::new(now_ms))));
    let asset = Rc::new(RefCell::new(AssetStage::new(cfg.asset_stage_config())));
    let mut sinks: Vec<Rc<dyn SinkHandle>> = Vec::new();
    let out = outputs;

    worker.dataflow::<DataflowTime, _, _>(|scope| {
        let readings = scope.input_from(&mut readings_in);
        let rejected_src = scope.input_from(&mut rejected_in);
        let registry = registry_in.to_collection(scope).inner;
        let changes = scope.input_from(&mut changes_in);
        let s = readings.sensor_stage(registry, changes.clone(), sensor.clone());
        let a = s.asset.asset_stage(changes, asset.clone());
        a.predictions.clone().probe_with(&probe);
        s.features.clone().probe_with(&probe);

        sinks.push(history_sink(s.readings, wcfg("readings"), stats.clone(), |_r: &SensorReading, st| st.accepted += 1));
        let o = out.clone();
        sinks.push(history_sink(
            rejected_src.concat(s.rejected),
            wcfg("rejected"),
            stats.clone(),
            move |r: &RejectedReading, st| {
                *st.rejected.entry(r.reason.as_str().to_string()).or_default() += 1;
                if let Some(o) = &o {
                    o.rejected(r);
                }
            },
        ));
        sinks.push(history_sink(s.features, wcfg("features"), stats.clone(), |f: &WindowFeatures, st| match f.kind {
            WindowKind::Tumbling => st.tumbling_windows += 1,
            WindowKind::Hopping => st.hopping_windows += 1,
        }));
        let o = out.clone();
        sinks.push(history_sink(
            s.anomalies.concat(a.anomalies),
            wcfg("anomalies"),
            stats.clone(),
            move |a: &AnomalyDetected, st| {
                if let Some(o) = &o {
                    o.anomaly(a);
                }
                st.anomalies.push(AnomalyBrief {
                    sensor_id: a.sensor_id.to_string(),
                    asset_id: a.asset_id.to_string(),
                    detector: a.detector.clone(),
                    severity: a.severity,
                    ts: a.ts,
                    window_start: a.window_start,
                    score: a.score,
                })
            },
        ));
        let o = out.clone();
        sinks.push(history_sink(s.drift, wcfg("drift"), stats.clone(), move |d: &DriftDetected, st| {
            if let Some(o) = &o {
                o.drift(d);
            }
            st.drift.push(DriftBrief { sensor_id: d.sensor_id.to_string(), statistic: d.statistic.clone(), ts: d.current_end })
        }));
        let o = out.clone();
        sinks.push(history_sink(a.predictions, wcfg("predictions"), stats.clone(), move |p: &MaintenancePredicted, st| {
            if let Some(o) = &o {
                o.prediction(p);
            }
            st.predictions += 1;
            let newer = st.last_predictions.get(&*p.asset_id).is_none_or(|q| q.ts <= p.ts);
            if newer {
                st.last_predictions.insert(
                    p.asset_id.to_string(),
                    crate::run::PredictionBrief {
                        ts: p.ts,
                        health: p.health,
                        rul_hours: p.rul_hours,
                        failure_probability: p.failure_probability,
                        model: format!("{}@{}", p.model, p.model_version),
                    },
                );
            }
        }));
        let o = out.clone();
        sinks.push(history_sink(a.schedule, wcfg("schedule"), stats.clone(), move |p: &MaintenanceScheduled, st| {
            if let Some(o) = &o {
                o.schedule(p);
            }
            st.proposals.push(ProposalBrief { asset_id: p.asset_id.to_string(), ts: p.ts, priority: p.priority })
        }));
        let o = out.clone();
        sinks.push(history_sink(a.incidents, wcfg("incidents"), stats.clone(), move |i: &Incident, st| {
            if let Some(o) = &o {
                o.incident(i);
            }
            st.incident_revisions += 1;
            match i.status {
                IncidentStatus::Open => st.incidents_opened += 1,
                IncidentStatus::Closed => st.incidents.push(IncidentBrief {
                    asset_id: i.asset_id.to_string(),
                    opened_at: i.opened_at,
                    last_evidence_at: i.last_evidence_at,
                    severity: i.severity,
                    suppressed: i.suppressed,
                    sensors: i.sensors.iter().map(|x| x.sensor_id.clone()).collect(),
                }),
                IncidentStatus::Updated => {}
            }
        }));
        let o = out.clone();
        sinks.push(history_sink(a.decisions, wcfg("decision_requests"), stats.clone(), move |d: &HumanDecisionRequested, st| {
            if let Some(o) = &o {
                o.decision(d);
            }
            st.decision_requests += 1
        }));
    });

    Graph { readings_in, rejected_in, registry_in, changes_in, probe, sensor, asset, sinks, stats, time: DataflowTime::MIN }
}

/// Loads the registry into the graph (worker 0 inserts it; every worker flushes).
pub(crate) fn load_registry(graph: &mut Graph, index: usize, registry: &[SensorSpec]) {
    if index == 0 {
        for spec in registry {
            graph.registry_in.insert(spec.clone());
        }
    }
    graph.registry_in.flush();
}

fn history_sink<'s, R>(
    stream: StreamVec<'s, DataflowTime, R>,
    wcfg: Option<WriterConfig>,
    stats: Shared,
    mut observe: impl FnMut(&R, &mut RunStats) + 'static,
) -> Rc<dyn SinkHandle>
where
    R: HistoryRow + Send + 'static,
{
    let state = Rc::new(RefCell::new(SinkState { writer: wcfg.map(TableWriter::<R>::new), frontier: Some(DataflowTime::MIN) }));
    let handle = state.clone();
    stream.sink(Pipeline, R::TABLE, move |(input, frontier)| {
        let mut state = state.borrow_mut();
        input.for_each(|_cap, data| {
            let mut st = stats.borrow_mut();
            for r in data.drain(..) {
                // A run continuing a grown file: the windows and events up to the end of the
                // earlier run are in the history already (its end closed them).
                let after = st.derived_after.map(|(windows, events)| if R::TABLE == "features" { windows } else { events });
                if r.position().is_none() && after.is_some_and(|t| r.partition_time() <= t) {
                    continue;
                }
                observe(&r, &mut st);
                if let Some(w) = state.writer.as_mut() {
                    if let Err(e) = w.push(r) {
                        st.errors.push(e.to_string());
                    }
                }
            }
        });
        state.frontier = frontier.frontier().iter().next().copied();
        if frontier.is_empty() {
            if let Some(w) = state.writer.take() {
                match w.finish() {
                    Ok(files) => stats.borrow_mut().files.extend(files),
                    Err(e) => stats.borrow_mut().errors.push(e.to_string()),
                }
            }
        }
    });
    handle
}
