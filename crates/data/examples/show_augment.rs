//! Writes a PNG grid of augmented pairs from the real data, for a visual check:
//!
//! ```text
//! SIMCLR_DATA_DIR=../shared/data cargo run -p simclr-data --example show_augment -- cifar10 simclr grid.png
//! ```
//!
//! Arguments: dataset (`mnist` | `cifar10`), recipe (`report` | `simclr` | `none`), output path.

use std::path::PathBuf;

use simclr_data::{augment_grid_png, cifar10, mnist, resolve_data_dir, DatasetKind, Recipe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let kind: DatasetKind = args
        .first()
        .map(String::as_str)
        .unwrap_or("mnist")
        .parse()?;
    let recipe: Recipe = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("simclr")
        .parse()?;
    let out = PathBuf::from(args.get(2).map(String::as_str).unwrap_or("augment.png"));
    let dir = resolve_data_dir(None);
    let (train, _) = match kind {
        DatasetKind::Mnist => mnist::load(&dir.join(mnist::DIR))?,
        DatasetKind::Cifar10 => cifar10::load(&dir.join(cifar10::DIR))?,
    };
    augment_grid_png(&train, recipe, kind, 16, 0, &out)?;
    println!("wrote {}", out.display());
    Ok(())
}
