//! How complex a statement may be: refused before DataFusion recurses over it.
//!
//! DataFusion plans and optimizes by recursion over the expression and plan trees, so a deep
//! tree (`1+1+…+1` with thousands of terms, hundreds of `UNION ALL` branches, a long `OR`
//! chain) would overflow any fixed stack. Two checks keep every tree within what the query
//! threads' stack holds (`[query] stack_size_mb`):
//!
//! - before parsing, [`check_tokens`] counts the operators and keywords of the text (the parser
//!   builds a long chain of operators as a deep tree without recursing itself, and dropping or
//!   visiting that tree recurses): more than `[query] max_expressions` is refused;
//! - after parsing, [`check_statement`] measures the statement: the nesting of expressions,
//!   sub-queries, set operations (each `UNION`/`EXCEPT`/`INTERSECT` branch one level) and joins
//!   (each relation of a `FROM` one level), against `[query] max_nesting`, and the number of
//!   expressions and relations against `[query] max_expressions`.
//!
//! Input: SQL text, then its parsed statement. Output: `Ok` or [`QueryError::TooComplex`] saying
//! what is over which limit. State: none.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, Select, SetExpr, Statement, TableFactor, ValueWithSpan, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::QueryError;

/// The limits of one statement (from [`crate::QueryConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of expressions, sub-queries, set operations and joins.
    pub max_nesting: usize,
    /// Most operators and keywords in the text, and expressions and relations in the statement.
    pub max_expressions: usize,
    /// Largest literal (bytes): a constant is repeated on every row of a batch, so a literal
    /// may take at most its share of the memory limit once repeated
    /// ([`QueryError::Resources`] past it).
    pub max_literal_bytes: usize,
}

fn too_complex(what: String) -> QueryError {
    QueryError::TooComplex(what)
}

/// Counts the tokens that can each add a level to the parsed tree (operators, keywords,
/// brackets); literals, plain identifiers and commas (flat lists) are free. A text the
/// tokenizer refuses passes, for the parser to report with its position.
pub fn check_tokens(sql: &str, limits: Limits) -> Result<(), QueryError> {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else { return Ok(()) };
    let mut structural = 0usize;
    for t in &tokens {
        let free = match t {
            Token::Whitespace(_)
            | Token::Comma
            | Token::Period
            | Token::SemiColon
            | Token::EOF
            | Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => true,
            Token::Word(w) => w.quote_style.is_some() || w.keyword == Keyword::NoKeyword,
            _ => false,
        };
        if !free {
            structural += 1;
        }
    }
    if structural > limits.max_expressions {
        return Err(too_complex(format!(
            "the statement has {structural} operators and keywords; the limit is {} ([query] max_expressions)",
            limits.max_expressions
        )));
    }
    Ok(())
}

/// Measures the parsed statement against the limits.
pub fn check_statement(statement: &DFStatement, limits: Limits) -> Result<(), QueryError> {
    let mut m = Measure { limits, depth: 0, exprs: 0, query_levels: Vec::new(), select_levels: Vec::new(), error: None };
    let result = match statement {
        DFStatement::Statement(s) => visit_statement(s, &mut m),
        DFStatement::Explain(e) => return check_statement(&e.statement, limits),
        _ => ControlFlow::Continue(()),
    };
    match (result, m.error) {
        (ControlFlow::Break(()), Some(e)) => Err(e),
        _ => Ok(()),
    }
}

fn visit_statement(s: &Statement, m: &mut Measure) -> ControlFlow<()> {
    s.visit(m)
}

struct Measure {
    limits: Limits,
    /// Current nesting.
    depth: usize,
    /// Expressions and relations seen.
    exprs: usize,
    /// What each open query added to `depth`.
    query_levels: Vec<usize>,
    /// What each open `SELECT` added to `depth`.
    select_levels: Vec<usize>,
    error: Option<QueryError>,
}

