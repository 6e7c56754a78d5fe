//! `cargo xtask bench`: images/s of one whole SimCLR training step.
//!
//! A step is what pretraining does per batch: B source images → 2B views as one batch →
//! encoder → projection head → NT-Xent → backward → optimizer step. Inputs are fixed random
//! tensors, so only the model's compute is timed (the loader runs on its own thread and is
//! measured by the data crate's bench). Each model runs in a child process of its own, so its
//! peak resident memory (`VmHWM`) is its own.
//!
//! GFLOP/s count the multiply-adds (×2) of the direct convolutions and linear layers: three
//! times the forward's (forward, input gradient, weight gradient) for both views, whichever
//! algorithm actually runs, so the rates of different models and of different kernels compare.
//!
//! On a shared host whose speed drifts, `--rounds N` runs the models in turn N times and
//! reports each one's median round, and its rate relative to the first model's *in the same
//! round* (median over the rounds): a ratio of neighbours in time, which the drift moves far
//! less than the rates themselves. `--interleave` goes further: all the models in this one
//! process, one timed step of each in turn, so that the ratios are of steps seconds apart (and
//! the peak memory is the process's, all the models together).
//!
//! `--profile` adds where the time of one model's timed steps went, op by op
//! ([`simclr_tensor::profile`]): forward and backward wall time per step, the optimizer, and
//! what no op accounts for.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use simclr_contrastive::{nt_xent, SimClr};
use simclr_nn::{Adam, AdamConfig, Module, Optimizer, ResNet};
use simclr_tensor::profile::{self, OpTime};
use simclr_tensor::Tensor;

use crate::cli::BenchArgs;

/// One model's measurement.
#[derive(Serialize, Deserialize, Debug)]
pub struct StepBench {
    /// The model's name on the command line (`mnist`, `resnet18-w16`, …).
    pub model: String,
    /// Source images per step (each passes the encoder twice, as two views).
    pub batch: usize,
    /// Median seconds per step.
    pub step_seconds: f64,
    /// Source images per second at the median step time.
    pub images_per_s: f64,
    /// Direct-convolution and linear-layer GFLOP in one step (see the module docs).
    pub gflop_per_step: f64,
    /// `gflop_per_step` over the median step time.
    pub gflop_per_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Threads used.
    pub threads: usize,
    /// Rounds measured (`--rounds`, or turns with `--interleave`); the figures above are from
    /// the model's median round, the peak memory the largest of any.
    pub rounds: usize,
    /// `gflop_per_s` over the first model's of the same round, median over the rounds (1 for
    /// the first model itself).
    pub rate_vs_first: f64,
}

/// Runs the bench: one child process per model and round (or the one model here, once; or, with
/// `--interleave`, all of them here, step by step), then a table or JSON lines.
pub fn run(args: &BenchArgs) -> Result<()> {
    let models: Vec<&str> = args
        .models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    if models.is_empty() {
        bail!("--models names no model");
    }
    if args.profile && (models.len() > 1 || args.rounds > 1) {
        bail!(
            "--profile profiles one model in one round (got --models {} --rounds {})",
            args.models,
            args.rounds
        );
    }
    let mut step_profile = None;
    let rounds: Vec<Vec<StepBench>> = if args.interleave {
        interleaved(&models, args)?
    } else if models.len() == 1 && args.rounds == 1 {
        let (bench, profile) = measure(models[0], args)?;
        step_profile = profile;
        vec![vec![bench]]
    } else {
        (0..args.rounds)
            .map(|_| models.iter().map(|m| measure_in_child(m, args)).collect())
            .collect::<Result<_>>()?
    };
    let results = summarise(rounds);
    if args.json {
        for r in &results {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "{:<13} {:>6} {:>10} {:>10} {:>8} {:>9} {:>9} {:>8}",
            "model", "batch", "step (s)", "images/s", "GFLOP/s", "vs first", "peak MiB", "threads"
        );
        for r in &results {
            println!(
                "{:<13} {:>6} {:>10.4} {:>10.1} {:>8.1} {:>9.2} {:>9.0} {:>8}",
                r.model,
                r.batch,
                r.step_seconds,
                r.images_per_s,
                r.gflop_per_s,
                r.rate_vs_first,
                r.peak_rss_mb,
                r.threads
            );
        }
        if let Some(first) = results.first().filter(|_| results.len() > 1) {
            let round = if args.interleave { "turn" } else { "round" };
            println!(
                "(vs first: GFLOP/s over {}'s in the same {round}; median of {} {round}{})",
                first.model,
                first.rounds,
                if first.rounds == 1 { "" } else { "s" }
            );
        }
    }
    if let Some(p) = step_profile {
        print!("{}", p.table(&results[0].model));
    }
    Ok(())
}

