//! The directory a run leaves behind: `config.json`, `metrics.jsonl`, checkpoints,
//! `results.json`, `report.md` and the plots.
//!
//! A run owns its directory: a new run refuses one that already holds files (unless told to
//! overwrite it), and while it runs it holds `run.lock` (its process id), so a second run
//! into the same directory is refused instead of interleaving with the first. A lock left by
//! a killed run (its process gone) is taken over, so the killed run can be resumed.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// An open run directory with its metrics log; the lock is released when it is dropped.
pub struct RunDir {
    /// Where the run's files go.
    pub path: PathBuf,
    metrics: BufWriter<File>,
    lock: PathBuf,
}

/// How a run takes its directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// A new run: the directory must be missing or empty, unless `overwrite` (then the old
    /// log and checkpoint are removed first).
    New {
        /// Start over in a directory that holds an earlier run.
        overwrite: bool,
    },
    /// `--resume`: the directory holds the run (the caller has checked its checkpoint); the
    /// log continues.
    Resume,
}

impl RunDir {
    /// The directory `out`, or a new `runs/<dataset>-<UTC time>` when `out` is `None`.
    pub fn path_for(out: Option<&Path>, dataset: &str) -> PathBuf {
        match out {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("runs").join(format!("{dataset}-{}", utc_timestamp())),
        }
    }

    /// Takes `path` for a run as `claim` says: creates it if needed, takes its lock, and opens
    /// `metrics.jsonl` for appending (a resumed run continues its log).
    pub fn open(path: PathBuf, claim: Claim) -> Result<RunDir> {
        let occupied = fs::read_dir(&path).is_ok_and(|mut entries| entries.next().is_some());
        if claim == (Claim::New { overwrite: false }) && occupied {
            bail!(
                "the run directory {} already holds files; continue that run with --resume, \
                 start it over with --overwrite, or choose another --out",
                path.display()
            );
        }
        fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        let lock = take_lock(&path)?;
        remove_stale_temporaries(&path);
        let metrics_path = path.join("metrics.jsonl");
        if claim == (Claim::New { overwrite: true }) {
            for old in [metrics_path.clone(), path.join(CHECKPOINT_FILE)] {
                if let Err(e) = fs::remove_file(&old) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        let _ = fs::remove_file(&lock);
                        return Err(e).with_context(|| format!("cannot remove {}", old.display()));
                    }
                }
            }
        }
        let file = repair_tail(&metrics_path).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&metrics_path)
                .with_context(|| format!("cannot open {}", metrics_path.display()))
        });
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_file(&lock);
                return Err(e);
            }
        };
        Ok(RunDir {
            path,
            metrics: BufWriter::new(file),
            lock,
        })
    }

    /// A file inside the run directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `value` as pretty JSON to `name`, atomically (temp file + rename).
    pub fn write_json(&self, name: &str, value: &impl Serialize) -> Result<()> {
        let text = serde_json::to_string_pretty(value)?;
        self.write_text(name, &text)
    }

    /// Writes `text` to `name`, atomically.
    pub fn write_text(&self, name: &str, text: &str) -> Result<()> {
        let target = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &target).with_context(|| format!("cannot write {}", target.display()))?;
        Ok(())
    }

    /// Appends one JSON object as a line of `metrics.jsonl`, in one write.
    pub fn log(&mut self, record: serde_json::Value) -> Result<()> {
        let mut line = serde_json::to_vec(&record)?;
        line.push(b'\n');
        self.metrics
            .write_all(&line)
            .and_then(|()| self.metrics.flush())
            .with_context(|| format!("cannot append to {}", self.file("metrics.jsonl").display()))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.lock);
    }
}

/// The checkpoint's file name (removed by `--overwrite`).
const CHECKPOINT_FILE: &str = simclr_contrastive::checkpoint::CHECKPOINT_FILE;

/// Cuts an incomplete last line (a write cut short by a full disk or a kill) off `metrics`, so
/// the next record starts a line of its own and every line of the log parses.
fn repair_tail(metrics: &Path) -> Result<()> {
    let bytes = match fs::read(metrics) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", metrics.display())),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let whole_lines = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    OpenOptions::new()
        .write(true)
        .open(metrics)
        .and_then(|f| f.set_len(whole_lines as u64))
        .with_context(|| format!("cannot repair the torn last line of {}", metrics.display()))
}

