//! What a run observed, the same shape from the harness and from Envoy, and
//! how it is checked against a scenario's expectations and compared across
//! runners.

use std::fmt;

use proxy_wasm_harness::LogLevel;
use regex::Regex;

use crate::scenario::{
    BackendExpect, CallExpect, ClientExpect, Expect, HeaderExpect, Loaded, LogExpect,
};

/// A header list as received, names lower-cased.
pub(crate) type Headers = Vec<(String, String)>;

/// A header's field value: its lines joined with `, ` (RFC 9110 §5.3), so
/// repeated headers are checked and compared whole.
fn field(headers: &Headers, name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let mut lines = headers
        .iter()
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str());
    let first = lines.next()?;
    Some(lines.fold(first.to_owned(), |acc, v| format!("{acc}, {v}")))
}

/// A request as the backend received it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Received {
    /// The cluster that received the request.
    pub(crate) cluster: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Headers,
    pub(crate) body: Vec<u8>,
}

/// What the client got.
#[derive(Debug, Clone)]
pub(crate) enum ClientResult {
    Response {
        status: u16,
        headers: Headers,
        body: Vec<u8>,
    },
    /// The stream was reset (no complete response).
    Reset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    pub(crate) level: LogLevel,
    pub(crate) message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallMade {
    pub(crate) upstream: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) body: Vec<u8>,
}

impl fmt::Display for CallMade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.upstream, self.method, self.path)?;
        if !self.body.is_empty() {
            write!(f, " body {:?}", String::from_utf8_lossy(&self.body))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StepOutcome {
    pub(crate) backend: Option<Received>,
    pub(crate) client: ClientResult,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) calls: Vec<CallMade>,
    /// Bodies whose `content-length` a filter left stale, as the harness saw
    /// them (Envoy's runner cannot see it: its peers just read the declared
    /// length).
    pub(crate) stale_content_length: Vec<String>,
    /// What the request cost each filter of the chain, in order (the
    /// harness counts it; Envoy's runner has none).
    pub(crate) costs: Vec<proxy_wasm_harness::Costs>,
    /// VMs that failed during the step (a trap, in Envoy's words
    /// `Function: <callback> failed: ...`, from its wasm log).
    pub(crate) vm_failures: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The chain refused its configuration; the logs written meanwhile.
    Rejected { logs: Vec<LogLine> },
    Steps {
        /// What the plugins logged while their VMs started and were
        /// configured.
        startup: Vec<LogLine>,
        steps: Vec<StepOutcome>,
    },
}

/// One unmet expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Miss {
    pub(crate) what: String,
    pub(crate) expected: String,
    pub(crate) actual: String,
}

fn miss(what: impl Into<String>, expected: impl Into<String>, actual: impl Into<String>) -> Miss {
    Miss {
        what: what.into(),
        expected: expected.into(),
        actual: actual.into(),
    }
}

/// Every expectation of the scenario that the outcome does not meet.
pub(crate) fn check(loaded: &Loaded, outcome: &Outcome) -> Vec<Miss> {
    let scenario = &loaded.scenario;
    let mut misses = Vec::new();
    match (outcome, &scenario.expect_rejected) {
        (Outcome::Rejected { logs }, Some(rejected)) => {
            if let Some(text) = &rejected.log_contains
                && !logs.iter().any(|l| l.message.contains(text.as_str()))
            {
                misses.push(miss(
                    "rejection log",
                    format!("a line containing {text:?}"),
                    render_logs(logs),
                ));
            }
        }
        (Outcome::Rejected { logs }, None) => misses.push(miss(
            "configuration",
            "accepted",
            format!("rejected; logs:\n{}", render_logs(logs)),
        )),
        (Outcome::Steps { .. }, Some(_)) => {
            misses.push(miss("configuration", "rejected", "accepted"));
        }
        (Outcome::Steps { steps, .. }, None) => {
            for (i, (step, got)) in scenario.steps.iter().zip(steps).enumerate() {
                let prefix = format!(
                    "step {} ({})",
                    i + 1,
                    step.name.as_deref().unwrap_or(&step.request.path)
                );
                check_step(&prefix, &step.expect, got, &mut misses);
            }
        }
    }
    misses
}