/// Where the timed steps' time went ([`simclr_tensor::profile`]).
struct StepProfile {
    steps: usize,
    /// Wall time of all the timed steps.
    total: Duration,
    /// Of which `zero_grad` and the optimizer's update.
    optimizer: Duration,
    ops: Vec<OpTime>,
}

impl StepProfile {
    /// A table in milliseconds per step: each op's forward and backward, the optimizer, and
    /// the rest (the graph walk's own bookkeeping, whatever ran outside ops).
    fn table(&self, model: &str) -> String {
        let per_step = |d: Duration| 1e3 * d.as_secs_f64() / self.steps as f64;
        let total = per_step(self.total);
        let share = |ms: f64| 100.0 * ms / total;
        // The widest op name sets the first column (`chars`: names hold `×` and `→`).
        let width = self
            .ops
            .iter()
            .map(|o| o.op.chars().count())
            .fold(30, usize::max);
        let mut out = format!(
            "\nwhere a step of {model} goes ({} steps; ms per step):\n{:<width$} {:>6} {:>9} {:>9} {:>9} {:>7}\n",
            self.steps, "op", "calls", "forward", "backward", "total", "share"
        );
        let mut accounted = per_step(self.optimizer);
        for op in &self.ops {
            let (f, b) = (per_step(op.forward), per_step(op.backward));
            accounted += f + b;
            out += &format!(
                "{:<width$} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>6.1}%\n",
                op.op,
                op.calls / self.steps,
                f,
                b,
                f + b,
                share(f + b)
            );
        }
        let optimizer = per_step(self.optimizer);
        let rest = total - accounted;
        for (label, ms) in [
            ("optimizer (zero_grad and step)", optimizer),
            ("in no op (graph walk, glue)", rest),
        ] {
            out += &format!("{label:<width$} {:>36.2} {:>6.1}%\n", ms, share(ms));
        }
        out += &format!("{:<width$} {total:>36.2}\n", "step");
        out
    }
}

/// [`measure`] in a child process of its own (so that its peak memory is its own).
fn measure_in_child(model: &str, args: &BenchArgs) -> Result<StepBench> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["bench", "--json", "--models", model]);
    cmd.args([
        "--steps",
        &args.steps.to_string(),
        "--warmup",
        &args.warmup.to_string(),
    ]);
    if let Some(t) = args.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd.args(["--image-size", &args.image_size.to_string()]);
    let out = cmd
        .output()
        .context("cannot start the bench child process")?;
    if !out.status.success() {
        bail!(
            "bench of {model} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("bench of {model} printed no JSON: {line}"))?;
    Ok(serde_json::from_value(value)?)
}

/// Each model's median round (by step time), with the largest peak memory of its rounds, the
/// number of rounds and its median rate relative to the first model of each round. `rounds`
/// holds one measurement per model, in the same order, for every round.
fn summarise(rounds: Vec<Vec<StepBench>>) -> Vec<StepBench> {
    let n = rounds.len();
    let ratios: Vec<Vec<f64>> = rounds
        .iter()
        .map(|round| {
            let first = round[0].gflop_per_s;
            round.iter().map(|r| r.gflop_per_s / first).collect()
        })
        .collect();
    let models = rounds[0].len();
    let mut by_model: Vec<Vec<StepBench>> = (0..models).map(|_| Vec::with_capacity(n)).collect();
    for round in rounds {
        for (j, r) in round.into_iter().enumerate() {
            by_model[j].push(r);
        }
    }
    by_model
        .into_iter()
        .enumerate()
        .map(|(j, mut runs)| {
            let peak = runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max);
            runs.sort_by(|a, b| a.step_seconds.total_cmp(&b.step_seconds));
            let mut vs_first: Vec<f64> = ratios.iter().map(|round| round[j]).collect();
            vs_first.sort_by(f64::total_cmp);
            let median = runs.swap_remove(n / 2);
            StepBench {
                peak_rss_mb: peak,
                rounds: n,
                rate_vs_first: vs_first[n / 2],
                ..median
            }
        })
        .collect()
}

