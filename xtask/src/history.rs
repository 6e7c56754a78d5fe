//! What a run's pretraining has done so far, across resumes: the loss curves, the kNN monitor
//! and the epochs' times, for the plots and the report.
//!
//! A run killed and resumed is several processes writing one `metrics.jsonl`. A resumed process
//! first replays that log, then records its own events on top, so its plots and its
//! pretraining time cover the whole run, not just its own part. A resume restarts at the step
//! after the last checkpoint — the start of an epoch, or a batch inside one if the checkpoint
//! was written there — so the log can hold steps that were redone: every `started` event drops
//! the steps recorded from its global step on, and the epochs (and their kNN passes) from its
//! epoch on. An epoch resumed inside is recorded once, by the `epoch` event that ends it, whose
//! statistics cover its batches before the checkpoint too.

use std::path::Path;

use anyhow::{Context, Result};
use simclr_contrastive::{EpochStats, TrainEvent};

/// The pretraining record of one run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// (global step / steps per epoch, loss) of every step.
    pub step_losses: Vec<(f64, f64)>,
    /// (epoch + 0.5, mean loss) of every epoch: an epoch's mean belongs at its middle.
    pub epoch_losses: Vec<(f64, f64)>,
    /// (epochs done, accuracy) of every kNN monitor pass.
    pub knn_curve: Vec<(f64, f64)>,
    /// Every completed epoch.
    pub epochs: Vec<EpochStats>,
    /// Seconds spent by the kNN monitor passes.
    knn_seconds: Vec<(f64, f64)>,
}

