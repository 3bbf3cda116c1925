//! A faithful subset of the Cloud Logging query language, for `entries:list`.
//!
//! Supported (with the real language's semantics):
//! - comparisons `FIELD OP VALUE` with `=`, `!=`, `>`, `>=`, `<`, `<=` and `:` (has);
//!   `FIELD:*` tests presence;
//! - values quoted (`"..."`, with `\"`, `\\`, `\n`, `\t` escapes) or bare (`403`,
//!   `cloud_run_revision`, `2026-01-01T00:00:00Z`);
//! - value lists `FIELD=(401 OR 403)` and `FIELD:("a" AND "b")`;
//! - `AND`, `OR`, `NOT` (and `-` as NOT), parentheses, implicit AND between adjacent terms and
//!   newlines, `--` comments to the end of the line;
//! - precedence as documented: NOT binds tightest, then **OR, then AND** (so `a AND b OR c` is
//!   `a AND (b OR c)`);
//! - fields as dotted paths into the LogEntry JSON (`resource.labels.service_name`,
//!   `httpRequest.status`, `labels."run.googleapis.com/x"`); a snake_case segment also finds
//!   the camelCase key (`http_request.status`); arrays on the way match if any element does;
//! - the `log_id("run.googleapis.com/requests")` function.
//!
//! Comparison rules: strings compare case-insensitively, `:` on a string is a substring test;
//! numbers (and int64 fields written as strings, like `requestSize`) compare as numbers;
//! `timestamp`/`receiveTimestamp` compare as instants (the value must be RFC 3339);
//! `severity` compares by level (`severity>=WARNING`); `FIELD != V` is `NOT FIELD = V`, so it is
//! true when the field is missing.
//!
//! Everything else (global restrictions such as a bare `"text"`, regular expressions `=~`/`!~`,
//! other functions such as `SEARCH()` or `sample()`, unknown top-level fields, lowercase
//! `and`/`or`) is rejected with a [`FilterError`], never silently matched.

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::Value;

/// The maximum length of a filter, as the real API documents.
pub const MAX_FILTER_CHARS: usize = 20_000;
const MAX_DEPTH: usize = 64;

/// Top-level LogEntry fields (camelCase and snake_case).
const LOG_ENTRY_FIELDS: &[&str] = &[
    "logName",
    "log_name",
    "resource",
    "timestamp",
    "receiveTimestamp",
    "receive_timestamp",
    "severity",
    "insertId",
    "insert_id",
    "httpRequest",
    "http_request",
    "labels",
    "operation",
    "trace",
    "spanId",
    "span_id",
    "traceSampled",
    "trace_sampled",
    "sourceLocation",
    "source_location",
    "split",
    "textPayload",
    "text_payload",
    "jsonPayload",
    "json_payload",
    "protoPayload",
    "proto_payload",
    "errorGroups",
    "error_groups",
    "apphub",
    "apphubDestination",
    "apphub_destination",
    "apphubSource",
    "apphub_source",
    "otel",
    "metadata",
];

/// Why a filter was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterErrorKind {
    /// Not valid Logging query language.
    Syntax,
    /// Valid in the real language, but this fake does not implement it.
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct FilterError {
    pub kind: FilterErrorKind,
    pub message: String,
    pub line: usize,
    pub column: usize,
}

