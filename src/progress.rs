//! Progress for long stages: a bar on a terminal, plain periodic lines otherwise (CI logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    last_line: Instant,
    every: Duration,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        let bar = if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            Some(b)
        } else {
            None
        };
        Progress { bar, label: label.into(), total, done: 0, last_line: Instant::now(), every: Duration::from_secs(10) }
    }

    /// A progress that shows nothing (the ranks of a data-parallel run other than rank 0).
    pub fn quiet(label: &str, total: u64) -> Progress {
        Progress { bar: None, label: label.into(), total, done: 0, last_line: Instant::now(), every: Duration::MAX }
    }

    /// Advances by `n` with a short status message.
    pub fn inc(&mut self, n: u64, msg: &str) {
        self.done += n;
        match &self.bar {
            Some(b) => {
                b.set_position(self.done);
                b.set_message(msg.to_string());
            }
            None => {
                if self.last_line.elapsed() >= self.every {
                    eprintln!("{}: {}/{} {msg}", self.label, self.done, self.total);
                    self.last_line = Instant::now();
                }
            }
        }
    }

    /// Prints a line of the stage's own (an epoch's figures) above the bar on a terminal, so
    /// the bar is redrawn below it instead of being left behind half-drawn; plainly otherwise.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}
