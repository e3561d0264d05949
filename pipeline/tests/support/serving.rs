//! What the tests that run `vigil serve` (or `vigil demo --serve`) as a child process share:
//! the child itself (killed when dropped), where it listens, reading a chunked HTTP body, and
//! the readings they post.
//!
//! Include it with `#[path = "support/serving.rs"] mod serving;`.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running `vigil serve`: its process and the address it listens on. Dropping it kills the
/// process and reaps it, so a failing test leaves no server behind.
pub struct ServerProcess {
    pub child: Child,
    pub addr: String,
}

impl ServerProcess {
    /// Spawns `cmd` with its stderr piped and waits until it says where it listens.
    pub fn spawn(cmd: &mut Command) -> ServerProcess {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("vigil starts");
        let addr = listening_address(&mut child);
        ServerProcess { child, addr }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Readings of p1 and p2 (one temperature sensor each) as a JSON array, one a minute over
/// `[from_min, to_min)` minutes after minute `t0_min` of the epoch.
pub fn two_sensor_readings(t0_min: i64, from_min: i64, to_min: i64) -> String {
    let rows: Vec<serde_json::Value> = (from_min..to_min)
        .flat_map(|m| {
            ["p1-temp", "p2-temp"].into_iter().map(move |s| {
                serde_json::json!({
                    "sensor_id": s, "asset_id": &s[..2], "sensor_type": "temperature",
                    "value": 40.0 + (m % 7) as f64, "unit": "C", "ts": (t0_min + m) * 60_000,
                })
            })
        })
        .collect();
    serde_json::to_string(&rows).expect("JSON values serialize")
}

/// Reads the child's stderr until `vigil serve: http://ADDR/ ...` and returns `ADDR`; keeps
/// draining stderr afterwards so the server never blocks on a full pipe.
pub fn listening_address(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if let Some(rest) = line.strip_prefix("vigil serve: http://") {
            addr = rest.split('/').next().map(str::to_string);
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    addr.expect("the server did not say where it listens")
}

/// The body of a `Transfer-Encoding: chunked` reply.
pub fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}
