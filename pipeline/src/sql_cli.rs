//! `vigil sql` and `vigil report`: the history from the command line.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::Context;
use vigil_queries::format::{write_result, OutputFormat};
use vigil_queries::report::{ReportFormat, ReportRequest};
use vigil_queries::tables::TABLES;
use vigil_queries::{Catalog, History, QueryConfig};

/// Whether `dir` holds a Vigil history: a commit manifest, the planning ledger, or a table folder.
fn is_history(dir: &Path) -> bool {
    dir.join("_manifest").join("manifest.jsonl").is_file()
        || dir.join("_ledger").is_dir()
        || TABLES.iter().any(|t| dir.join(t.name).is_dir())
}

/// Histories beside `dir` (in its parent folder), closest in name first.
fn histories_beside(dir: &Path) -> Vec<String> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let Ok(entries) = std::fs::read_dir(&parent) else { return Vec::new() };
    let mut found: Vec<(String, String)> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_history(p))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            Some((name, p.display().to_string()))
        })
        .collect();
    found.sort();
    let wanted = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let near = vigil_queries::known::closest(wanted, found.iter().map(|(n, _)| n.as_str()), 3);
    let pick: Vec<String> = if near.is_empty() { found.iter().take(3).map(|(n, _)| n.clone()).collect() } else { near };
    pick.iter().filter_map(|n| found.iter().find(|(m, _)| m == n).map(|(_, p)| p.clone())).collect()
}

/// A command that reads the history needs one: a missing data dir, or one with no history in it,
/// is an error naming the histories beside it (not an empty answer).
pub(crate) fn require_history(data_dir: &Path) -> anyhow::Result<()> {
    let problem = if !data_dir.exists() {
        format!("no data dir {}", data_dir.display())
    } else if !data_dir.is_dir() {
        format!("{} is not a directory", data_dir.display())
    } else if !is_history(data_dir) {
        format!("{} holds no Vigil history (no tables, manifest or ledger)", data_dir.display())
    } else {
        return Ok(());
    };
    let near = histories_beside(data_dir);
    if near.is_empty() {
        anyhow::bail!("{problem}; give --data-dir of a history that `vigil demo`, `replay`, `run` or `serve` wrote")
    }
    anyhow::bail!("{problem}; did you mean --data-dir {}?", near.join(" or "))
}

fn runtime(cfg: &QueryConfig) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = if cfg.threads == 0 { std::thread::available_parallelism().map_or(2, |n| n.get()) } else { cfg.threads };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the query runtime")
}

/// Prints every table with its description, rows, files and columns.
pub(crate) fn print_tables(data_dir: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
    let catalog = Catalog::read(data_dir).context("reading the history catalog")?;
    writeln!(out, "History in {}", data_dir.display())?;
    for t in TABLES {
        let info = catalog.tables.get(t.name);
        let (rows, files) = info.map_or((0, 0), |i| (i.rows, i.files.len()));
        writeln!(out, "\n{} — {}", t.name, t.doc)?;
        writeln!(
            out,
            "  {} rows in {} files{}",
            rows,
            files,
            if t.sort.is_empty() { String::new() } else { format!("; each file sorted by {}", t.sort.join(", ")) }
        )?;
        let width = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
        for c in t.columns {
            writeln!(
                out,
                "  {:width$}  {:16} {}{}",
                c.name,
                c.ty.sql_name(),
                c.doc,
                if c.nullable { " (may be NULL)" } else { "" }
            )?;
        }
        writeln!(out, "  {:width$}  {:16} date partition (YYYY-MM-DD); a filter on it skips whole folders", "date", "VARCHAR")?;
    }
    Ok(())
}

fn print_table_columns(name: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let Some(t) = vigil_queries::tables::table_doc(name) else {
        writeln!(out, "no table {name}; \\d lists them")?;
        return Ok(());
    };
    writeln!(out, "{} — {}", t.name, t.doc)?;
    for c in t.columns {
        writeln!(out, "  {:20} {:16} {}", c.name, c.ty.sql_name(), c.doc)?;
    }
    writeln!(out, "  {:20} {:16} date partition", "date", "VARCHAR")?;
    Ok(())
}

async fn run_one(history: &History, sql: &str, format: OutputFormat, timing: bool) -> anyhow::Result<()> {
    let result = history.sql(sql).await?;
    let mut out = crate::out::stdout();
    write_result(&result, format, &mut out)?;
    out.flush()?;
    if result.truncated {
        eprintln!(
            "({} rows shown: the result was cut off at the row limit; add LIMIT, or raise [query] max_rows / --max-rows)",
            result.rows
        );
    } else if timing {
        eprintln!("({} rows in {:.1} ms)", result.rows, result.elapsed.as_secs_f64() * 1000.0);
    }
    Ok(())
}