impl Measure {
    fn enter(&mut self, levels: usize, items: usize) -> ControlFlow<()> {
        self.depth += levels;
        self.exprs += items;
        if self.depth > self.limits.max_nesting {
            self.error = Some(too_complex(format!(
                "the statement nests deeper than {} levels of expressions, sub-queries, set operations and joins ([query] max_nesting)",
                self.limits.max_nesting
            )));
            return ControlFlow::Break(());
        }
        if self.exprs > self.limits.max_expressions {
            self.error = Some(too_complex(format!(
                "the statement has more than {} expressions and relations ([query] max_expressions)",
                self.limits.max_expressions
            )));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self, levels: usize) {
        self.depth = self.depth.saturating_sub(levels);
    }
}

/// How deep the set operations of a query body nest (a chain of `n` `UNION`s is `n` deep),
/// walked without recursion.
fn set_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(body, 0usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        if let SetExpr::SetOperation { left, right, .. } = e {
            stack.push((left, d + 1));
            stack.push((right, d + 1));
        }
    }
    deepest
}

impl Visitor for Measure {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let levels = 1 + set_depth(&query.body);
        self.query_levels.push(levels);
        self.enter(levels, levels)
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        let levels = self.query_levels.pop().unwrap_or(0);
        self.leave(levels);
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        // Relations of a FROM are planned as a left-deep chain of joins.
        let relations: usize = select.from.iter().map(|t| 1 + t.joins.len()).sum();
        self.select_levels.push(relations);
        self.enter(relations, 0)
    }

    fn post_visit_select(&mut self, _select: &Select) -> ControlFlow<()> {
        let levels = self.select_levels.pop().unwrap_or(0);
        self.leave(levels);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<()> {
        self.enter(0, 1)
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<()> {
        let bytes = value.to_string().len();
        if bytes > self.limits.max_literal_bytes {
            self.error = Some(QueryError::Resources(format!(
                "a literal of {} KiB, repeated on each row of a batch, would take more than its share of the query memory limit; the largest literal is {} KiB ([query] memory_limit_mb)",
                bytes >> 10,
                self.limits.max_literal_bytes >> 10
            )));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.enter(1, 1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.leave(1);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    const LIMITS: Limits = Limits { max_nesting: 100, max_expressions: 1000, max_literal_bytes: 1 << 20 };

    fn check(sql: &str) -> Result<(), QueryError> {
        check_tokens(sql, LIMITS)?;
        let mut s = DFParser::parse_sql_with_dialect(sql, &GenericDialect {}).map_err(|e| QueryError::Sql(e.to_string()))?;
        check_statement(&s.pop_front().unwrap(), LIMITS)
    }

    fn sum(n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join("+"))
    }

    #[test]
    fn ordinary_statements_pass() {
        for sql in [
            "SELECT 1",
            "SELECT sensor_id, avg(value) FROM readings WHERE ts > 0 AND sensor_id IN ('a', 'b') GROUP BY 1",
            "WITH a AS (SELECT * FROM anomalies) SELECT severity, count(*) FROM a GROUP BY 1",
            "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3",
            "SELECT * FROM readings r JOIN anomalies a ON r.sensor_id = a.sensor_id JOIN drift d ON d.sensor_id = a.sensor_id",
        ] {
            check(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        check(&sum(90)).unwrap();
        // A long flat list is not deep.
        let list = (0..900).map(|i| format!("'s{i}'")).collect::<Vec<_>>().join(",");
        check(&format!("SELECT * FROM readings WHERE sensor_id IN ({list})")).unwrap();
    }

    #[test]
    fn deep_chains_are_refused() {
        for sql in [
            sum(101),
            sum(2000),
            format!("SELECT 1 WHERE {}", vec!["true"; 150].join(" OR ")),
            vec!["SELECT 1"; 150].join(" UNION ALL "),
            format!("SELECT 1 FROM {}", (0..150).map(|i| format!("readings r{i}")).collect::<Vec<_>>().join(", ")),
            format!("SELECT 1 FROM readings r0 {}", (1..150).map(|i| format!("JOIN readings r{i} ON true ")).collect::<String>()),
        ] {
            match check(&sql) {
                Err(QueryError::TooComplex(_)) => {}
                other => panic!("{}…: expected too complex, got {other:?}", &sql[..60]),
            }
        }
    }
}