fn check_step(prefix: &str, expect: &Expect, got: &StepOutcome, misses: &mut Vec<Miss>) {
    if let Some(backend) = &expect.backend {
        check_backend(prefix, backend, got.backend.as_ref(), misses);
    }
    if let Some(client) = &expect.client {
        check_client(prefix, client, &got.client, misses);
    }
    for log in &expect.logs {
        check_log(prefix, log, &got.logs, misses);
    }
    if let Some(calls) = &expect.http_calls {
        check_calls(prefix, calls, &got.calls, misses);
    }
    match (expect.vm_failure, got.vm_failures.first()) {
        (false, Some(failure)) => misses.push(miss(
            format!("{prefix} VM failure"),
            "no VM failure (a trap is a bug; set expect.vm_failure when the step shows one)",
            failure.clone(),
        )),
        (true, None) => misses.push(miss(format!("{prefix} VM failure"), "a VM failure", "none")),
        _ => {}
    }
    if !expect.stale_content_length {
        for problem in &got.stale_content_length {
            misses.push(miss(
                format!("{prefix} content-length"),
                "a content-length that matches the body (remove it when the filter changes the body's size, or set expect.stale_content_length)",
                problem.clone(),
            ));
        }
    }
}

fn check_backend(
    prefix: &str,
    expect: &BackendExpect,
    got: Option<&Received>,
    misses: &mut Vec<Miss>,
) {
    let reached = expect.reached.unwrap_or(true);
    match (reached, got) {
        (false, None) => {}
        (false, Some(r)) => misses.push(miss(
            format!("{prefix}: backend"),
            "not reached",
            format!("received {} {}", r.method, r.path),
        )),
        (true, None) => misses.push(miss(format!("{prefix}: backend"), "reached", "not reached")),
        (true, Some(r)) => {
            let what = |w: &str| format!("{prefix}: backend {w}");
            if let Some(c) = &expect.cluster
                && *c != r.cluster
            {
                misses.push(miss(what("cluster"), c, &r.cluster));
            }
            if let Some(m) = &expect.method
                && *m != r.method
            {
                misses.push(miss(what("method"), m, &r.method));
            }
            if let Some(p) = &expect.path
                && *p != r.path
            {
                misses.push(miss(what("path"), p, &r.path));
            }
            if let Some(b) = &expect.body {
                let body = String::from_utf8_lossy(&r.body);
                if *b != body {
                    misses.push(miss(what("body"), b, body));
                }
            }
            check_headers(&what("header"), &expect.headers, &r.headers, misses);
        }
    }
}

fn check_client(prefix: &str, expect: &ClientExpect, got: &ClientResult, misses: &mut Vec<Miss>) {
    let what = |w: &str| format!("{prefix}: client {w}");
    let ClientResult::Response {
        status,
        headers,
        body,
    } = got
    else {
        if !expect.reset {
            misses.push(miss(what("response"), "a response", "the stream was reset"));
        }
        return;
    };
    if expect.reset {
        misses.push(miss(
            what("response"),
            "the stream reset",
            format!("a {status} response"),
        ));
        return;
    }
    if let Some(s) = expect.status
        && s != *status
    {
        misses.push(miss(what("status"), s.to_string(), status.to_string()));
    }
    let text = String::from_utf8_lossy(body);
    if let Some(b) = &expect.body
        && *b != text
    {
        misses.push(miss(what("body"), b, text.as_ref()));
    }
    if let Some(b) = &expect.body_contains
        && !text.contains(b.as_str())
    {
        misses.push(miss(
            what("body"),
            format!("containing {b:?}"),
            text.as_ref(),
        ));
    }
    check_headers(&what("header"), &expect.headers, headers, misses);
}