impl FilterError {
    fn render(&self) -> String {
        match self.kind {
            FilterErrorKind::Syntax => {
                format!(
                    "Unparseable filter: {} at line {}, column {}",
                    self.message, self.line, self.column
                )
            }
            FilterErrorKind::Unsupported => format!(
                "Unsupported filter: {} at line {}, column {} (ipd-fakegcp implements a subset of the Logging query language)",
                self.message, self.line, self.column
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Has,
}

#[derive(Debug, Clone, PartialEq)]
enum Values {
    One(String),
    Any(Vec<String>),
    All(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Timestamp,
    Severity,
}

#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    path: Vec<String>,
    op: Op,
    values: Values,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Comparison),
    LogId(String),
}

/// A parsed filter. The empty filter matches every entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Option<Expr>,
}

/// Parses a Logging filter.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_FILTER_CHARS {
        return Err(FilterError {
            kind: FilterErrorKind::Syntax,
            message: format!(
                "the filter is {} characters long; the maximum is {MAX_FILTER_CHARS}",
                chars.len()
            ),
            line: 1,
            column: 1,
        });
    }
    let mut p = Parser {
        s: &chars,
        i: 0,
        depth: 0,
    };
    p.skip_ws();
    if p.at_end() {
        return Ok(Filter { root: None });
    }
    let e = p.parse_and()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.err(
            FilterErrorKind::Syntax,
            format!("unexpected `{}`", p.s[p.i]),
        ));
    }
    Ok(Filter { root: Some(e) })
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
    depth: usize,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn is_value_end(c: char) -> bool {
    c.is_whitespace() || c == '(' || c == ')'
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn err(&self, kind: FilterErrorKind, message: impl Into<String>) -> FilterError {
        self.err_at(self.i, kind, message)
    }

    fn err_at(&self, pos: usize, kind: FilterErrorKind, message: impl Into<String>) -> FilterError {
        let pos = pos.min(self.s.len());
        let before = &self.s[..pos];
        let line = before.iter().filter(|c| **c == '\n').count() + 1;
        let column = pos
            - before
                .iter()
                .rposition(|c| *c == '\n')
                .map(|x| x + 1)
                .unwrap_or(0)
            + 1;
        FilterError {
            kind,
            message: message.into(),
            line,
            column,
        }
    }

    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => self.i += 1,
                Some('-') if self.peek_at(1) == Some('-') => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                _ => return,
            }
        }
    }

    /// A keyword (`AND`, `OR`, `NOT`) at the cursor, followed by a separator.
    fn at_keyword(&self, kw: &str) -> bool {
        let n = kw.chars().count();
        if self.i + n > self.s.len() {
            return false;
        }
        if !self.s[self.i..self.i + n].iter().copied().eq(kw.chars()) {
            return false;
        }
        match self.s.get(self.i + n) {
            None => true,
            Some(c) => c.is_whitespace() || *c == '(' || *c == ')' || *c == '"',
        }
    }

    fn enter(&mut self) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(
                FilterErrorKind::Syntax,
                format!("the filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// and := or { ["AND"] or }
    fn parse_and(&mut self) -> Result<Expr, FilterError> {
        self.enter()?;
        let mut items = vec![self.parse_or()?];
        loop {
            self.skip_ws();
            if self.at_end() || self.peek() == Some(')') {
                break;
            }
            if self.at_keyword("AND") {
                self.i += 3;
            }
            items.push(self.parse_or()?);
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// or := unary { "OR" unary }
    fn parse_or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.parse_unary()?];
        loop {
            self.skip_ws();
            if self.at_keyword("OR") {
                self.i += 2;
                items.push(self.parse_unary()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    /// unary := ("NOT" | "-") unary | primary
    fn parse_unary(&mut self) -> Result<Expr, FilterError> {
        self.skip_ws();
        if self.at_keyword("NOT") {
            self.i += 3;
            self.enter()?;
            let e = self.parse_unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| !c.is_whitespace()) {
            self.i += 1;
            self.enter()?;
            let e = self.parse_unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> Result<Expr, FilterError> {
        self.skip_ws();
        let start = self.i;
        let Some(c) = self.peek() else {
            return Err(self.err(
                FilterErrorKind::Syntax,
                "expected a comparison, found the end of the filter",
            ));
        };
        if c == '(' {
            self.i += 1;
            let e = self.parse_and()?;
            self.skip_ws();
            if self.peek() != Some(')') {
                return Err(self.err(FilterErrorKind::Syntax, "expected `)`"));
            }
            self.i += 1;
            return Ok(e);
        }
        if c == ')' {
            return Err(self.err(FilterErrorKind::Syntax, "unexpected `)`"));
        }
        for kw in ["AND", "OR"] {
            if self.at_keyword(kw) {
                return Err(self.err(FilterErrorKind::Syntax, format!("unexpected `{kw}`")));
            }
        }
        if c == '"' {
            let v = self.parse_quoted()?;
            return Err(self.err_at(
                start,
                FilterErrorKind::Unsupported,
                format!("global restriction \"{v}\" (a value without a field)"),
            ));
        }
        if !(c.is_alphabetic() || c == '_') {
            let word = self.bare_word();
            return Err(self.err_at(
                start,
                FilterErrorKind::Unsupported,
                format!("global restriction `{word}` (a value without a field)"),
            ));
        }
        let path = self.parse_path()?;
        let after_path = self.i;
        self.skip_ws();
        if self.peek() == Some('(') && path.len() == 1 {
            return self.parse_function(&path[0], start);
        }
        let Some(op) = self.parse_op()? else {
            // A bare word with no operator: a global restriction (or lowercase `and`/`or`).
            self.i = after_path;
            let word = path.join(".");
            let hint = if ["and", "or", "not"].contains(&word.as_str()) {
                " (logical operators must be written in capitals)"
            } else {
                ""
            };
            return Err(self.err_at(
                start,
                FilterErrorKind::Unsupported,
                format!("global restriction `{word}` (a value without a field){hint}"),
            ));
        };
        let first = path[0].as_str();
        if !LOG_ENTRY_FIELDS.contains(&first) {
            return Err(self.err_at(
                start,
                FilterErrorKind::Syntax,
                format!("unknown field `{first}` (not a LogEntry field)"),
            ));
        }
        self.skip_ws();
        let values_at = self.i;
        let values = if self.peek() == Some('(') {
            self.parse_value_list()?
        } else {
            Values::One(self.parse_value()?)
        };
        let last = path.last().map(String::as_str).unwrap_or("");
        let kind = if path.len() == 1
            && ["timestamp", "receiveTimestamp", "receive_timestamp"].contains(&last)
        {
            Kind::Timestamp
        } else if path.len() == 1 && last == "severity" {
            Kind::Severity
        } else {
            Kind::Plain
        };
        if kind == Kind::Timestamp && op != Op::Has {
            for v in values.iter() {
                if parse_time(v).is_none() {
                    return Err(self.err_at(
                        values_at,
                        FilterErrorKind::Syntax,
                        format!("invalid timestamp \"{v}\" (expected RFC 3339, e.g. 2026-01-01T00:00:00Z)"),
                    ));
                }
            }
        }
        Ok(Expr::Cmp(Comparison {
            path,
            op,
            values,
            kind,
        }))
    }

    fn bare_word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self.peek() {
            if is_value_end(c) {
                break;
            }
            w.push(c);
            self.i += 1;
        }
        w
    }

    fn parse_path(&mut self) -> Result<Vec<String>, FilterError> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                Some('"') if !segs.is_empty() => segs.push(self.parse_quoted()?),
                Some(c) if is_ident(c) => {
                    let mut s = String::new();
                    while let Some(c) = self.peek() {
                        if !is_ident(c) {
                            break;
                        }
                        s.push(c);
                        self.i += 1;
                    }
                    segs.push(s);
                }
                _ => return Err(self.err(FilterErrorKind::Syntax, "expected a field name")),
            }
            if self.peek() == Some('.') {
                self.i += 1;
            } else {
                return Ok(segs);
            }
        }
    }

    fn parse_op(&mut self) -> Result<Option<Op>, FilterError> {
        let at = self.i;
        let two: String = self.s[self.i..(self.i + 2).min(self.s.len())]
            .iter()
            .collect();
        if two == "=~" || two == "!~" {
            return Err(self.err_at(
                at,
                FilterErrorKind::Unsupported,
                format!("regular expression operator `{two}`"),
            ));
        }
        let (op, n) = match two.as_str() {
            ">=" => (Op::Ge, 2),
            "<=" => (Op::Le, 2),
            "!=" => (Op::Ne, 2),
            _ => match self.peek() {
                Some('=') => (Op::Eq, 1),
                Some('>') => (Op::Gt, 1),
                Some('<') => (Op::Lt, 1),
                Some(':') => (Op::Has, 1),
                _ => return Ok(None),
            },
        };
        self.i += n;
        Ok(Some(op))
    }

    fn parse_function(&mut self, name: &str, start: usize) -> Result<Expr, FilterError> {
        if name != "log_id" {
            return Err(self.err_at(
                start,
                FilterErrorKind::Unsupported,
                format!("function `{name}()`"),
            ));
        }
        self.i += 1; // (
        self.skip_ws();
        let arg = self.parse_value()?;
        self.skip_ws();
        if self.peek() != Some(')') {
            return Err(self.err(
                FilterErrorKind::Syntax,
                "expected `)` after the argument of log_id()",
            ));
        }
        self.i += 1;
        Ok(Expr::LogId(arg))
    }

    fn parse_value_list(&mut self) -> Result<Values, FilterError> {
        self.i += 1; // (
        let mut items = Vec::new();
        let mut conn: Option<&'static str> = None;
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    return Err(self.err(
                        FilterErrorKind::Syntax,
                        "expected `)` to close the value list",
                    ));
                }
                Some(')') => {
                    self.i += 1;
                    break;
                }
                _ => {}
            }
            if !items.is_empty() {
                let found = if self.at_keyword("OR") {
                    "OR"
                } else if self.at_keyword("AND") {
                    "AND"
                } else {
                    // Adjacent values: an implicit AND.
                    ""
                };
                let found = if found.is_empty() { "AND" } else { found };
                if self.at_keyword(found) {
                    self.i += found.len();
                }
                match conn {
                    None => conn = Some(found),
                    Some(c) if c == found => {}
                    Some(_) => {
                        return Err(self.err(
                            FilterErrorKind::Unsupported,
                            "mixing AND and OR inside one value list",
                        ));
                    }
                }
                self.skip_ws();
            }
            if self.at_keyword("NOT") || self.peek() == Some('(') {
                return Err(self.err(
                    FilterErrorKind::Unsupported,
                    "NOT or nested parentheses inside a value list",
                ));
            }
            items.push(self.parse_value()?);
        }
        if items.is_empty() {
            return Err(self.err(FilterErrorKind::Syntax, "empty value list"));
        }
        Ok(match conn {
            Some("AND") => Values::All(items),
            _ => Values::Any(items),
        })
    }

    fn parse_value(&mut self) -> Result<String, FilterError> {
        self.skip_ws();
        match self.peek() {
            Some('"') => self.parse_quoted(),
            None => Err(self.err(
                FilterErrorKind::Syntax,
                "expected a value, found the end of the filter",
            )),
            Some(c) if is_value_end(c) => Err(self.err(
                FilterErrorKind::Syntax,
                format!("expected a value, found `{c}`"),
            )),
            Some(_) => {
                for kw in ["AND", "OR", "NOT"] {
                    if self.at_keyword(kw) {
                        return Err(self.err(
                            FilterErrorKind::Syntax,
                            format!("expected a value, found `{kw}`"),
                        ));
                    }
                }
                Ok(self.bare_word())
            }
        }
    }

    fn parse_quoted(&mut self) -> Result<String, FilterError> {
        let start = self.i;
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(self.err_at(start, FilterErrorKind::Syntax, "unterminated string"));
                }
                Some('"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some('\\') => {
                    self.i += 1;
                    match self.peek() {
                        None => {
                            return Err(self.err_at(
                                start,
                                FilterErrorKind::Syntax,
                                "unterminated string",
                            ));
                        }
                        Some('n') => out.push('\n'),
                        Some('t') => out.push('\t'),
                        Some('r') => out.push('\r'),
                        Some(c) => out.push(c),
                    }
                    self.i += 1;
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

impl Values {
    fn iter(&self) -> impl Iterator<Item = &String> {
        let v: &[String] = match self {
            Values::One(s) => std::slice::from_ref(s),
            Values::Any(v) | Values::All(v) => v,
        };
        v.iter()
    }
}

fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s.trim()).ok()
}

