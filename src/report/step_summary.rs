//! The short Markdown summary a GitHub Actions job page shows: appended to the file
//! `$GITHUB_STEP_SUMMARY` names, when it is set (GitHub sets it for every step).

use super::gates::GateResult;
use std::fmt::Write as _;
use std::io::Write as _;

/// The summary of one command: a headline, the figures as a list, the gates as a table.
pub fn markdown(title: &str, passed: bool, figures: &[(String, String)], gates: &[GateResult]) -> String {
    let mut s = format!("### {} {title}\n\n", if passed { "✅ PASS" } else { "❌ FAIL" });
    for (k, v) in figures {
        let _ = writeln!(s, "- {k}: {v}");
    }
    if !gates.is_empty() {
        s.push_str("\n| gate | rule | threshold | value | result |\n|---|---|---|---|---|\n");
        for g in gates {
            let _ = writeln!(s, "| {} | {} | {:.4} | {:.4} | {} |", g.metric, g.rule, g.threshold, g.value, if g.passed { "pass" } else { "**FAIL**" });
        }
    }
    s.push('\n');
    s
}

/// The summary of a command that stopped with `err`.
pub fn error_markdown(title: &str, err: &anyhow::Error) -> String {
    let kind = if crate::error::is_bad_input(err) { "bad input" } else { "runtime failure" };
    format!("### ⚠️ ERROR {title}\n\n{kind}: `{}`\n\n", format!("{err:#}").replace('`', "'"))
}

/// Appends `markdown` to `$GITHUB_STEP_SUMMARY` when it is set; a summary that cannot be
/// written is reported on stderr, never a reason to change the exit code.
pub fn append(markdown: &str) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else { return };
    let result = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(markdown.as_bytes()));
    if let Err(e) = result {
        eprintln!("warning: cannot append to GITHUB_STEP_SUMMARY ({}): {e}", std::path::Path::new(&path).display());
    }
}