/// Creates `dir/run.lock` holding this process's id; a lock whose process no longer runs is
/// stale and taken over.
fn take_lock(dir: &Path) -> Result<PathBuf> {
    let lock = dir.join("run.lock");
    for _ in 0..2 {
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(mut f) => {
                write!(f, "{}", std::process::id())
                    .with_context(|| format!("cannot write {}", lock.display()))?;
                return Ok(lock);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = fs::read_to_string(&lock).unwrap_or_default();
                let alive = holder
                    .trim()
                    .parse::<u32>()
                    .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                if alive {
                    bail!(
                        "another run (process {}) is using {}; wait for it, or delete {} if \
                         no run is",
                        holder.trim(),
                        dir.display(),
                        lock.display()
                    );
                }
                // Left by a killed run: take it over.
                fs::remove_file(&lock)
                    .with_context(|| format!("cannot remove the stale {}", lock.display()))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", lock.display()));
            }
        }
    }
    bail!(
        "cannot take {}: another run keeps taking it",
        lock.display()
    )
}

/// Removes the temporary files (`.<name>.tmp…`) that a run killed in the middle of an atomic
/// write leaves behind; safe once the lock is held, as no other run writes here.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp") && entry.path().is_file() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The current commit of the checkout, or "unknown" outside git.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `YYYYMMDD-HHMMSS` in UTC, for run names.
pub fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("simclr-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_new_run_refuses_an_occupied_directory_unless_told_to_overwrite() {
        let dir = scratch_dir("occupied");
        fs::write(dir.join("metrics.jsonl"), "{}\n").unwrap();
        fs::write(dir.join(CHECKPOINT_FILE), "old").unwrap();
        let err = RunDir::open(dir.clone(), Claim::New { overwrite: false })
            .err()
            .expect("refused");
        assert!(err.to_string().contains("--resume"), "{err}");
        assert!(
            dir.join(CHECKPOINT_FILE).exists(),
            "a refusal changes nothing"
        );
        let run = RunDir::open(dir.clone(), Claim::New { overwrite: true }).unwrap();
        assert!(!dir.join(CHECKPOINT_FILE).exists());
        assert_eq!(fs::read_to_string(dir.join("metrics.jsonl")).unwrap(), "");
        drop(run);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_lock_refuses_a_second_run_and_a_dead_runs_lock_and_temporaries_are_cleared() {
        let dir = scratch_dir("lock");
        let first = RunDir::open(dir.clone(), Claim::Resume).unwrap();
        let err = RunDir::open(dir.clone(), Claim::Resume)
            .err()
            .expect("a second run is refused");
        assert!(err.to_string().contains("another run"), "{err}");
        drop(first);
        assert!(!dir.join("run.lock").exists(), "the lock goes with the run");
        // A killed run: its lock names a process that is gone, its temporary file stayed.
        fs::write(dir.join("run.lock"), u32::MAX.to_string()).unwrap();
        let tmp = dir.join(".checkpoint.safetensors.tmp-12345");
        fs::write(&tmp, "torn").unwrap();
        let run = RunDir::open(dir.clone(), Claim::Resume).unwrap();
        assert!(!tmp.exists());
        let holder = fs::read_to_string(dir.join("run.lock")).unwrap();
        assert_eq!(holder, std::process::id().to_string());
        drop(run);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_of_the_log_is_cut_before_the_run_appends() {
        let dir = scratch_dir("torn");
        let whole = "{\"phase\":\"pretrain\"}\n";
        fs::write(
            dir.join("metrics.jsonl"),
            format!("{whole}{{\"phase\":\"pre"),
        )
        .unwrap();
        let mut run = RunDir::open(dir.clone(), Claim::Resume).unwrap();
        run.log(serde_json::json!({ "phase": "classifier" }))
            .unwrap();
        let text = fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(text, format!("{whole}{{\"phase\":\"classifier\"}}\n"));
        drop(run);
        fs::remove_dir_all(&dir).unwrap();
    }
}