fn severity_rank(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    Some(match s.to_ascii_uppercase().as_str() {
        "DEFAULT" => 0,
        "DEBUG" => 100,
        "INFO" => 200,
        "NOTICE" => 300,
        "WARNING" => 400,
        "ERROR" => 500,
        "CRITICAL" => 600,
        "ALERT" => 700,
        "EMERGENCY" => 800,
        _ => return None,
    })
}

fn snake_to_camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn resolve<'v>(v: &'v Value, path: &[String], out: &mut Vec<&'v Value>) {
    let Some((first, rest)) = path.split_first() else {
        if !v.is_null() {
            out.push(v);
        }
        return;
    };
    match v {
        Value::Object(m) => {
            let next = m.get(first.as_str()).or_else(|| {
                if first.contains('_') {
                    m.get(snake_to_camel(first).as_str())
                } else {
                    None
                }
            });
            if let Some(n) = next {
                resolve(n, rest, out);
            }
        }
        Value::Array(items) => {
            for it in items {
                resolve(it, path, out);
            }
        }
        _ => {}
    }
}

fn ordering_holds(op: Op, o: Ordering) -> bool {
    match op {
        Op::Eq | Op::Has => o == Ordering::Equal,
        Op::Ne => o != Ordering::Equal,
        Op::Gt => o == Ordering::Greater,
        Op::Ge => o != Ordering::Less,
        Op::Lt => o == Ordering::Less,
        Op::Le => o != Ordering::Greater,
    }
}