/// One model's training step, ready to run: the model, its optimizer and a fixed batch of
/// two views.
struct Stepper {
    model: String,
    batch: usize,
    gflop_per_step: f64,
    simclr: SimClr,
    optimizer: Adam,
    views: Tensor,
}

impl Stepper {
    fn new(model: &str, side: usize) -> Result<Stepper> {
        let mut rng = StdRng::seed_from_u64(0);
        let resnet = |blocks: [usize; 4], width: usize, rng: &mut StdRng| {
            let encoder = ResNet::new(blocks, width, rng);
            let flops = resnet_forward_flops(blocks, width, side);
            (SimClr::resnet(encoder, rng), 128, [3, side, side], flops)
        };
        let (simclr, batch, image, forward_flops) = match model {
            "mnist" => (
                SimClr::mnist(&mut rng),
                256,
                [1, 28, 28],
                mnist_forward_flops(),
            ),
            "resnet18" => resnet([2; 4], 64, &mut rng),
            "resnet18-w32" => resnet([2; 4], 32, &mut rng),
            "resnet18-w16" => resnet([2; 4], 16, &mut rng),
            "resnet10-w24" => resnet([1; 4], 24, &mut rng),
            other => bail!(
                "unknown bench model `{other}` \
                 (expected mnist, resnet18, resnet18-w32, resnet18-w16 or resnet10-w24)"
            ),
        };
        Ok(Stepper {
            model: model.into(),
            batch,
            gflop_per_step: 3.0 * 2.0 * batch as f64 * forward_flops / 1e9,
            optimizer: Adam::new(simclr.parameters(), AdamConfig::adam(1e-3)),
            views: Tensor::randn(&[2 * batch, image[0], image[1], image[2]], &mut rng),
            simclr,
        })
    }

    /// One step; returns the time of its optimizer part (zero_grad and the update).
    fn step(&mut self) -> Duration {
        let t = Instant::now();
        self.optimizer.zero_grad();
        let mut optimizer = t.elapsed();
        profile::mark();
        let loss = nt_xent(&self.simclr.forward(&self.views), 0.5);
        loss.backward();
        let t = Instant::now();
        self.optimizer.step();
        optimizer += t.elapsed();
        optimizer
    }

    /// The figures of a step of `step_seconds`.
    fn bench(&self, step_seconds: f64) -> StepBench {
        StepBench {
            model: self.model.clone(),
            batch: self.batch,
            step_seconds,
            images_per_s: self.batch as f64 / step_seconds,
            gflop_per_step: self.gflop_per_step,
            gflop_per_s: self.gflop_per_step / step_seconds,
            peak_rss_mb: peak_rss_mb(),
            threads: rayon::current_num_threads(),
            rounds: 1,
            rate_vs_first: 1.0,
        }
    }
}

