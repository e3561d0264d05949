//! The read-only guard: which SQL may run against the history.
//!
//! Input: SQL text. Output: the one parsed statement, or [`QueryError::Refused`] naming what was
//! refused. State: none.
//!
//! Allowed: `SELECT` (and set operations, `VALUES`), `WITH`, `EXPLAIN [ANALYZE]` of an allowed
//! statement, `SHOW TABLES`, `SHOW COLUMNS`, `SHOW <setting>` and `DESCRIBE`. Everything else is
//! refused before planning: DDL (`CREATE` of tables, external tables, views, functions, schemas;
//! `DROP`, `ALTER`), DML (`INSERT`, `UPDATE`, `DELETE`, `MERGE`, `TRUNCATE`, `COPY`), session
//! statements (`SET`, `RESET`, transactions, `PREPARE`) and more than one statement at a time.
//! Within a query, a relation must be a table of the history, a CTE, or one of the table
//! functions that read no files (`generate_series`, `range`); a path or URL as a table name is
//! refused. DataFusion's own plan check (`SQLOptions` with DDL, DML and statements off) runs as
//! well, as a second line.

use std::ops::ControlFlow;

use datafusion::error::DataFusionError;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, Statement, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::complexity::Limits;
use crate::QueryError;

/// Table functions that read no files.
const ALLOWED_TABLE_FUNCTIONS: &[&str] = &["generate_series", "range"];

/// Checks that `sql` is exactly one read-only statement.
pub fn check_read_only(sql: &str) -> Result<(), QueryError> {
    parse_read_only(sql, None).map(|_| ())
}

/// Parses `sql`, checks that it is exactly one read-only statement and, with `limits`, that it
/// is not too complex to plan (see [`crate::complexity`]); returns the statement to plan.
pub fn parse_read_only(sql: &str, limits: Option<Limits>) -> Result<DFStatement, QueryError> {
    if let Some(l) = limits {
        crate::complexity::check_tokens(sql, l)?;
    }
    // DataFusion may wrap the parser's error (a diagnostic): its root is what went wrong.
    let mut statements = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| match e.find_root() {
        DataFusionError::SQL(p, _) => parser_error(p, Some(sql)),
        other => QueryError::Sql(other.message().to_string()),
    })?;
    if statements.len() != 1 {
        let n = statements.len();
        return Err(if n == 0 {
            QueryError::Sql("no statement to run".into())
        } else {
            refused(&format!("{n} statements at once (run one statement at a time)"))
        });
    }
    // Exactly one, checked above.
    let Some(statement) = statements.pop_front() else { return Err(QueryError::Sql("no statement to run".into())) };
    // Measured first: the read-only check visits the whole tree.
    if let Some(l) = limits {
        crate::complexity::check_statement(&statement, l)?;
    }
    check_statement(&statement)?;
    Ok(statement)
}

/// A parser error as a sentence: `syntax error at line 1, column 8: expected …, found …`
/// (not sqlparser's `ParserError("…")`). With the text, an error at its end says where the end
/// is.
pub(crate) fn parser_error(e: &ParserError, sql: Option<&str>) -> QueryError {
    let text = match e {
        ParserError::RecursionLimitExceeded => {
            return QueryError::TooComplex("the statement nests brackets or sub-queries too deeply to parse".into())
        }
        ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.as_str(),
    };
    // sqlparser ends a message with " at Line: L, Column: C" when it knows the position.
    let (what, position) = match text.rsplit_once(" at Line: ") {
        Some((what, at)) => match at.split_once(", Column: ") {
            Some((line, column)) => (what, Some((line.trim().to_string(), column.trim().to_string()))),
            None => (text, None),
        },
        None => (text, None),
    };
    let mut what = what.trim().replacen("Expected: ", "expected ", 1).replace(", found: ", ", found ");
    let mut position = position;
    if what.ends_with(", found EOF") {
        what = what.replace(", found EOF", ", found the end of the statement");
        if position.is_none() {
            if let Some(sql) = sql {
                let text = sql.trim_end();
                let line = text.lines().count().max(1);
                let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                position = Some((line.to_string(), column.to_string()));
            }
        }
    }
    let what = match what.chars().next() {
        Some(c) if c.is_uppercase() && !what.starts_with("SQL") => c.to_lowercase().chain(what.chars().skip(1)).collect(),
        _ => what,
    };
    QueryError::Sql(match position {
        Some((line, column)) => format!("syntax error at line {line}, column {column}: {what}"),
        None => format!("syntax error: {what}"),
    })
}

