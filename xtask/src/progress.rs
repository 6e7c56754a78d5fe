//! Progress of a phase: an indicatif bar with loss, images/s and ETA on a terminal, plain log
//! lines with the ETA (at most one every few seconds, plus the last) when stdout is not a
//! terminal (CI). Once the phase has run for a few seconds it prints, once, how long the whole
//! phase will take at the rate so far, so a long run says what to expect before it is long.

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
    /// When the first update came and how many steps were done then (a resumed phase starts
    /// part-way); the rate is measured from there.
    first: Option<(Instant, u64)>,
    estimated: bool,
}

const LOG_EVERY: Duration = Duration::from_secs(5);

/// How long a phase runs before its total time is estimated (warm-up steps are slower).
const ESTIMATE_AFTER: Duration = Duration::from_secs(20);

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
            first: None,
            estimated: false,
        }
    }

    /// Seconds left at the rate since the first update, once there is a rate.
    fn eta_seconds(&self, done: u64) -> Option<f64> {
        let (at, from) = self.first?;
        let steps = done.checked_sub(from).filter(|&s| s > 0)?;
        let per_step = at.elapsed().as_secs_f64() / steps as f64;
        Some(per_step * self.total.saturating_sub(done) as f64)
    }

    /// Reports that `done` steps are complete, with a short status such as the loss.
    pub fn update(&mut self, done: u64, status: &str) {
        let Some((at, _)) = self.first else {
            self.first = Some((Instant::now(), done));
            return self.update(done, status);
        };
        if !self.estimated && at.elapsed() >= ESTIMATE_AFTER {
            if let Some(left) = self.eta_seconds(done) {
                self.estimated = true;
                let total = self.started.elapsed().as_secs_f64() + left;
                self.println(&format!(
                    "{}: at this rate the phase takes {} in all, {} from now",
                    self.name,
                    duration(total),
                    duration(left)
                ));
            }
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(done);
                bar.set_message(status.to_string());
            }
            None if self.last_line.elapsed() >= LOG_EVERY || done == self.total => {
                self.last_line = Instant::now();
                let eta = self
                    .eta_seconds(done)
                    .map(|s| format!(", ETA {}", duration(s)))
                    .unwrap_or_default();
                println!(
                    "{}: {done}/{} {status} ({:.0} s{eta})",
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

/// `95 s`, `12.5 min` or `2.3 h`.
fn duration(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.1} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}