fn as_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn compare_value(v: &Value, op: Op, lit: &str, kind: Kind) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|x| compare_value(x, op, lit, kind)),
        Value::Null => false,
        Value::Object(m) => op == Op::Has && m.values().any(|x| compare_value(x, op, lit, kind)),
        Value::Bool(b) => {
            let l = lit.trim().to_ascii_lowercase();
            match l.as_str() {
                "true" | "false" => matches!(op, Op::Eq | Op::Has) && (l == "true") == *b,
                _ => false,
            }
        }
        Value::Number(n) => {
            let Some(x) = n.as_f64() else { return false };
            if kind == Kind::Severity {
                return severity_rank(lit).is_some_and(|r| {
                    x.partial_cmp(&(r as f64))
                        .is_some_and(|o| ordering_holds(op, o))
                });
            }
            match as_number(lit) {
                Some(y) => x.partial_cmp(&y).is_some_and(|o| ordering_holds(op, o)),
                None => compare_strings(&n.to_string(), op, lit),
            }
        }
        Value::String(s) => {
            if kind == Kind::Timestamp && op != Op::Has {
                return match (parse_time(s), parse_time(lit)) {
                    (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
                    _ => false,
                };
            }
            if kind == Kind::Severity && op != Op::Has {
                return match (severity_rank(s), severity_rank(lit)) {
                    (Some(a), Some(b)) => ordering_holds(op, a.cmp(&b)),
                    _ => compare_strings(s, op, lit),
                };
            }
            if op != Op::Has
                && let (Some(a), Some(b)) = (as_number(s), as_number(lit))
            {
                return a.partial_cmp(&b).is_some_and(|o| ordering_holds(op, o));
            }
            compare_strings(s, op, lit)
        }
    }
}