const HELP: &str = "End a statement with ; (it may span lines). Commands:
  \\d          list the tables
  \\d TABLE    describe a table
  \\format F   table, csv or json
  \\q          quit (or Ctrl-D)
Only SELECT, WITH, EXPLAIN, SHOW and DESCRIBE run.";

fn history_file() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".vigil_sql_history"))
}

fn interactive(rt: &tokio::runtime::Runtime, history: &History, data_dir: &Path, mut format: OutputFormat) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new().context("starting the prompt")?;
    let file = history_file();
    if let Some(f) = &file {
        let _ = editor.load_history(f);
    }
    eprintln!("vigil sql on {} — \\? for help, \\q to quit", data_dir.display());
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "vigil> " } else { "   ..> " };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            let mut out = crate::out::stdout();
            match (words.next(), words.next()) {
                (Some("\\q"), _) => break,
                (Some("\\d"), None) => print_tables(data_dir, &mut out)?,
                (Some("\\d"), Some(t)) => print_table_columns(t, &mut out)?,
                (Some("\\format"), Some(f)) => match f.parse() {
                    Ok(f) => format = f,
                    Err(e) => eprintln!("{e}"),
                },
                _ => eprintln!("{HELP}"),
            }
            continue;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let sql = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(sql.trim());
        if let Err(e) = rt.block_on(run_one(history, sql.trim().trim_end_matches(';'), format, true)) {
            eprintln!("error: {e:#}");
        }
    }
    if let Some(f) = &file {
        let _ = editor.save_history(f);
    }
    Ok(())
}

/// `vigil sql`.
pub(crate) fn sql(
    data_dir: &Path,
    cfg: &QueryConfig,
    format: OutputFormat,
    tables: bool,
    sql: Option<String>,
) -> anyhow::Result<()> {
    require_history(data_dir)?;
    if tables {
        return print_tables(data_dir, &mut crate::out::stdout());
    }
    let rt = runtime(cfg)?;
    let history = History::open(data_dir, cfg)?;
    match sql {
        Some(sql) => rt.block_on(run_one(&history, &sql, format, false)),
        None if std::io::stdin().is_terminal() => interactive(&rt, &history, data_dir, format),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading SQL from stdin")?;
            let sql = text.trim().trim_end_matches(';');
            anyhow::ensure!(!sql.is_empty(), "no SQL given (as an argument, on stdin, or interactively on a terminal)");
            rt.block_on(run_one(&history, sql, format, false))
        }
    }
}

/// A time from the command line: RFC 3339, epoch milliseconds, or a date (midnight UTC), in the
/// accepted range (1970-01-01 … 9999-12-31).
pub(crate) fn parse_time(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let t = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
        vigil_events::parse_timestamp_str(&format!("{s}T00:00:00Z")).map_err(|e| anyhow::anyhow!("{s}: {e}"))?
    } else {
        vigil_events::parse_timestamp_str(s).map_err(|e| anyhow::anyhow!("{s}: {e}"))?
    };
    vigil_events::check_time(t).map_err(|e| anyhow::anyhow!("{s}: {e}"))
}

/// `vigil report`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    data_dir: &Path,
    cfg: &QueryConfig,
    asset: Option<String>,
    from: Option<String>,
    to: Option<String>,
    format: ReportFormat,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    require_history(data_dir)?;
    let rt = runtime(cfg)?;
    let history = History::open(data_dir, cfg)?;
    let report = rt.block_on(async {
        let from = from.as_deref().map(parse_time).transpose()?;
        let to = to.as_deref().map(parse_time).transpose()?;
        let Some((from, to)) = history.report_period(from, to).await? else {
            anyhow::bail!("the history is empty: give --from and --to");
        };
        anyhow::ensure!(to > from, "--to must be after --from");
        let req = ReportRequest { asset_id: asset, from, to };
        Ok::<_, anyhow::Error>(history.report(&req).await?)
    })?;
    let text = match format {
        ReportFormat::Json => report.to_json() + "\n",
        ReportFormat::Csv => report.to_csv(),
        ReportFormat::Html => report.to_html(),
    };
    match out {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!(
                "vigil report: {} ({} anomalies, {} predictions, {} proposals) written to {}",
                report.title,
                report.summary.anomalies,
                report.summary.predictions,
                report.summary.proposals,
                p.display()
            );
        }
        None => {
            let mut o = crate::out::stdout();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
    }
    Ok(())
}
