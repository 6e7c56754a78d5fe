//! `cargo xtask bench`: images/s of one whole SimCLR training step.
//!
//! A step is what pretraining does per batch: B source images → 2B views as one batch →
//! encoder → projection head → NT-Xent → backward → optimizer step. Inputs are fixed random
//! tensors, so only the model's compute is timed (the loader runs on its own thread and is
//! measured by the data crate's bench). Each model runs in a child process of its own, so its
//! peak resident memory (`VmHWM`) is its own.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::{rngs::StdRng, SeedableRng};
use serde::{Deserialize, Serialize};
use simclr_contrastive::{nt_xent, SimClr};
use simclr_nn::{Adam, AdamConfig, Module, Optimizer};
use simclr_tensor::Tensor;

use crate::cli::BenchArgs;

/// One model's measurement.
#[derive(Serialize, Deserialize, Debug)]
pub struct StepBench {
    /// `mnist` or `resnet18`.
    pub model: String,
    /// Source images per step (each passes the encoder twice, as two views).
    pub batch: usize,
    /// Median seconds per step.
    pub step_seconds: f64,
    /// Source images per second at the median step time.
    pub images_per_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// Threads used.
    pub threads: usize,
}

/// Runs the bench: one child process per model, then a table or JSON lines.
pub fn run(args: &BenchArgs) -> Result<()> {
    let models: Vec<&str> = args
        .models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .collect();
    let mut results = Vec::new();
    if models.len() == 1 {
        results.push(measure(models[0], args)?);
    } else {
        let exe = std::env::current_exe()?;
        for model in &models {
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
            results.push(serde_json::from_value::<StepBench>(value)?);
        }
    }
    if args.json {
        for r in &results {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        println!(
            "{:<10} {:>6} {:>12} {:>12} {:>12} {:>8}",
            "model", "batch", "step (s)", "images/s", "peak MiB", "threads"
        );
        for r in &results {
            println!(
                "{:<10} {:>6} {:>12.4} {:>12.1} {:>12.0} {:>8}",
                r.model, r.batch, r.step_seconds, r.images_per_s, r.peak_rss_mb, r.threads
            );
        }
    }
    Ok(())
}

/// Times `steps` training steps of `model` after `warmup` untimed ones.
fn measure(model: &str, args: &BenchArgs) -> Result<StepBench> {
    let mut rng = StdRng::seed_from_u64(0);
    let side = args.image_size;
    let (simclr, batch, image) = match model {
        "mnist" => (SimClr::mnist(&mut rng), 256, [1, 28, 28]),
        "resnet18" => (SimClr::resnet18(64, &mut rng), 128, [3, side, side]),
        "resnet18-w32" => (SimClr::resnet18(32, &mut rng), 128, [3, side, side]),
        "resnet18-w16" => (SimClr::resnet18(16, &mut rng), 128, [3, side, side]),
        "resnet10-w24" => {
            let encoder = simclr_nn::ResNet::resnet10(24, &mut rng);
            (SimClr::resnet(encoder, &mut rng), 128, [3, side, side])
        }
        other => bail!(
            "unknown bench model `{other}` \
             (expected mnist, resnet18, resnet18-w32, resnet18-w16 or resnet10-w24)"
        ),
    };
    let mut opt = Adam::new(simclr.parameters(), AdamConfig::adam(1e-3));
    let views = Tensor::randn(&[2 * batch, image[0], image[1], image[2]], &mut rng);
    let mut step = || {
        opt.zero_grad();
        let loss = nt_xent(&simclr.forward(&views), 0.5);
        loss.backward();
        opt.step();
    };
    for _ in 0..args.warmup {
        step();
    }
    let mut times: Vec<f64> = (0..args.steps.max(1))
        .map(|_| {
            let t = Instant::now();
            step();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(StepBench {
        model: model.into(),
        batch,
        step_seconds: median,
        images_per_s: batch as f64 / median,
        peak_rss_mb: peak_rss_mb(),
        threads: rayon::current_num_threads(),
    })
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
