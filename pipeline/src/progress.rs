//! Progress on stderr for long work: a line that rewrites itself on a terminal, a line every
//! few seconds otherwise.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reports `counter` out of `total` until `done` is set.
pub fn report(counter: Arc<AtomicU64>, total: u64, unit: &str, done: Arc<AtomicBool>) {
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_line = Instant::now();
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        let n = counter.load(Ordering::Relaxed);
        let pct = if total > 0 { 100.0 * n as f64 / total as f64 } else { 0.0 };
        let line = format!("  {pct:5.1}%  {n}/{total} {unit}  {:.1} s", start.elapsed().as_secs_f64());
        if tty {
            eprint!("\r{line}   ");
            let _ = std::io::stderr().flush();
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
    }
    if tty {
        eprint!("\r{:60}\r", "");
    }
}