fn compare_strings(s: &str, op: Op, lit: &str) -> bool {
    let a = s.to_lowercase();
    let b = lit.to_lowercase();
    if op == Op::Has {
        return a.contains(&b);
    }
    ordering_holds(op, a.cmp(&b))
}

impl Comparison {
    fn matches(&self, entry: &Value) -> bool {
        let mut found = Vec::new();
        resolve(entry, &self.path, &mut found);
        let one = |op: Op, lit: &str| -> bool {
            if op == Op::Has && lit == "*" {
                return !found.is_empty();
            }
            found.iter().any(|v| compare_value(v, op, lit, self.kind))
        };
        let (op, negate) = if self.op == Op::Ne {
            (Op::Eq, true)
        } else {
            (self.op, false)
        };
        let hit = match &self.values {
            Values::One(l) => one(op, l),
            Values::Any(ls) => ls.iter().any(|l| one(op, l)),
            Values::All(ls) => ls.iter().all(|l| one(op, l)),
        };
        hit != negate
    }
}

impl Expr {
    fn matches(&self, entry: &Value) -> bool {
        match self {
            Expr::And(v) => v.iter().all(|e| e.matches(entry)),
            Expr::Or(v) => v.iter().any(|e| e.matches(entry)),
            Expr::Not(e) => !e.matches(entry),
            Expr::Cmp(c) => c.matches(entry),
            Expr::LogId(id) => {
                let encoded = id.replace('/', "%2F");
                entry
                    .get("logName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| {
                        n.rsplit_once("/logs/")
                            .is_some_and(|(_, log)| log == encoded || log == id.as_str())
                    })
            }
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Comparison)) {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter_mut().for_each(|e| e.visit_mut(f)),
            Expr::Not(e) => e.visit_mut(f),
            Expr::Cmp(c) => f(c),
            Expr::LogId(_) => {}
        }
    }
}

