//! JUnit XML for CI systems (Jenkins, GitLab, GitHub test reporters): one test suite per command,
//! one test case per gate. A gate that fails is a `<failure>` carrying the measured value and
//! the threshold; bad input or a runtime failure is an `<error>`, so a CI page tells "the model
//! got worse" from "the check could not run".
//!
//! The shape is the common JUnit schema (the Ant/Jenkins one most reporters read): `testsuites`
//! holding `testsuite` elements with `name`, `tests`, `failures`, `errors`, `skipped`, `time`,
//! `timestamp` and `hostname`, each holding `properties`, `testcase` elements (`name`,
//! `classname`, `time`; at most one `failure` or `error` with `message` and `type`),
//! `system-out` and `system-err`.

use super::gates::GateResult;
use std::fmt::Write as _;
use std::path::Path;

/// How one test case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseResult {
    Passed,
    /// A gate that did not hold: the message says value, rule and threshold.
    Failed {
        message: String,
    },
    /// The check could not run: `kind` is `bad_input` or `runtime_failure`.
    Error {
        kind: &'static str,
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub result: CaseResult,
    /// Anything worth keeping next to the case (the measured figures).
    pub output: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    pub name: String,
    pub cases: Vec<Case>,
    pub seconds: f64,
    /// Name = value pairs shown with the suite (the model file, the data folder, ...).
    pub properties: Vec<(String, String)>,
}

/// One case per gate of `gates`, under `classname`.
pub fn gate_cases(classname: &str, gates: &[GateResult]) -> Vec<Case> {
    gates
        .iter()
        .map(|g| Case {
            name: format!("{} {} {}", g.metric, g.rule, fmt_value(g.threshold)),
            classname: classname.into(),
            result: if g.passed { CaseResult::Passed } else { CaseResult::Failed { message: gate_message(g) } },
            output: format!("{} = {} (threshold {})", g.metric, fmt_value(g.value), fmt_value(g.threshold)),
        })
        .collect()
}

/// The single case of a command that stopped with `err` before its gates were measured.
pub fn error_case(classname: &str, err: &anyhow::Error) -> Case {
    let kind = if crate::error::is_bad_input(err) { "bad_input" } else { "runtime_failure" };
    Case { name: "run".into(), classname: classname.into(), result: CaseResult::Error { kind, message: format!("{err:#}") }, output: String::new() }
}

/// "top1 0.2340 is below the minimum 0.3000 (min)": a failed gate in words, value first.
pub fn gate_message(g: &GateResult) -> String {
    let relation = if g.rule == "max" { "above the maximum" } else { "below the minimum" };
    format!("{} {} is {relation} {} ({})", g.metric, fmt_value(g.value), fmt_value(g.threshold), g.rule)
}

fn fmt_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The document for `suites`.
pub fn render(suites: &[Suite], timestamp: &str, hostname: &str) -> String {
    let count = |f: fn(&CaseResult) -> bool| suites.iter().flat_map(|s| &s.cases).filter(|c| f(&c.result)).count();
    let (tests, failures, errors) = (count(|_| true), count(|r| matches!(r, CaseResult::Failed { .. })), count(|r| matches!(r, CaseResult::Error { .. })));
    let total: f64 = suites.iter().map(|s| s.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, r#"<testsuites name="compress" tests="{tests}" failures="{failures}" errors="{errors}" time="{total:.3}">"#);
    for (id, s) in suites.iter().enumerate() {
        let f = s.cases.iter().filter(|c| matches!(c.result, CaseResult::Failed { .. })).count();
        let e = s.cases.iter().filter(|c| matches!(c.result, CaseResult::Error { .. })).count();
        let _ = writeln!(
            x,
            r#"  <testsuite name="{}" id="{id}" package="compress" tests="{}" failures="{f}" errors="{e}" skipped="0" time="{:.3}" timestamp="{}" hostname="{}">"#,
            esc(&s.name),
            s.cases.len(),
            s.seconds,
            esc(timestamp),
            esc(hostname)
        );
        x.push_str("    <properties>\n");
        for (k, v) in &s.properties {
            let _ = writeln!(x, r#"      <property name="{}" value="{}"/>"#, esc(k), esc(v));
        }
        x.push_str("    </properties>\n");
        for c in &s.cases {
            let _ = write!(x, r#"    <testcase name="{}" classname="{}" time="0.000">"#, esc(&c.name), esc(&c.classname));
            match &c.result {
                CaseResult::Passed => {}
                CaseResult::Failed { message } => {
                    let _ = write!(x, r#"<failure message="{}" type="gate">{}</failure>"#, esc(message), esc(message));
                }
                CaseResult::Error { kind, message } => {
                    let _ = write!(x, r#"<error message="{}" type="{kind}">{}</error>"#, esc(message), esc(message));
                }
            }
            if !c.output.is_empty() {
                let _ = write!(x, "<system-out>{}</system-out>", esc(&c.output));
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("    <system-out/>\n    <system-err/>\n  </testsuite>\n");
    }
    x.push_str("</testsuites>\n");
    x
}

/// Writes `suites` to `path` (replaced atomically: a CI step never reads half a file).
pub fn write(path: &Path, suites: &[Suite]) -> anyhow::Result<()> {
    let xml = render(suites, &timestamp_now(), &hostname());
    crate::fsio::write_atomic(path, xml.as_bytes()).map_err(|e| crate::bad_input!("--junit {}: cannot write: {e:#}", path.display()))
}

/// XML text and attribute escaping; characters XML 1.0 forbids become U+FFFD.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SS`, the schema's timestamp form (no zone).
fn timestamp_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc(secs)
}

/// `secs` after the Unix epoch as `YYYY-MM-DDTHH:MM:SS` (civil-from-days, proleptic Gregorian).
fn utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(metric: &str, rule: &str, threshold: f64, value: f64, passed: bool) -> GateResult {
        GateResult { metric: metric.into(), rule: rule.into(), threshold, value, passed }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00");
        // 2026-12-03 15:41:38 UTC.
        assert_eq!(utc(1_796_312_498), "2026-12-03T15:41:38");
        // A leap day.
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00");
    }

    #[test]
    fn failures_errors_and_escaping() {
        let gates = [gate("top1", "min", 0.3, 0.234, false), gate("max_rel_diff_tch_vs_ort", "max", 1e-4, 3.2e-7, true)];
        let mut cases = gate_cases("compress.validate", &gates);
        cases.push(error_case("compress.validate", &crate::bad_input!("image a<b>&\"c\".jpg is truncated")));
        let suite = Suite { name: "validate m.onnx".into(), cases, seconds: 1.5, properties: vec![("model".into(), "m.onnx".into())] };
        let x = render(&[suite], "2026-12-03T15:41:38", "host");
        assert!(x.contains(r#"<testsuites name="compress" tests="3" failures="1" errors="1" time="1.500">"#), "{x}");
        assert!(x.contains(r#"message="top1 0.2340 is below the minimum 0.3000 (min)" type="gate""#), "{x}");
        assert!(x.contains(r#"<testcase name="max_rel_diff_tch_vs_ort max 1.000e-4" classname="compress.validate" time="0.000"><system-out>"#), "{x}");
        assert!(x.contains(r#"type="bad_input">image a&lt;b&gt;&amp;&quot;c&quot;.jpg is truncated</error>"#), "{x}");
        assert_eq!(gate_message(&gates[1]), "max_rel_diff_tch_vs_ort 3.200e-7 is above the maximum 1.000e-4 (max)");
    }
}
