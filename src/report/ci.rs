//! What a command tells a CI system when it ends: JUnit XML (with `--junit FILE`) and the short
//! Markdown summary for `$GITHUB_STEP_SUMMARY`, for a finished check and for one that stopped
//! with an error. The run, `validate` and `compare` all report through here.

use super::gates::GateResult;
use super::{junit, step_summary};
use std::path::Path;
use std::time::Instant;

pub struct CiReport<'a> {
    pub junit: Option<&'a Path>,
    /// The command as the user ran it, the suite's name.
    pub title: String,
    /// `compress.run`, `compress.validate`, `compress.compare`.
    pub classname: &'static str,
    pub started: Instant,
    /// What was checked (recipe, model, data folder).
    pub properties: Vec<(String, String)>,
}

impl CiReport<'_> {
    fn suite(&self, cases: Vec<junit::Case>, figures: &[(String, String)]) -> junit::Suite {
        let mut properties = self.properties.clone();
        properties.extend(figures.iter().cloned());
        junit::Suite { name: self.title.clone(), cases, seconds: self.started.elapsed().as_secs_f64(), properties }
    }

    /// A finished check: `cases` (one per gate, or per method) and the figures it measured.
    pub fn finished(&self, cases: Vec<junit::Case>, passed: bool, figures: &[(String, String)], gates: &[GateResult]) -> anyhow::Result<()> {
        if let Some(path) = self.junit {
            junit::write(path, &[self.suite(cases, figures)])?;
        }
        step_summary::append(&step_summary::markdown(&self.title, passed, figures, gates));
        Ok(())
    }

    /// A check that stopped with `err`: one error case. A JUnit file that cannot be written is
    /// reported on stderr, never in place of `err`, which is what the user needs to see.
    pub fn failed(&self, err: &anyhow::Error) {
        if let Some(path) = self.junit {
            if let Err(e) = junit::write(path, &[self.suite(vec![junit::error_case(self.classname, err)], &[])]) {
                eprintln!("warning: {e:#}");
            }
        }
        step_summary::append(&step_summary::error_markdown(&self.title, err));
    }
}