fn refused(what: &str) -> QueryError {
    QueryError::Refused(what.to_string())
}

fn check_statement(statement: &DFStatement) -> Result<(), QueryError> {
    match statement {
        DFStatement::Statement(s) => check_sql_statement(s),
        DFStatement::Explain(e) => check_statement(&e.statement),
        DFStatement::CreateExternalTable(_) => Err(refused("CREATE EXTERNAL TABLE")),
        DFStatement::CopyTo(_) => Err(refused("COPY")),
        DFStatement::Reset(_) => Err(refused("RESET")),
    }
}

fn check_sql_statement(s: &Statement) -> Result<(), QueryError> {
    match s {
        Statement::Query(_) => check_relations(s),
        Statement::Explain { statement, .. } => check_sql_statement(statement),
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. } => check_relations(s),
        other => Err(refused(&statement_kind(other))),
    }
}

/// The leading keywords of a statement, for the error: `CREATE VIEW`, `INSERT`, `SET`, ...
fn statement_kind(s: &Statement) -> String {
    let text = s.to_string();
    let words: Vec<&str> = text.split_whitespace().take(4).collect();
    let upper = |w: &str| w.to_ascii_uppercase();
    let first = words.first().map(|w| upper(w)).unwrap_or_default();
    match first.as_str() {
        // CREATE [OR REPLACE] [TEMPORARY|EXTERNAL|UNIQUE] <kind>
        "CREATE" | "DROP" | "ALTER" => {
            let kind = words
                .iter()
                .skip(1)
                .map(|w| upper(w))
                .find(|w| !matches!(w.as_str(), "OR" | "REPLACE" | "TEMPORARY" | "TEMP" | "EXTERNAL" | "UNIQUE" | "IF"))
                .unwrap_or_default();
            format!("{first} {kind}").trim().to_string()
        }
        "" => "an empty statement".into(),
        _ => first,
    }
}

struct Relations {
    error: Option<QueryError>,
}