impl History {
    /// The history recorded in `metrics.jsonl` (empty if the file does not exist). Lines of
    /// other phases are skipped, and so is a line that does not parse.
    pub fn replay(metrics: &Path) -> Result<History> {
        let mut history = History::default();
        let text = match std::fs::read_to_string(metrics) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(history),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", metrics.display())),
        };
        for line in text.lines() {
            let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            match record["phase"].as_str() {
                Some("pretrain") => {
                    if let Ok(event) = serde_json::from_value(record["data"].clone()) {
                        history.record(&event);
                    }
                }
                Some("knn_monitor") => {
                    let data = &record["data"];
                    if let (Some(epoch), Some(accuracy)) =
                        (data["epoch"].as_u64(), data["accuracy"].as_f64())
                    {
                        let seconds = data["seconds"].as_f64().unwrap_or(0.0);
                        history.record_knn(epoch as usize, accuracy, seconds);
                    }
                }
                _ => {}
            }
        }
        Ok(history)
    }

    /// Adds one pretraining event.
    pub fn record(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                start_epoch,
                global_step,
                steps_per_epoch,
                ..
            } => self.drop_from(*start_epoch, *global_step, *steps_per_epoch),
            TrainEvent::Step(s) => self
                .step_losses
                .push((s.step as f64 / s.batches as f64, s.loss as f64)),
            TrainEvent::Epoch(e) => {
                self.epoch_losses
                    .push((e.epoch as f64 + 0.5, e.mean_loss as f64));
                self.epochs.push(e.clone());
            }
            TrainEvent::Checkpoint(_) => {}
        }
    }

    /// Adds a kNN monitor pass made after `epoch` (0-based) that took `seconds`.
    pub fn record_knn(&mut self, epoch: usize, accuracy: f64, seconds: f64) {
        let done = (epoch + 1) as f64;
        self.knn_curve.push((done, accuracy));
        self.knn_seconds.push((done, seconds));
    }

    /// Pretraining time of the whole run: its epochs and its kNN monitor passes.
    pub fn seconds(&self) -> f64 {
        let epochs: f64 = self.epochs.iter().map(|e| e.seconds).sum();
        epochs + self.knn_seconds.iter().map(|(_, s)| s).sum::<f64>()
    }

    /// Mean training images/s over every epoch of the run (0 before the first).
    pub fn images_per_s(&self) -> f64 {
        let (images, seconds) = self
            .epochs
            .iter()
            .fold((0usize, 0f64), |(i, s), e| (i + e.images, s + e.seconds));
        if seconds > 0.0 {
            images as f64 / seconds
        } else {
            0.0
        }
    }

    /// Forgets the steps from global step `step` on and the epochs from `epoch` on: a run
    /// resumes there (`step` is `epoch · steps_per_epoch` plus the batches of `epoch` done).
    fn drop_from(&mut self, epoch: usize, step: usize, steps_per_epoch: usize) {
        // Computed as each step's own position is, so the step resumed at compares equal.
        let first_redone = step as f64 / steps_per_epoch.max(1) as f64;
        self.step_losses.retain(|&(x, _)| x < first_redone);
        let start = epoch as f64;
        self.epoch_losses.retain(|&(x, _)| x < start);
        self.knn_curve.retain(|&(x, _)| x <= start);
        self.knn_seconds.retain(|&(x, _)| x <= start);
        self.epochs.retain(|e| e.epoch < epoch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(phase: &str, data: serde_json::Value) -> String {
        json!({ "phase": phase, "data": data }).to_string()
    }

    fn started(start_epoch: usize) -> String {
        line(
            "pretrain",
            json!({"event": "started", "start_epoch": start_epoch, "epochs": 3,
                   "steps_per_epoch": 2, "global_step": start_epoch * 2,
                   "resumed": start_epoch > 0}),
        )
    }

    /// A `started` event of a run resumed at batch `start_batch` of `start_epoch`, with
    /// `steps_per_epoch` steps an epoch.
    fn started_at(start_epoch: usize, start_batch: usize, steps_per_epoch: usize) -> String {
        line(
            "pretrain",
            json!({"event": "started", "start_epoch": start_epoch, "start_batch": start_batch,
                   "epochs": 3, "steps_per_epoch": steps_per_epoch,
                   "global_step": start_epoch * steps_per_epoch + start_batch,
                   "resumed": true}),
        )
    }

    fn checkpoint(epoch: usize, batches_done: usize) -> String {
        line(
            "pretrain",
            json!({"event": "checkpoint", "epoch": epoch, "batches_done": batches_done,
                   "global_step": epoch * 3 + batches_done, "path": "checkpoint.safetensors",
                   "seconds": 0.25}),
        )
    }

    /// Step `batch` of `epoch` with `batches` steps an epoch.
    fn step_of(batches: usize, epoch: usize, batch: usize, loss: f32) -> String {
        line(
            "pretrain",
            json!({"event": "step", "epoch": epoch, "batch": batch, "batches": batches,
                   "step": epoch * batches + batch, "loss": loss, "lr": 1e-3, "images": 4,
                   "seconds": 0.5, "images_per_s": 8.0, "data_wait_seconds": 0.0}),
        )
    }

    /// Step `batch` of `epoch` with 2 steps an epoch.
    fn step(epoch: usize, batch: usize, loss: f32) -> String {
        step_of(2, epoch, batch, loss)
    }

    /// The history replayed from a metrics log of `lines`.
    fn replay(lines: &[String]) -> History {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        History::replay(&path).unwrap()
    }

    fn epoch(epoch: usize, loss: f32) -> String {
        line(
            "pretrain",
            json!({"event": "epoch", "epoch": epoch, "steps": 2, "mean_loss": loss,
                   "images": 8, "seconds": 1.0, "images_per_s": 8.0, "checkpoint": null}),
        )
    }

    #[test]
    fn a_resumed_run_keeps_its_earlier_epochs_and_drops_the_redone_ones() {
        let lines = [
            started(0),
            step(0, 0, 5.0),
            step(0, 1, 4.0),
            epoch(0, 4.5),
            line(
                "knn_monitor",
                json!({"epoch": 0, "accuracy": 0.4, "seconds": 2.0}),
            ),
            step(1, 0, 3.875), // killed here, before epoch 1's checkpoint
            started(1),
            step(1, 0, 3.75),
            step(1, 1, 3.625),
            epoch(1, 3.6875),
            line("classifier", json!({"epoch": 0})),
            r#"{"phase":"pretrain","data":{"event":"st"#.to_string(), // a torn line
        ];
        let h = replay(&lines);
        assert_eq!(
            h.step_losses,
            vec![(0.0, 5.0), (0.5, 4.0), (1.0, 3.75), (1.5, 3.625)]
        );
        assert_eq!(h.epoch_losses, vec![(0.5, 4.5), (1.5, 3.6875)]);
        assert_eq!(h.knn_curve, vec![(1.0, 0.4)]);
        assert_eq!(h.epochs.len(), 2);
        assert_eq!(h.seconds(), 1.0 + 1.0 + 2.0);
        assert_eq!(h.images_per_s(), 8.0);
    }

    #[test]
    fn a_run_resumed_inside_an_epoch_counts_each_step_and_epoch_once() {
        let step_of_3 = |epoch: usize, batch: usize, loss: f32| step_of(3, epoch, batch, loss);
        let epoch_of_3 = |epoch: usize, loss: f32, seconds: f64| {
            line(
                "pretrain",
                json!({"event": "epoch", "epoch": epoch, "steps": 3, "mean_loss": loss,
                       "images": 12, "seconds": seconds, "images_per_s": 12.0 / seconds,
                       "checkpoint": "checkpoint.safetensors"}),
            )
        };
        let lines = [
            started_at(0, 0, 3),
            step_of_3(0, 0, 6.0),
            step_of_3(0, 1, 5.0),
            step_of_3(0, 2, 4.0),
            epoch_of_3(0, 5.0, 1.5),
            step_of_3(1, 0, 3.0),
            checkpoint(1, 1),
            step_of_3(1, 1, 2.5), // killed here, after the checkpoint inside epoch 1
            started_at(1, 1, 3),
            step_of_3(1, 1, 2.0),
            checkpoint(1, 2),
            step_of_3(1, 2, 1.0),
            // The epoch's statistics include its step before the checkpoint.
            epoch_of_3(1, 2.0, 1.5),
        ];
        let h = replay(&lines);
        // Steps 0..6 once each: the step redone after the checkpoint replaces the first try.
        let expected: Vec<(f64, f64)> = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
            .into_iter()
            .enumerate()
            .map(|(step, loss)| (step as f64 / 3.0, loss))
            .collect();
        assert_eq!(h.step_losses, expected);
        assert_eq!(h.epoch_losses, vec![(0.5, 5.0), (1.5, 2.0)]);
        assert_eq!(h.epochs.len(), 2);
        assert_eq!(h.seconds(), 3.0);
        assert_eq!(h.images_per_s(), 8.0);
    }

    #[test]
    fn no_log_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::replay(&dir.path().join("metrics.jsonl")).unwrap();
        assert!(h.epochs.is_empty() && h.step_losses.is_empty());
        assert_eq!((h.seconds(), h.images_per_s()), (0.0, 0.0));
    }
}