/// Times `steps` training steps of `model` after `warmup` untimed ones (and profiles them with
/// `--profile`).
fn measure(model: &str, args: &BenchArgs) -> Result<(StepBench, Option<StepProfile>)> {
    let mut stepper = Stepper::new(model, args.image_size)?;
    for _ in 0..args.warmup {
        stepper.step();
    }
    if args.profile {
        profile::start();
    }
    let mut optimizer = Duration::ZERO;
    let mut times: Vec<f64> = (0..args.steps.max(1))
        .map(|_| {
            let t = Instant::now();
            optimizer += stepper.step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let step_profile = args.profile.then(|| StepProfile {
        steps: times.len(),
        total: Duration::from_secs_f64(times.iter().sum()),
        optimizer,
        ops: profile::stop(),
    });
    times.sort_by(f64::total_cmp);
    Ok((stepper.bench(times[times.len() / 2]), step_profile))
}

/// `--interleave`: every model built in this process and warmed up, then `steps` turns of one
/// timed step each, in order; each turn is a round for [`summarise`].
fn interleaved(models: &[&str], args: &BenchArgs) -> Result<Vec<Vec<StepBench>>> {
    let mut steppers = models
        .iter()
        .map(|m| Stepper::new(m, args.image_size))
        .collect::<Result<Vec<_>>>()?;
    for stepper in &mut steppers {
        for _ in 0..args.warmup {
            stepper.step();
        }
    }
    let turns: Vec<Vec<f64>> = (0..args.steps.max(1))
        .map(|_| {
            let time = |s: &mut Stepper| {
                let t = Instant::now();
                s.step();
                t.elapsed().as_secs_f64()
            };
            steppers.iter_mut().map(time).collect()
        })
        .collect();
    Ok(turns
        .iter()
        .map(|turn| {
            steppers
                .iter()
                .zip(turn)
                .map(|(s, &seconds)| s.bench(seconds))
                .collect()
        })
        .collect())
}

/// FLOPs (2 per multiply-add) of a `cin → cout` convolution with a `k × k` kernel and
/// `out × out` outputs, or of a linear layer (`k = out = 1`), for one image.
fn layer_flops(cin: usize, cout: usize, k: usize, out: usize) -> f64 {
    2.0 * (cin * cout * k * k * out * out) as f64
}

/// The forward FLOPs of one image through the report's MNIST encoder and its head.
fn mnist_forward_flops() -> f64 {
    layer_flops(1, 32, 3, 28)
        + layer_flops(32, 64, 3, 14)
        + layer_flops(64 * 7 * 7, 128, 1, 1)
        + layer_flops(128, 256, 1, 1)
        + layer_flops(256, 128, 1, 1)
}

/// The forward FLOPs of one `side × side` image through a CIFAR-stem ResNet (`blocks` basic
/// blocks a stage, base width `width`) and its `8·width → 256 → 128` head.
fn resnet_forward_flops(blocks: [usize; 4], width: usize, side: usize) -> f64 {
    let mut flops = layer_flops(3, width, 3, side);
    let (mut channels, mut size) = (width, side);
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = width << stage;
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let out = (size - 1) / stride + 1; // 3×3 with padding 1, and 1×1, alike
            flops += layer_flops(channels, planes, 3, out) + layer_flops(planes, planes, 3, out);
            if stride != 1 || channels != planes {
                flops += layer_flops(channels, planes, 1, out);
            }
            (channels, size) = (planes, out);
        }
    }
    flops + layer_flops(channels, 256, 1, 1) + layer_flops(256, 128, 1, 1)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), 0 where unknown.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(model: &str, step_seconds: f64, gflop_per_step: f64, peak_rss_mb: f64) -> StepBench {
        StepBench {
            model: model.into(),
            batch: 128,
            step_seconds,
            images_per_s: 128.0 / step_seconds,
            gflop_per_step,
            gflop_per_s: gflop_per_step / step_seconds,
            peak_rss_mb,
            threads: 2,
            rounds: 1,
            rate_vs_first: 1.0,
        }
    }

    #[test]
    fn rounds_give_each_model_its_median_round_and_a_rate_against_its_neighbour() {
        // The host slows down 2× in round 2; "narrow" does 1/10 of the work in 1/4 of the time
        // of "wide" in every round, so its rate against wide's stays 0.4 throughout.
        let rounds = vec![
            vec![
                bench("wide", 1.0, 100.0, 900.0),
                bench("narrow", 0.25, 10.0, 300.0),
            ],
            vec![
                bench("wide", 2.0, 100.0, 950.0),
                bench("narrow", 0.5, 10.0, 310.0),
            ],
            vec![
                bench("wide", 1.2, 100.0, 920.0),
                bench("narrow", 0.3, 10.0, 305.0),
            ],
        ];
        let got = summarise(rounds);
        assert_eq!(got.len(), 2);
        let (wide, narrow) = (&got[0], &got[1]);
        assert_eq!(
            (wide.model.as_str(), narrow.model.as_str()),
            ("wide", "narrow")
        );
        // The median round: 1.2 s and 0.3 s, with the rates and images/s of that round.
        assert_eq!((wide.step_seconds, narrow.step_seconds), (1.2, 0.3));
        assert!((narrow.images_per_s - 128.0 / 0.3).abs() < 1e-9);
        assert!((narrow.gflop_per_s - 10.0 / 0.3).abs() < 1e-9);
        // The largest peak memory of any round, and the count of rounds.
        assert_eq!((wide.peak_rss_mb, narrow.peak_rss_mb), (950.0, 310.0));
        assert_eq!((wide.rounds, narrow.rounds), (3, 3));
        assert_eq!(wide.rate_vs_first, 1.0);
        assert!((narrow.rate_vs_first - 0.4).abs() < 1e-12);
    }

    #[test]
    fn interleaving_times_every_model_once_per_turn() {
        let args = BenchArgs {
            steps: 2,
            warmup: 0,
            models: "mnist,mnist".into(),
            json: true,
            threads: None,
            image_size: 32,
            rounds: 1,
            interleave: true,
            profile: false,
        };
        let turns = interleaved(&["mnist", "mnist"], &args).unwrap();
        assert_eq!(turns.len(), 2);
        for turn in &turns {
            assert_eq!(turn.len(), 2);
            assert!(turn
                .iter()
                .all(|b| b.model == "mnist" && b.step_seconds > 0.0));
        }
        let summary = summarise(turns);
        assert_eq!(summary[1].rounds, 2);
        assert!(interleaved(&["mnist", "nope"], &args).is_err());
    }

    #[test]
    fn one_round_reports_the_measurement_itself() {
        let got = summarise(vec![vec![bench("mnist", 0.1, 13.5, 72.0)]]);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].step_seconds, got[0].rounds), (0.1, 1));
        assert_eq!(got[0].rate_vs_first, 1.0);
    }

    #[test]
    fn flop_counts_match_the_published_figures() {
        // ResNet-18 with the CIFAR stem at 32 px: 0.56 G multiply-adds an image, so a step of
        // 128 images (two views, forward and both gradients) is ≈ 855 GFLOP.
        let step = 3.0 * 2.0 * 128.0 * resnet_forward_flops([2; 4], 64, 32) / 1e9;
        assert!((850.0..860.0).contains(&step), "{step}");
        // ResNet-10 at width 24 costs about what ResNet-18 at width 16 does (1.03×).
        let w16 = resnet_forward_flops([2; 4], 16, 24);
        let r10 = resnet_forward_flops([1; 4], 24, 24);
        assert!((1.0..1.06).contains(&(r10 / w16)), "{}", r10 / w16);
        // The MNIST encoder: 0.23 + 3.61 + 0.40 M multiply-adds, and 0.07 M in the head.
        let mnist = mnist_forward_flops() / 2.0;
        assert_eq!(mnist, 4_305_408.0);
    }
}