fn check_headers(what: &str, expect: &HeaderExpect, headers: &Headers, misses: &mut Vec<Miss>) {
    for name in &expect.present {
        if field(headers, name).is_none() {
            misses.push(miss(format!("{what} {name}"), "present", "absent"));
        }
    }
    for name in &expect.absent {
        if let Some(v) = field(headers, name) {
            misses.push(miss(format!("{what} {name}"), "absent", &v));
        }
    }
    for (name, value) in &expect.equal {
        let got = field(headers, name);
        if got.as_deref() != Some(value.as_str()) {
            misses.push(miss(
                format!("{what} {name}"),
                value,
                got.as_deref().unwrap_or("(absent)"),
            ));
        }
    }
    for (name, pattern) in &expect.matches {
        // Checked when the scenario was loaded.
        let Ok(re) = Regex::new(pattern) else {
            continue;
        };
        let got = field(headers, name);
        if !got.as_deref().is_some_and(|v| re.is_match(v)) {
            misses.push(miss(
                format!("{what} {name}"),
                format!("matching /{pattern}/"),
                got.as_deref().unwrap_or("(absent)"),
            ));
        }
    }
}

fn check_log(prefix: &str, expect: &LogExpect, logs: &[LogLine], misses: &mut Vec<Miss>) {
    let found = logs.iter().any(|l| log_matches(expect, l));
    let level = expect
        .level
        .map_or_else(|| "any level".to_owned(), |l| l.to_string());
    if found == expect.absent {
        misses.push(miss(
            format!("{prefix}: log"),
            format!(
                "{} line at {level} containing {:?}",
                if expect.absent { "no" } else { "a" },
                expect.contains
            ),
            render_logs(logs),
        ));
    }
}

