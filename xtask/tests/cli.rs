//! The runner as a user meets it, on a small generated MNIST-shaped dataset:
//!
//! * a careless or hostile user's files: a few hundred seeded mutations of the dataset (bytes
//!   flipped, header fields replaced, files cut short or lengthened), each run through
//!   `xtask mnist` to the end. Every run must either succeed or fail with one `error:` line —
//!   never panic, hang or die on a signal;
//! * a run killed with SIGKILL in the middle of pretraining and resumed ends with a checkpoint
//!   byte-identical to an unbroken run's; resuming a finished run changes nothing and reports
//!   the whole run's pretraining time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
const TRAIN: u32 = 160;
const TEST: u32 = 40;
const MUTATIONS: usize = 240;
/// Far more than a run of this size needs (well under a second): beyond it, a run hangs.
const TIME_LIMIT: Duration = Duration::from_secs(60);

fn idx(magic: u32, dims: &[u32], data: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend(data);
    v
}

/// The four files of a valid MNIST-shaped dataset of `TRAIN` + `TEST` images.
fn clean_files() -> [Vec<u8>; 4] {
    let images = |n: u32| {
        idx(
            0x803,
            &[n, 28, 28],
            (0..n * 784).map(|i| (i * 7 % 251) as u8),
        )
    };
    let labels = |n: u32| idx(0x801, &[n], (0..n).map(|i| (i % 10) as u8));
    [images(TRAIN), labels(TRAIN), images(TEST), labels(TEST)]
}

/// One seeded mutation of one of the files; says what it did.
fn mutate(files: &mut [Vec<u8>; 4], rng: &mut StdRng) -> String {
    let which = rng.gen_range(0..4);
    let f = &mut files[which];
    let what = match rng.gen_range(0..6) {
        0 => {
            let i = rng.gen_range(0..f.len());
            f[i] ^= 1 << rng.gen_range(0..8);
            format!("bit flipped at byte {i}")
        }
        1 => {
            // A header field (magic, count, rows, columns) replaced.
            let header_fields = if which % 2 == 0 { 4 } else { 2 };
            let field = rng.gen_range(0..header_fields);
            let value: u32 = match rng.gen_range(0..4) {
                0 => 0,
                1 => u32::MAX,
                2 => rng.gen_range(0..1000),
                _ => rng.gen(),
            };
            f[field * 4..field * 4 + 4].copy_from_slice(&value.to_be_bytes());
            format!("header field {field} set to {value}")
        }
        2 => {
            let n = rng.gen_range(0..f.len());
            f.truncate(n);
            format!("cut to {n} bytes")
        }
        3 => {
            let n = rng.gen_range(1..2000);
            f.extend((0..n).map(|_| rng.gen::<u8>()));
            format!("{n} random bytes appended")
        }
        4 => {
            let i = rng.gen_range(0..f.len());
            let label = rng.gen_range(10..=255u8);
            f[i] = label;
            format!("byte {i} set to {label}")
        }
        _ => {
            let n = rng.gen_range(0..64);
            *f = (0..n).map(|_| rng.gen()).collect();
            format!("replaced by {n} random bytes")
        }
    };
    format!("{}: {what}", FILES[which])
}

/// How one run ended: its exit code (`None` if killed by a signal or the time limit) and its
/// standard error.
struct Ending {
    code: Option<i32>,
    stderr: String,
}

/// Writes `files` as the MNIST files of the data directory `data_dir`.
fn write_dataset(data_dir: &Path, files: &[Vec<u8>; 4]) {
    let mnist = data_dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    for (name, bytes) in FILES.iter().zip(files) {
        std::fs::write(mnist.join(name), bytes).unwrap();
    }
}

/// `xtask mnist` on the generated data in `data_dir` with `extra` flags, a small and quick run.
fn xtask_mnist(data_dir: &Path, epochs: usize, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args([
        "mnist",
        "--no-baselines",
        "--allow-modified-data",
        "--knn-monitor",
        "0",
    ])
    .args(["--pretrain-range", "0..120", "--labeled-range", "120..160"])
    .args(["--epochs", &epochs.to_string(), "--classifier-epochs", "1"])
    .args(["--batch-size", "16", "--threads", "1"])
    .arg("--data-dir")
    .arg(data_dir)
    .args(extra)
    .env_remove("SIMCLR_DATA_DIR")
    .stdout(Stdio::null());
    cmd
}

