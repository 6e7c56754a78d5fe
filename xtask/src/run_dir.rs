//! The directory a run leaves behind: `config.json`, `metrics.jsonl`, checkpoints,
//! `results.json`, `report.md` and the plots.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// An open run directory with its metrics log.
pub struct RunDir {
    /// Where the run's files go.
    pub path: PathBuf,
    metrics: BufWriter<File>,
}

impl RunDir {
    /// Opens `out`, or a new `runs/<dataset>-<UTC time>` when `out` is `None`; creates it if
    /// needed and appends to an existing `metrics.jsonl` (a resumed run continues its log).
    pub fn open(out: Option<&Path>, dataset: &str) -> Result<RunDir> {
        let path = match out {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("runs").join(format!("{dataset}-{}", utc_timestamp())),
        };
        fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the run directory {}", path.display()))?;
        let metrics_path = path.join("metrics.jsonl");
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("cannot open {}", metrics_path.display()))?;
        Ok(RunDir {
            path,
            metrics: BufWriter::new(file),
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

    /// Appends one JSON object as a line of `metrics.jsonl`.
    pub fn log(&mut self, record: serde_json::Value) -> Result<()> {
        serde_json::to_writer(&mut self.metrics, &record)?;
        self.metrics.write_all(b"\n")?;
        self.metrics.flush()?;
        Ok(())
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
