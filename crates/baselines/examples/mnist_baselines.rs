//! Runs both baselines on the report's MNIST split and prints accuracy / NMI / ARI / fit time.
//!
//! ```text
//! SIMCLR_DATA_DIR=/path/to/data cargo run --release -p simclr-baselines --example mnist_baselines [n_train]
//! ```
//!
//! Fits on train images `0..n_train` (default 24,000, the images the SimCLR encoder is
//! pretrained on) and evaluates on the 10,000 test images. The runner (`cargo xtask baselines`)
//! does the same through the `data` crate; this example only needs the four `.gz` files.

#[path = "../tests/common/mod.rs"]
mod common;

use simclr_baselines::{run_baselines, BaselineConfig, Features};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = common::mnist_dir("mnist_baselines example") else {
        return Ok(());
    };
    let n_fit: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(24_000);
    let (train, test) = common::load_mnist(&dir);
    let ppi = train.pixels_per_image;
    let n_fit = n_fit.min(train.labels.len());
    let train = Features::from_u8_images(
        &train.images[..n_fit * ppi],
        n_fit,
        ppi,
        Some(&train.labels[..n_fit]),
    )?;
    let test = Features::from_u8_images(&test.images, test.labels.len(), ppi, Some(&test.labels))?;
    let cfg = BaselineConfig::default();
    println!("config: {}", serde_json::to_string(&cfg)?);
    let t = std::time::Instant::now();
    for r in run_baselines(&train, &test, &cfg)? {
        println!("{}", r.summary());
        println!("{}", serde_json::to_string(&r)?);
    }
    println!("total {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