impl Filter {
    /// True when `entry` (a LogEntry as JSON) satisfies the filter.
    pub fn matches(&self, entry: &Value) -> bool {
        self.root.as_ref().is_none_or(|e| e.matches(entry))
    }

    /// The API translates a project number in `logName` to the project ID entries carry.
    pub fn translate_project_number(&mut self, number: &str, project_id: &str) {
        let from = format!("projects/{number}/");
        let to = format!("projects/{project_id}/");
        if let Some(root) = &mut self.root {
            root.visit_mut(&mut |c| {
                if c.path.len() == 1 && (c.path[0] == "logName" || c.path[0] == "log_name") {
                    let fix = |s: &mut String| {
                        if s.starts_with(&from) {
                            *s = format!("{to}{}", &s[from.len()..]);
                        }
                    };
                    match &mut c.values {
                        Values::One(s) => fix(s),
                        Values::Any(v) | Values::All(v) => v.iter_mut().for_each(fix),
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        serde_json::from_str(include_str!(
            "../../ipd-model/testdata/cloud-run-request-log-403-unauthenticated.json"
        ))
        .unwrap_or(Value::Null)
    }

    fn m(f: &str) -> bool {
        match parse(f) {
            Ok(p) => p.matches(&entry()),
            Err(e) => panic!("{f}: {e}"),
        }
    }

    #[test]
    fn the_doctor_filter_matches() {
        let f = r#"resource.type="cloud_run_revision"
resource.labels.service_name="logineventmanagerhttp"
logName="projects/mybazaar-c4881/logs/run.googleapis.com%2Frequests"
httpRequest.status=403
timestamp>="2025-10-21T00:00:00Z""#;
        assert!(m(f));
        assert!(!m(&f.replace("403", "401")));
        assert!(!m(&f.replace("2025-10-21T00", "2025-10-22T00")));
    }

    #[test]
    fn operators() {
        assert!(m("httpRequest.status>=400"));
        assert!(m("httpRequest.status > 402 AND httpRequest.status < 404"));
        assert!(!m("httpRequest.status<=402"));
        assert!(m("httpRequest.status!=401"));
        assert!(m("textPayload:\"NOT AUTHENTICATED\""));
        assert!(m("textPayload:authenticated"));
        assert!(m("httpRequest.requestSize>700"));
        assert!(m("httpRequest.requestSize=733"));
        assert!(m("severity>=WARNING"));
        assert!(!m("severity>=ERROR"));
        assert!(m("severity=warning"));
        assert!(m("traceSampled=true"));
        assert!(m("resource.labels:*"));
        assert!(!m("jsonPayload:*"));
        assert!(m("jsonPayload.missing!=\"x\""));
        assert!(!m("jsonPayload.missing=\"x\""));
        assert!(m("http_request.status=403"));
        assert!(m("labels.\"goog-managed-by\"=cloudfunctions"));
        assert!(m("labels.goog-managed-by=cloudfunctions"));
        assert!(m("log_id(\"run.googleapis.com/requests\")"));
        assert!(!m("log_id(\"run.googleapis.com/stdout\")"));
        assert!(m("timestamp<\"2025-10-21T05:06:03.2Z\""));
        assert!(m("timestamp=\"2025-10-21T07:06:03.137890+02:00\""));
    }

    #[test]
    fn value_lists_and_precedence() {
        assert!(m("httpRequest.status=(401 OR 403)"));
        assert!(!m("httpRequest.status=(401 OR 404)"));
        assert!(m("textPayload:(\"request\" AND \"authenticated\")"));
        assert!(m("textPayload:(\"request\" \"authenticated\")"));
        // OR binds tighter than AND: a AND (b OR c).
        assert!(m(
            "httpRequest.status=403 AND severity=ERROR OR severity=WARNING"
        ));
        assert!(!m(
            "httpRequest.status=401 AND severity=ERROR OR severity=WARNING"
        ));
        assert!(m("NOT httpRequest.status=401"));
        assert!(m("-httpRequest.status=401"));
        assert!(!m("NOT (httpRequest.status=403 OR severity=ERROR)"));
        assert!(m(
            "(httpRequest.status=403)\n  -- a comment\n  severity=WARNING"
        ));
        assert!(m(""));
        assert!(m("  \n "));
    }

    #[test]
    fn number_in_log_name_is_translated() {
        let mut f = parse("logName=\"projects/123/logs/run.googleapis.com%2Frequests\"")
            .unwrap_or(Filter { root: None });
        f.translate_project_number("123", "mybazaar-c4881");
        assert!(f.matches(&entry()));
    }

    #[test]
    fn unsupported_and_invalid_are_rejected() {
        for (f, kind) in [
            ("\"cat in the hat\"", FilterErrorKind::Unsupported),
            ("403", FilterErrorKind::Unsupported),
            ("robot", FilterErrorKind::Unsupported),
            (
                "severity=ERROR and httpRequest.status=403",
                FilterErrorKind::Unsupported,
            ),
            ("textPayload=~\"auth.*\"", FilterErrorKind::Unsupported),
            ("SEARCH(\"x\")", FilterErrorKind::Unsupported),
            ("sample(insertId, 0.1)", FilterErrorKind::Unsupported),
            (
                "httpRequest.status=(401 OR 403 AND 404)",
                FilterErrorKind::Unsupported,
            ),
            ("foo.bar=1", FilterErrorKind::Syntax),
            ("timestamp>=\"yesterday\"", FilterErrorKind::Syntax),
            ("httpRequest.status=", FilterErrorKind::Syntax),
            ("(httpRequest.status=403", FilterErrorKind::Syntax),
            ("httpRequest.status=403)", FilterErrorKind::Syntax),
            ("textPayload=\"open", FilterErrorKind::Syntax),
            ("AND severity=ERROR", FilterErrorKind::Syntax),
            ("severity=ERROR AND", FilterErrorKind::Syntax),
            ("severity=ERROR OR", FilterErrorKind::Syntax),
            ("httpRequest.status=()", FilterErrorKind::Syntax),
        ] {
            match parse(f) {
                Ok(p) => panic!("{f:?} parsed as {p:?}"),
                Err(e) => assert_eq!(e.kind, kind, "{f:?}: {e}"),
            }
        }
        let e = parse("severity=ERROR\n  foo=1")
            .err()
            .map(|e| (e.line, e.column));
        assert_eq!(e, Some((2, 3)));
        assert!(parse(&"(".repeat(500)).is_err());
        assert!(parse(&"NOT ".repeat(500)).is_err());
        assert!(parse(&"a".repeat(MAX_FILTER_CHARS + 1)).is_err());
    }

    #[test]
    fn arrays_match_any_element() {
        let e = json!({"protoPayload": {"authorizationInfo": [{"permission": "a"}, {"permission": "run.routes.invoke"}]}});
        let f = parse("protoPayload.authorizationInfo.permission=\"run.routes.invoke\"")
            .unwrap_or(Filter { root: None });
        assert!(f.matches(&e));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn token() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("AND".to_string()),
                Just("OR".to_string()),
                Just("NOT".to_string()),
                Just("(".to_string()),
                Just(")".to_string()),
                Just("-".to_string()),
                Just("--".to_string()),
                Just("\n".to_string()),
                Just("\"".to_string()),
                Just("=".to_string()),
                Just("!=".to_string()),
                Just(">=".to_string()),
                Just(":".to_string()),
                Just("*".to_string()),
                Just("=~".to_string()),
                Just("httpRequest.status".to_string()),
                Just("timestamp".to_string()),
                Just("severity".to_string()),
                Just("labels.\"a/b\"".to_string()),
                Just("log_id(".to_string()),
                Just("403".to_string()),
                Just("\"2025-10-21T05:06:03Z\"".to_string()),
                "[a-z_.]{1,8}",
                "\\PC{0,3}",
            ]
        }

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_text(s in "\\PC{0,200}") {
                if let Ok(f) = parse(&s) {
                    let _ = f.matches(&entry());
                }
            }

            #[test]
            fn never_panics_on_token_soup(toks in proptest::collection::vec(token(), 0..40)) {
                let s = toks.join(" ");
                match parse(&s) {
                    Ok(f) => { let _ = f.matches(&entry()); }
                    Err(e) => prop_assert!(e.line >= 1 && e.column >= 1),
                }
                let glued = toks.concat();
                if let Ok(f) = parse(&glued) {
                    let _ = f.matches(&entry());
                }
            }
        }
    }
}