/// Runs one epoch on `data_dir` into `dir/run`, killing it after `TIME_LIMIT`.
fn run(data_dir: &Path, dir: &Path) -> Ending {
    let stderr_path = dir.join("stderr.txt");
    let out = dir.join("run");
    let mut child = xtask_mnist(data_dir, 1, &["--overwrite", "--out", path_str(&out)])
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the xtask binary runs");
    let deadline = Instant::now() + TIME_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ending {
        code: status.and_then(|s| s.code()),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

#[test]
fn mutated_mnist_files_never_panic_the_runner() {
    let scratch = tempfile::tempdir().unwrap();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let started = Instant::now();
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let root: PathBuf = scratch.path().join(format!("w{w}"));
                s.spawn(move || {
                    let mut failures = Vec::new();
                    for case in (w..MUTATIONS).step_by(workers) {
                        let mut rng = StdRng::seed_from_u64(case as u64);
                        let mut files = clean_files();
                        // The first case of each worker runs the clean files.
                        let what = if case < workers {
                            "clean files".to_string()
                        } else {
                            mutate(&mut files, &mut rng)
                        };
                        write_dataset(&root.join("data"), &files);
                        let end = run(&root.join("data"), &root);
                        let clean_exit = match end.code {
                            Some(0) => true,
                            Some(1) => end.stderr.lines().any(|l| l.starts_with("error: ")),
                            _ => false,
                        };
                        if !clean_exit || (case < workers && end.code != Some(0)) {
                            failures.push(format!(
                                "case {case} ({what}): exit code {:?}\n{}",
                                end.code, end.stderr
                            ));
                        }
                    }
                    failures
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{} of {MUTATIONS} runs did not end cleanly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("{MUTATIONS} runs in {:.1?}", started.elapsed());
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Two runs of `epochs` epochs on the clean dataset, in a scratch directory: `unbroken`, run
/// to its end when the pair is made, and `killed`, for a test to kill and resume.
struct UnbrokenAndKilled {
    _scratch: tempfile::TempDir,
    data: PathBuf,
    epochs: usize,
    unbroken: PathBuf,
    killed: PathBuf,
}

impl UnbrokenAndKilled {
    fn new(epochs: usize) -> UnbrokenAndKilled {
        let scratch = tempfile::tempdir().unwrap();
        let data = scratch.path().join("data");
        write_dataset(&data, &clean_files());
        let runs = UnbrokenAndKilled {
            unbroken: scratch.path().join("unbroken"),
            killed: scratch.path().join("killed"),
            _scratch: scratch,
            data,
            epochs,
        };
        runs.run_to_end(&["--out", path_str(&runs.unbroken)]);
        runs
    }

    /// `xtask mnist` on the dataset with `flags`, run to its end: it must succeed.
    fn run_to_end(&self, flags: &[&str]) {
        let status = xtask_mnist(&self.data, self.epochs, flags)
            .status()
            .unwrap();
        assert!(status.success(), "xtask mnist {flags:?} failed");
    }

    /// Starts the `killed` run with `flags` and SIGKILLs it once its metrics log has an event
    /// of kind `event` (before the run ends).
    fn start_and_kill_once_logged(&self, flags: &[&str], event: &str) {
        let mut child = xtask_mnist(&self.data, self.epochs, &["--out", path_str(&self.killed)])
            .args(flags)
            .spawn()
            .unwrap();
        let logged = format!(r#""event":"{event}""#);
        while !std::fs::read_to_string(self.metrics()).is_ok_and(|t| t.contains(&logged)) {
            assert!(child.try_wait().unwrap().is_none(), "the run ended first");
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap();
        assert!(
            !child.wait().unwrap().success(),
            "the run was killed before its end"
        );
    }

    /// The `killed` run's metrics log.
    fn metrics(&self) -> PathBuf {
        self.killed.join("metrics.jsonl")
    }

    fn assert_same_checkpoints(&self) {
        let checkpoint = |dir: &Path| std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
        assert!(
            checkpoint(&self.unbroken) == checkpoint(&self.killed),
            "the resumed run's checkpoint differs from the unbroken run's"
        );
    }
}

#[test]
fn a_killed_run_resumes_to_the_unbroken_runs_checkpoint_byte_for_byte() {
    let runs = UnbrokenAndKilled::new(12);
    // SIGKILL once the first epoch's checkpoint is written.
    runs.start_and_kill_once_logged(&[], "epoch");
    runs.run_to_end(&["--resume", path_str(&runs.killed)]);
    runs.assert_same_checkpoints();

    // Resuming the finished run pretrains no more and reports the whole run, not 0 s.
    let pretrain_seconds = |dir: &Path| {
        let text = std::fs::read_to_string(dir.join("results.json")).unwrap();
        let results: serde_json::Value = serde_json::from_str(&text).unwrap();
        results["pretrain_seconds"].as_f64().unwrap()
    };
    let finished = pretrain_seconds(&runs.unbroken);
    runs.run_to_end(&["--resume", path_str(&runs.unbroken)]);
    assert!(finished > 0.0);
    assert_eq!(pretrain_seconds(&runs.unbroken), finished);
    runs.assert_same_checkpoints();
}

#[test]
fn a_run_killed_after_a_checkpoint_inside_an_epoch_resumes_byte_for_byte() {
    let runs = UnbrokenAndKilled::new(4);
    // Checkpoints after every step; SIGKILL once one inside an epoch is written.
    let every_step = ["--checkpoint-minutes", "0"];
    runs.start_and_kill_once_logged(&every_step, "checkpoint");
    // Inside an epoch, unless the kill came after an epoch's last step.
    let stopped_at = simclr_contrastive::read_run_state(&runs.killed)
        .unwrap()
        .expect("a checkpoint")
        .epoch_progress
        .batches;
    runs.run_to_end(&[&["--resume", path_str(&runs.killed)][..], &every_step].concat());
    runs.assert_same_checkpoints();

    let log = std::fs::read_to_string(runs.metrics()).unwrap();
    let resumed = log
        .lines()
        .filter(|l| l.contains(r#""event":"started""#))
        .nth(1)
        .expect("a started event of the resumed process");
    let resumed: serde_json::Value = serde_json::from_str(resumed).unwrap();
    assert_eq!(resumed["data"]["resumed"], true);
    assert_eq!(resumed["data"]["start_batch"], stopped_at);
}
