//! Verdicts per scenario, rendered for people (a diff of expected and
//! actual, both runners side by side) and as JUnit XML for CI.

use std::fmt::Write;

use crate::envoy_runner::EnvoyRun;
use proxy_wasm_harness::CostModel;

use crate::outcome::{self, Miss, Outcome};
use crate::scenario::Loaded;

#[derive(Debug)]
pub(crate) enum Verdict {
    Pass,
    /// The scenario file is not valid.
    Invalid(String),
    /// A runner could not run it.
    Error(String),
    /// Expectations not met (per runner), and differences between runners.
    Fail {
        harness: Vec<Miss>,
        envoy: Vec<Miss>,
        differences: Vec<(String, String, String)>,
        envoy_log: Option<String>,
    },
}

#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) name: String,
    pub(crate) verdict: Verdict,
    pub(crate) seconds: f64,
    /// Each runner's plugin log to show: on a failure, the start-up and the
    /// step that failed; with `--logs`, everything.
    pub(crate) plugin_logs: Vec<(&'static str, String)>,
    /// With `--costs`: what each step cost in the harness ([`costs`]).
    pub(crate) costs: Option<String>,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        matches!(self.verdict, Verdict::Pass)
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        match &self.verdict {
            Verdict::Pass => {
                let _ = writeln!(out, "PASS {} ({:.2} s)", self.name, self.seconds);
                self.render_costs(&mut out);
                for (runner, log) in &self.plugin_logs {
                    let _ = writeln!(out, "  plugin log ({runner}):");
                    for line in log.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
            Verdict::Invalid(e) => {
                let _ = write!(out, "INVALID {e}");
            }
            Verdict::Error(e) => {
                let _ = writeln!(out, "ERROR {}\n  {}", self.name, e.replace('\n', "\n  "));
                for (runner, log) in &self.plugin_logs {
                    let _ = writeln!(out, "  plugin log ({runner}):");
                    for line in log.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
            Verdict::Fail {
                harness,
                envoy,
                differences,
                envoy_log,
            } => {
                let _ = writeln!(out, "FAIL {} ({:.2} s)", self.name, self.seconds);
                self.render_costs(&mut out);
                for (runner, misses) in [("harness", harness), ("envoy", envoy)] {
                    for m in misses {
                        let _ = writeln!(out, "  [{runner}] {}", m.what);
                        let _ = writeln!(out, "    expected: {}", indent(&m.expected));
                        let _ = writeln!(out, "    actual:   {}", indent(&m.actual));
                    }
                }
                if !differences.is_empty() {
                    let _ = writeln!(out, "  harness and envoy disagree:");
                    let width = differences.iter().map(|d| d.0.len()).max().unwrap_or(0);
                    let _ = writeln!(out, "    {:width$}  {:30}  envoy", "", "harness");
                    for (what, h, e) in differences {
                        let _ = writeln!(out, "    {what:width$}  {:30}  {}", short(h), short(e));
                    }
                }
                for (runner, log) in &self.plugin_logs {
                    let _ = writeln!(out, "  plugin log ({runner}):");
                    for line in log.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
                if let Some(log) = envoy_log {
                    let lines: Vec<&str> = log.lines().collect();
                    let _ = writeln!(out, "  envoy log (last 30 lines):");
                    for line in &lines[lines.len().saturating_sub(30)..] {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
        }
        out.trim_end().to_owned()
    }

    fn render_costs(&self, out: &mut String) {
        if let Some(costs) = &self.costs {
            for line in costs.lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}

/// Each step's cost per filter in the harness: a summary line with the
/// estimate for Envoy 1.40 ([`CostModel::envoy_1_40`]), then a line per
/// callback.
pub(crate) fn costs(outcome: &Outcome) -> String {
    let Outcome::Steps { steps, .. } = outcome else {
        return "costs: the configuration was rejected, no request ran".to_owned();
    };
    let model = CostModel::envoy_1_40();
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        if step.costs.is_empty() {
            let _ = writeln!(out, "step {}: no filter ran", i + 1);
        }
        for (k, costs) in step.costs.iter().enumerate() {
            let _ = writeln!(
                out,
                "step {} filter {}: {} crossings ({} callbacks, {} host calls, {} guest \
                 allocations), {} B to the guest, {} B from it; Envoy 1.40 estimate {:.1} µs",
                i + 1,
                k + 1,
                costs.crossings(),
                costs.callback_count(),
                costs.host_call_count(),
                costs.guest_allocations(),
                costs.bytes_to_guest(),
                costs.bytes_from_guest(),
                costs.estimate(&model).as_secs_f64() * 1e6,
            );
            for line in costs.to_string().lines() {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.replace('\n', "\n              ")
}

fn short(text: &str) -> String {
    let one_line = text.replace('\n', "\\n");
    if one_line.chars().count() > 60 {
        format!("{}…", one_line.chars().take(59).collect::<String>())
    } else {
        one_line
    }
}

/// The first step a failure names (`step N ...`), if any.
pub(crate) fn failed_step(verdict: &Verdict) -> Option<usize> {
    let Verdict::Fail {
        harness,
        envoy,
        differences,
        ..
    } = verdict
    else {
        return None;
    };
    let step_of = |text: &str| -> Option<usize> {
        let rest = text.strip_prefix("step ")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    harness
        .iter()
        .chain(envoy)
        .map(|m| m.what.as_str())
        .chain(differences.iter().map(|d| d.0.as_str()))
        .filter_map(step_of)
        .min()
}

/// The verdict from whichever runners ran.
pub(crate) fn judge(
    loaded: &Loaded,
    harness: Option<Result<Outcome, String>>,
    envoy: Option<Result<EnvoyRun, String>>,
) -> Verdict {
    let harness = match harness.transpose() {
        Ok(h) => h,
        Err(e) => return Verdict::Error(format!("harness: {e}")),
    };
    let envoy = match envoy.transpose() {
        Ok(e) => e,
        Err(e) => return Verdict::Error(format!("envoy: {e}")),
    };
    let harness_misses = harness
        .as_ref()
        .map(|o| outcome::check(loaded, o))
        .unwrap_or_default();
    let envoy_misses = envoy
        .as_ref()
        .map(|run| outcome::check(loaded, &run.outcome))
        .unwrap_or_default();
    let differences = match (&harness, &envoy) {
        (Some(h), Some(e)) => {
            let h = outcome::comparable(loaded, h);
            let e = outcome::comparable(loaded, &e.outcome);
            // Facts are matched by name, so one extra or missing fact (a log
            // line more) shows as itself, not as a shift of all that follow.
            let mut diffs = Vec::new();
            let names = h.iter().map(|(w, _)| w).chain(
                e.iter()
                    .map(|(w, _)| w)
                    .filter(|w| !h.iter().any(|(x, _)| x == *w)),
            );
            for what in names {
                let value = |facts: &[(String, String)]| {
                    facts
                        .iter()
                        .find(|(w, _)| w == what)
                        .map_or_else(|| "(none)".to_owned(), |(_, v)| v.clone())
                };
                let (hv, ev) = (value(&h), value(&e));
                if hv != ev {
                    diffs.push((what.clone(), hv, ev));
                }
            }
            diffs
        }
        _ => Vec::new(),
    };
    if harness_misses.is_empty() && envoy_misses.is_empty() && differences.is_empty() {
        return Verdict::Pass;
    }
    let envoy_log = envoy
        .filter(|_| !envoy_misses.is_empty() || !differences.is_empty())
        .map(|run| run.log);
    Verdict::Fail {
        harness: harness_misses,
        envoy: envoy_misses,
        differences,
        envoy_log,
    }
}

/// JUnit XML: one test case per scenario.
pub(crate) fn junit(reports: &[Report]) -> String {
    let failures = reports.iter().filter(|r| !r.passed()).count();
    let total: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuite name=\"scenarios\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        reports.len()
    );
    for r in reports {
        let _ = write!(
            out,
            "  <testcase name=\"{}\" time=\"{:.3}\"",
            xml(&r.name),
            r.seconds
        );
        let costs = r.costs.as_ref().map_or(String::new(), |c| {
            format!("    <system-out>{}</system-out>\n", xml(c))
        });
        if r.passed() && costs.is_empty() {
            out.push_str("/>\n");
        } else if r.passed() {
            let _ = write!(out, ">\n{costs}  </testcase>\n");
        } else {
            let _ = write!(
                out,
                ">\n    <failure message=\"scenario failed\">{}</failure>\n{costs}  </testcase>\n",
                xml(&r.render())
            );
        }
    }
    out.push_str("</testsuite>");
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ClientResult, StepOutcome};

    fn outcome(status: u16, reached: bool) -> Outcome {
        Outcome::Steps {
            startup: Vec::new(),
            steps: vec![StepOutcome {
                backend: reached.then(|| crate::outcome::Received {
                    cluster: "backend".into(),
                    method: "GET".into(),
                    path: "/".into(),
                    ..Default::default()
                }),
                client: ClientResult::Response {
                    status,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                logs: Vec::new(),
                calls: Vec::new(),
                stale_content_length: Vec::new(),
                vm_failures: Vec::new(),
                costs: Vec::new(),
            }],
        }
    }

    fn loaded() -> Loaded {
        // One folder per call: tests run in parallel and must not read a
        // file another is writing.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("report-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.yaml");
        std::fs::write(
            &file,
            "filters:\n  - wasm: fixture:minimal-filter\nsteps:\n  - expect:\n      client: {status: 200}\n",
        )
        .unwrap();
        crate::scenario::load(&file).unwrap()
    }

    #[test]
    fn a_scenario_envoy_fails_and_the_harness_passes_shows_both_side_by_side() {
        let loaded = loaded();
        let envoy = EnvoyRun {
            outcome: outcome(503, false),
            log: "info|main|starting\nwarning|http|upstream connect error".into(),
        };
        let verdict = judge(&loaded, Some(Ok(outcome(200, true))), Some(Ok(envoy)));
        let report = Report {
            name: "s.yaml".into(),
            verdict,
            seconds: 0.1,
            plugin_logs: Vec::new(),
            costs: None,
        };
        assert!(!report.passed());
        let text = report.render();
        assert!(text.contains("[envoy] step 1 (/): client status"), "{text}");
        assert!(!text.contains("[harness]"), "the harness met it: {text}");
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("step 1 client status"))
            .unwrap_or_else(|| panic!("no side-by-side row in {text}"));
        assert!(row.contains("200") && row.contains("503"), "{row}");
        assert!(
            text.contains("upstream connect error"),
            "envoy's log is shown"
        );
        assert!(junit(&[report]).contains("failures=\"1\""));
    }

    #[test]
    fn costs_show_each_step_and_filter_with_its_envoy_estimate() {
        let mut ran = outcome(200, true);
        if let Outcome::Steps { steps, .. } = &mut ran {
            steps[0].costs = vec![proxy_wasm_harness::Costs::default(); 2];
        }
        let text = costs(&ran);
        assert!(text.contains("step 1 filter 1: 0 crossings"), "{text}");
        assert!(text.contains("step 1 filter 2: 0 crossings"), "{text}");
        assert!(text.contains("Envoy 1.40 estimate 0.0 µs"), "{text}");
    }

    #[test]
    fn agreeing_runs_pass() {
        let loaded = loaded();
        let envoy = EnvoyRun {
            outcome: outcome(200, true),
            log: String::new(),
        };
        let verdict = judge(&loaded, Some(Ok(outcome(200, true))), Some(Ok(envoy)));
        assert!(matches!(verdict, Verdict::Pass));
    }
}
