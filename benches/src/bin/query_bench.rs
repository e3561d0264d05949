//! Times SQL queries through `vigil-queries` (DataFusion) on a history: for each query one
//! warm-up run, then `RUNS` timed runs; prints one JSON line per query with the median, the
//! fastest run and the row count. Used by `benches/sql.sh`, which runs DuckDB on the same files.
//!
//! Usage: `query_bench DATA_DIR QUERIES_FILE [RUNS=5] [THREADS=2]` where QUERIES_FILE holds
//! `-- name` lines each followed by one SQL line (placeholders already filled).

use std::time::Instant;

// The allocator `vigil` itself runs with, so the figures are those of the product.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: query_bench DATA_DIR QUERIES_FILE [RUNS] [THREADS]");
        std::process::exit(2);
    }
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5).max(1);
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let text = match std::fs::read_to_string(&args[2]) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", args[2]);
            std::process::exit(2);
        }
    };
    let mut queries = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(n) = line.strip_prefix("-- ") {
            name = Some(n.trim().to_string());
        } else if !line.trim().is_empty() {
            if let Some(n) = name.take() {
                queries.push((n, line.to_string()));
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(1);
        }
    };
    // VIGIL_QUERY_PUSHDOWN=0 turns filter pushdown off, to compare.
    let pushdown_filters = std::env::var("VIGIL_QUERY_PUSHDOWN").map_or(true, |v| v != "0");
    let cfg = vigil_queries::QueryConfig {
        max_rows: usize::MAX,
        timeout_ms: 600_000,
        threads,
        memory_limit_mb: 8192,
        pushdown_filters,
        ..Default::default()
    };
    let history = match vigil_queries::History::open(std::path::Path::new(&args[1]), &cfg) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    rt.block_on(async {
        for (name, sql) in queries {
            let mut times = Vec::new();
            let mut rows = 0;
            for i in 0..=runs {
                let t = Instant::now();
                match history.sql(&sql).await {
                    Ok(r) => rows = r.rows,
                    Err(e) => {
                        eprintln!("{name}: {e}");
                        std::process::exit(1);
                    }
                }
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{{\"engine\":\"datafusion\",\"query\":\"{name}\",\"median_ms\":{:.2},\"min_ms\":{:.2},\"rows\":{rows}}}",
                times[times.len() / 2],
                times[0]
            );
        }
    });
}
