//! Nanoseconds per reading of the novelty detector, with and without its seasonal channel.
//! Run: `cargo run --release -p vigil-operators --example novelty_ns`.
//!
//! 2,000 sensors, interleaved (one hourly window each in turn), twelve weeks of windows; the last
//! eight weeks are timed, when the seasonal channel scores every window.

use std::hint::black_box;
use std::time::Instant;

use vigil_operators::novelty::{Novelty, NoveltyConfig};
use vigil_operators::seasonal::SeasonalConfig;

const SENSORS: usize = 2_000;
const WINDOWS: i64 = 12 * 168;
const TIMED_FROM: i64 = 4 * 168;
const HOUR: i64 = 3_600_000;

fn value(sensor: usize, w: i64, state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    let noise = (*state >> 11) as f64 / (1u64 << 53) as f64;
    let daily = ((w % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
    100.0 * (sensor % 7 + 1) as f64 + 30.0 * daily + 5.0 * noise
}

fn run(cfg: &NoveltyConfig) -> (f64, f64) {
    let mut detectors: Vec<Novelty> = (0..SENSORS).map(|_| Novelty::new(cfg.clone())).collect();
    let mut state = 0x2545_F491_4F6C_DD1D_u64;
    let mut sum = 0.0;
    let mut started = None;
    for w in 0..WINDOWS {
        if w == TIMED_FROM {
            started = Some(Instant::now());
        }
        for (s, d) in detectors.iter_mut().enumerate() {
            let v = value(s, w, &mut state);
            sum += d.observe((w + 1) * HOUR, 1, v, v, v, 0.0, v);
        }
    }
    let elapsed = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let readings = (SENSORS as i64 * (WINDOWS - TIMED_FROM)) as f64;
    (elapsed * 1e9 / readings, black_box(sum))
}

fn main() {
    let with = NoveltyConfig::default();
    let without =
        NoveltyConfig { seasonal: SeasonalConfig { weight: 0.0, ..SeasonalConfig::default() }, ..NoveltyConfig::default() };
    for round in 0..3 {
        let (a, _) = run(&without);
        let (b, _) = run(&with);
        println!("round {round}: novelty without the seasonal channel {a:.1} ns/reading, with it {b:.1} ns/reading");
    }
}
