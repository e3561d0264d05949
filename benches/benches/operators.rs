//! Criterion micro-benchmarks of the operators, in readings per second.
//! Run: `cargo bench -p vigil-benches --bench operators`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::sync::Arc;
use vigil_events::SourcePos;

use vigil_operators::asset_stage::{AssetOutputs, AssetStage, AssetStageConfig};
use vigil_operators::drift::{DriftConfig, DriftDetector};
use vigil_operators::limits::Limits;
use vigil_operators::multivariate::{AssetMahalanobis, MultivariateConfig};
use vigil_operators::robust::{RobustConfig, RobustDetector};
use vigil_operators::sensor_stage::AssetInput;
use vigil_operators::sensor_stage::{SensorOutputs, SensorStage, SensorStageConfig};
use vigil_operators::validate::{ValidateConfig, Validator};
use vigil_operators::window::{SensorWindows, WindowConfig};

const N: usize = 100_000;

fn validate(c: &mut Criterion) {
    let lines = vigil_benches::json_lines(N, 2000);
    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("json_lines", |b| {
        let mut v = Validator::new(ValidateConfig::default(), Box::new(|| 1_800_000_000_000));
        b.iter(|| {
            for (pos, line) in &lines {
                black_box(v.validate_json(line, *pos).is_ok());
            }
        })
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    let mut g = c.benchmark_group("windows");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("one_sensor_1hz", |b| {
        b.iter(|| {
            let mut w = SensorWindows::new(WindowConfig::default());
            let mut out = Vec::new();
            for i in 0..N as i64 {
                let _ = w.insert(i * 1000, SourcePos { source: 0, offset: i as u64 }, (i % 13) as f64);
                if i % 60 == 59 {
                    w.close(Some(i * 1000 - 30_000), &mut out);
                    out.clear();
                }
            }
            black_box(w.panes_held())
        })
    });
    g.finish();
}

fn robust(c: &mut Criterion) {
    let mut g = c.benchmark_group("robust");
    let mut w = vigil_operators::window::SensorWindows::new(WindowConfig::default());
    let mut closed = Vec::new();
    for i in 0..(60 * 1000) as i64 {
        let _ = w.insert(i * 1000, SourcePos::default(), (i % 17) as f64);
    }
    w.close(None, &mut closed);
    let tumbling: Vec<_> = closed.into_iter().filter(|w| w.kind == vigil_events::WindowKind::Tumbling).collect();
    g.throughput(Throughput::Elements(tumbling.len() as u64));
    g.bench_function("windows", |b| {
        b.iter(|| {
            let mut d = RobustDetector::new(RobustConfig::default());
            for w in &tumbling {
                black_box(d.observe(w));
            }
        })
    });
    g.finish();
}

fn sensor_stage(c: &mut Criterion) {
    let mut v = Validator::new(ValidateConfig::default(), Box::new(|| 1_800_000_000_000));
    let readings: Vec<_> = vigil_benches::json_lines(N, 2000).iter().filter_map(|(p, l)| v.validate_json(l, *p).ok()).collect();
    let mut g = c.benchmark_group("sensor_stage");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("2000_sensors", |b| {
        b.iter_batched(
            || readings.clone(),
            |rs| {
                let mut stage = SensorStage::new(SensorStageConfig::default(), Box::new(|| 0));
                let mut out = SensorOutputs::default();
                for chunk in rs.chunks(20_000) {
                    let wm = chunk.last().map_or(0, |r| r.ts) - 30_000;
                    for r in chunk {
                        stage.push(r.clone());
                    }
                    stage.advance(Some(wm), &mut out);
                    out.readings.clear();
                    out.features.clear();
                    out.asset.clear();
                }
                stage.advance(None, &mut out);
                black_box(out.features.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn drift(c: &mut Criterion) {
    let mut w = SensorWindows::new(WindowConfig::default());
    let mut closed = Vec::new();
    for i in 0..(60 * 2000) as i64 {
        let _ = w.insert(i * 1000, SourcePos::default(), ((i * 7919) % 101) as f64 / 10.0 + i as f64 / 36_000.0);
    }
    w.close(None, &mut closed);
    let tumbling: Vec<_> = closed.into_iter().filter(|w| w.kind == vigil_events::WindowKind::Tumbling).collect();
    let mut g = c.benchmark_group("drift");
    g.throughput(Throughput::Elements(tumbling.len() as u64));
    g.bench_function("page_hinkley_and_ks", |b| {
        b.iter(|| {
            let mut d = DriftDetector::new(DriftConfig::default());
            tumbling.iter().filter(|w| d.observe(w).is_some()).count()
        })
    });
    g.finish();
}

fn multivariate(c: &mut Criterion) {
    let vectors: Vec<[f64; 6]> = (0..10_000)
        .map(|i| {
            let t = ((i * 37) % 17) as f64 / 17.0;
            [60.0 + t, 3.0 + 0.1 * t, 400.0 - t, 40.0 + 0.5 * t, 1500.0 + 2.0 * t, 45.0 + ((i * 13) % 7) as f64 / 7.0]
        })
        .collect();
    let mut g = c.benchmark_group("multivariate");
    g.throughput(Throughput::Elements(vectors.len() as u64));
    g.bench_function("asset_windows_6_sensors", |b| {
        b.iter(|| {
            let mut d = AssetMahalanobis::new(MultivariateConfig::default());
            vectors.iter().filter(|v| d.observe(&v[..]).is_some()).count()
        })
    });
    g.finish();
}

fn asset_stage(c: &mut Criterion) {
    // 50 assets x 6 sensors x 2 hours of closed 1-minute windows.
    let mut inputs = Vec::new();
    for m in 0..120i64 {
        for a in 0..50 {
            for s in 0..6 {
                inputs.push(AssetInput::Window {
                    asset_id: Arc::from(format!("asset-{a}")),
                    sensor_id: Arc::from(format!("asset-{a}-{s}")),
                    sensor_type: vigil_events::SensorType::Temperature,
                    start: m * 60_000,
                    end: (m + 1) * 60_000,
                    mean: 60.0 + s as f64 + ((m * 31 + a * 7 + s) % 11) as f64 / 11.0,
                    limits: Limits { low: None, high: Some(110.0) },
                });
            }
        }
    }
    let mut g = c.benchmark_group("asset_stage");
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("windows_of_50_assets", |b| {
        b.iter_batched(
            || inputs.clone(),
            |inputs| {
                let mut stage = AssetStage::new(AssetStageConfig::default());
                let mut out = AssetOutputs::default();
                for (i, x) in inputs.into_iter().enumerate() {
                    stage.push(x);
                    if i % 3000 == 2999 {
                        stage.advance(Some((i as i64 / 300) * 60_000), &mut out);
                    }
                }
                stage.advance(None, &mut out);
                black_box(out.predictions.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, validate, windows, robust, sensor_stage, drift, multivariate, asset_stage);
criterion_main!(benches);