impl Visitor for Relations {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } => {
                let f = last_part(name).to_ascii_lowercase();
                if !ALLOWED_TABLE_FUNCTIONS.contains(&f.as_str()) {
                    self.error = Some(refused(&format!("table function {f}() (only generate_series and range)")));
                    return ControlFlow::Break(());
                }
            }
            TableFactor::Function { name, .. } => {
                self.error = Some(refused(&format!("table function {}() (only generate_series and range)", last_part(name))));
                return ControlFlow::Break(());
            }
            TableFactor::TableFunction { .. } => {
                self.error = Some(refused("TABLE(...) in FROM"));
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let name = relation.to_string();
        let lower = name.to_ascii_lowercase();
        let looks_like_file = name.contains('/')
            || name.contains('\\')
            || lower.contains("://")
            || [".parquet", ".csv", ".json", ".jsonl", ".arrow", ".avro", ".txt"]
                .iter()
                .any(|e| lower.ends_with(&format!("{e}'")) || lower.ends_with(e));
        if looks_like_file {
            self.error = Some(refused(&format!("reading {name}: only the tables of the history can be queried")));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

fn last_part(name: &ObjectName) -> String {
    name.to_string().rsplit('.').next().unwrap_or_default().trim_matches('"').to_string()
}

fn check_relations(s: &Statement) -> Result<(), QueryError> {
    let mut v = Relations { error: None };
    let _ = s.visit(&mut v);
    match v.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_what(sql: &str) -> String {
        match check_read_only(sql) {
            Err(QueryError::Refused(w)) => w,
            other => panic!("{sql}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn allows_reads() {
        for sql in [
            "SELECT 1",
            "select count(*) from readings where sensor_id = 'x'",
            "WITH a AS (SELECT * FROM anomalies) SELECT severity, count(*) FROM a GROUP BY 1",
            "EXPLAIN SELECT * FROM readings",
            "EXPLAIN ANALYZE SELECT * FROM readings",
            "SHOW TABLES",
            "SHOW COLUMNS FROM readings",
            "DESCRIBE readings",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT 1 UNION ALL SELECT 2",
            "SELECT * FROM readings r JOIN anomalies a ON r.sensor_id = a.sensor_id",
        ] {
            check_read_only(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    #[test]
    fn refuses_writes_and_session_changes_naming_them() {
        for (sql, what) in [
            ("CREATE TABLE t (x INT)", "CREATE TABLE"),
            ("CREATE TABLE t AS SELECT 1", "CREATE TABLE"),
            ("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/etc'", "CREATE EXTERNAL TABLE"),
            ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE VIEW"),
            ("CREATE FUNCTION f(x INT) RETURNS INT RETURN x", "CREATE FUNCTION"),
            ("CREATE SCHEMA s", "CREATE SCHEMA"),
            ("DROP TABLE readings", "DROP TABLE"),
            ("INSERT INTO readings VALUES (1)", "INSERT"),
            ("UPDATE readings SET value = 0", "UPDATE"),
            ("DELETE FROM readings", "DELETE"),
            ("COPY readings TO '/tmp/x.parquet'", "COPY"),
            ("COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
            ("SET datafusion.execution.batch_size = 1", "SET"),
            ("EXPLAIN INSERT INTO readings VALUES (1)", "INSERT"),
            ("EXPLAIN COPY readings TO '/tmp/x'", "COPY"),
            ("TRUNCATE TABLE readings", "TRUNCATE"),
            ("SELECT 1; SELECT 2", "2 statements at once"),
        ] {
            let w = refused_what(sql);
            assert!(w.starts_with(what), "{sql}: refused {w:?}, expected {what:?}");
        }
    }

    #[test]
    fn refuses_files_and_file_functions() {
        assert!(refused_what("SELECT * FROM '/etc/passwd'").contains("/etc/passwd"));
        assert!(refused_what("SELECT * FROM 'data/readings/x.parquet'").contains("only the tables"));
        assert!(refused_what("SELECT * FROM \"s3://bucket/x\"").contains("only the tables"));
        assert!(refused_what("SELECT * FROM read_parquet('/etc/x.parquet')").starts_with("table function read_parquet"));
        assert!(refused_what("SELECT * FROM read_csv('/etc/passwd')").starts_with("table function read_csv"));
        assert!(refused_what("WITH a AS (SELECT * FROM 'x.csv') SELECT * FROM a").contains("x.csv"));
    }

    #[test]
    fn syntax_errors_are_sql_errors() {
        assert!(matches!(check_read_only("SELEC 1"), Err(QueryError::Sql(_))));
        assert!(matches!(check_read_only(""), Err(QueryError::Sql(_))));
    }

    #[test]
    fn syntax_errors_read_as_sentences_with_the_position() {
        let Err(QueryError::Sql(m)) = check_read_only("SELECT 1 FROM readings WHERE") else { panic!("not a syntax error") };
        assert!(m.starts_with("syntax error at line 1, column "), "{m}");
        assert!(m.contains("expected an expression"), "{m}");
        assert!(!m.contains("ParserError") && !m.contains("Line:"), "{m}");
        let Err(QueryError::Sql(m)) = check_read_only("SELECT 'x") else { panic!("not a syntax error") };
        assert!(m.starts_with("syntax error") && !m.contains("TokenizerError"), "{m}");
    }
}