fn check_calls(prefix: &str, expect: &[CallExpect], got: &[CallMade], misses: &mut Vec<Miss>) {
    let render = |calls: &[CallMade]| {
        calls
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ok = expect.len() == got.len()
        && expect.iter().zip(got).all(|(e, g)| {
            e.upstream == g.upstream
                && e.method.as_ref().is_none_or(|m| *m == g.method)
                && e.path.as_ref().is_none_or(|p| *p == g.path)
                && e.body.as_ref().is_none_or(|b| b.as_bytes() == g.body)
        });
    if !ok {
        let wanted = expect
            .iter()
            .map(|c| {
                let body = c
                    .body
                    .as_ref()
                    .map(|b| format!(" body {b:?}"))
                    .unwrap_or_default();
                format!(
                    "{} {} {}{body}",
                    c.upstream,
                    c.method.as_deref().unwrap_or("*"),
                    c.path.as_deref().unwrap_or("*")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        misses.push(miss(format!("{prefix}: http_calls"), wanted, render(got)));
    }
}

fn log_matches(expect: &LogExpect, line: &LogLine) -> bool {
    line.message.contains(expect.contains.as_str())
        && expect.level.is_none_or(|lv| lv == line.level)
}

pub(crate) fn render_logs(logs: &[LogLine]) -> String {
    if logs.is_empty() {
        return "(no log lines)".into();
    }
    logs.iter()
        .map(|l| format!("[{}] {}", l.level, l.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Observations the two runners must agree on, whatever the scenario
/// expects: per step the client's status and body (or reset), whether the
/// backend was reached and with which method, path and body, the callouts
/// made, and the value of every header an expectation names (for a header
/// named only under `matches`, whether it matches: such values differ by
/// nature, a timestamp or a port).
pub(crate) fn comparable(loaded: &Loaded, outcome: &Outcome) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    let steps = match outcome {
        Outcome::Rejected { .. } => {
            facts.push(("configuration".into(), "rejected".into()));
            return facts;
        }
        Outcome::Steps { startup, steps } => {
            if loaded.scenario.compare_logs {
                log_facts(loaded, "start-up", startup, &mut facts);
            }
            steps
        }
    };
    facts.push(("configuration".into(), "accepted".into()));
    for (i, (step, got)) in loaded.scenario.steps.iter().zip(steps).enumerate() {
        let p = format!("step {}", i + 1);
        match &got.client {
            ClientResult::Response {
                status,
                headers,
                body,
            } => {
                facts.push((format!("{p} client status"), status.to_string()));
                facts.push((
                    format!("{p} client body"),
                    String::from_utf8_lossy(body).into_owned(),
                ));
                if let Some(c) = &step.expect.client {
                    for (name, fact) in header_facts(&c.headers, headers) {
                        facts.push((format!("{p} client header {name}"), fact));
                    }
                }
            }
            ClientResult::Reset => facts.push((format!("{p} client"), "reset".into())),
        }
        match &got.backend {
            None => facts.push((format!("{p} backend"), "not reached".into())),
            Some(r) => {
                facts.push((format!("{p} backend"), format!("{} {}", r.method, r.path)));
                facts.push((format!("{p} backend cluster"), r.cluster.clone()));
                facts.push((
                    format!("{p} backend body"),
                    String::from_utf8_lossy(&r.body).into_owned(),
                ));
                if let Some(b) = &step.expect.backend {
                    for (name, fact) in header_facts(&b.headers, &r.headers) {
                        facts.push((format!("{p} backend header {name}"), fact));
                    }
                }
            }
        }
        let calls = got
            .calls
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        facts.push((format!("{p} http_calls"), calls));
        if loaded.scenario.compare_logs {
            log_facts(loaded, &p, &got.logs, &mut facts);
        }
        for log in &step.expect.logs {
            let found = got.logs.iter().any(|l| log_matches(log, l));
            facts.push((
                format!("{p} log {:?}", log.contains),
                if found { "written" } else { "not written" }.into(),
            ));
        }
    }
    facts
}

/// Every plugin log line of a run, start-up and steps under headings: what
/// the runner writes next to Envoy's own files for a reader to diff.
pub(crate) fn transcript(outcome: &Outcome) -> String {
    excerpt(outcome, None, usize::MAX)
}

/// The start-up log and one step's log (every step's when `step` is
/// `None`), each section cut after `max_lines` lines with a count of the
/// rest: what a report shows of a run.
pub(crate) fn excerpt(outcome: &Outcome, step: Option<usize>, max_lines: usize) -> String {
    let mut out = String::new();
    let mut section = |title: &str, logs: &[LogLine]| {
        out.push_str(&format!("== {title}\n"));
        for l in logs.iter().take(max_lines) {
            out.push_str(&format!("[{}] {}\n", l.level, l.message));
        }
        if logs.len() > max_lines {
            out.push_str(&format!("… {} more lines\n", logs.len() - max_lines));
        }
    };
    match outcome {
        Outcome::Rejected { logs } => section("rejected", logs),
        Outcome::Steps { startup, steps } => {
            section("start-up", startup);
            for (i, got) in steps.iter().enumerate() {
                if step.is_none_or(|n| n == i + 1) {
                    section(&format!("step {}", i + 1), &got.logs);
                }
            }
        }
    }
    out
}

/// Every log line as a fact of its own, numbered, and how many there were:
/// a scenario with `compare_logs` is compared line by line.
fn log_facts(loaded: &Loaded, prefix: &str, logs: &[LogLine], facts: &mut Vec<(String, String)>) {
    let except: Vec<Regex> = loaded
        .scenario
        .compare_logs_except
        .iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect();
    let logs: Vec<&LogLine> = logs
        .iter()
        .filter(|l| !except.iter().any(|re| re.is_match(&l.message)))
        .collect();
    facts.push((format!("{prefix} log lines"), logs.len().to_string()));
    for (i, line) in logs.iter().enumerate() {
        facts.push((
            format!("{prefix} log line {:03}", i + 1),
            format!("[{}] {}", line.level, line.message),
        ));
    }
}

fn header_facts<'a>(expect: &'a HeaderExpect, headers: &Headers) -> Vec<(&'a String, String)> {
    let exact = expect
        .present
        .iter()
        .chain(&expect.absent)
        .chain(expect.equal.keys());
    let mut facts: Vec<_> = exact
        .map(|name| {
            (
                name,
                field(headers, name).unwrap_or_else(|| "(absent)".into()),
            )
        })
        .collect();
    for (name, pattern) in &expect.matches {
        if facts.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let fact = match (field(headers, name), Regex::new(pattern)) {
            (None, _) => "(absent)".to_owned(),
            (Some(v), Ok(re)) if re.is_match(&v) => format!("matches /{pattern}/"),
            (Some(v), _) => v,
        };
        facts.push((name, fact));
    }
    facts
}
