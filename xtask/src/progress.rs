//! Progress of a phase: an indicatif bar with loss, images/s and ETA on a terminal, plain log
//! lines (at most one every few seconds, plus the last) when stdout is not a terminal (CI).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One phase (pretraining, classifier, …) counted in steps.
pub struct Phase {
    name: String,
    total: u64,
    bar: Option<ProgressBar>,
    last_line: Instant,
    started: Instant,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

impl Phase {
    /// Starts a phase of `total` steps.
    pub fn start(name: &str, total: u64) -> Phase {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>12} [{bar:30}] {pos}/{len} {msg} (ETA {eta})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        if bar.is_none() {
            println!("{name}: {total} steps");
        }
        Phase {
            name: name.into(),
            total,
            bar,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }

    /// Reports that `done` steps are complete, with a short status such as the loss.
    pub fn update(&mut self, done: u64, status: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(status.to_string());
            }
            None if self.last_line.elapsed() >= LOG_EVERY || done == self.total => {
                self.last_line = Instant::now();
                println!(
                    "{}: {done}/{} {status} ({:.0} s)",
                    self.name,
                    self.total,
                    self.started.elapsed().as_secs_f64()
                );
            }
            None => {}
        }
    }

    /// Prints a line above the bar (or plainly).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// Ends the phase with a summary line.
    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        println!(
            "{}: {summary} in {:.1} s",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
    }
}
