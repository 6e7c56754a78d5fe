//! A PNG grid of augmented pairs, to check a recipe by eye (`cargo xtask show-augment`).
//!
//! Each cell shows three images side by side — the original, view 0, view 1 — exactly as the
//! loader would make them in epoch 0 (same seeds), before normalisation, magnified with
//! nearest-neighbour scaling. Cells are laid out `per_row` to a row with 2-pixel gutters.

use std::path::Path;

use crate::augment::{image_rng, Image, Recipe, Scratch};
use crate::error::{DataError, Result};
use crate::normalize::DatasetKind;
use crate::ImageSet;

/// Cells per grid row.
pub const PER_ROW: usize = 4;
/// Magnification of each image.
pub const SCALE: usize = 4;
const GAP: usize = 2;

/// Writes to `out` a PNG of `n_pairs` images of `set` (evenly spaced through the set), each
/// next to its two views under `recipe` for the run seed `seed` (as in epoch 0).
pub fn augment_grid_png(
    set: &ImageSet,
    recipe: Recipe,
    kind: DatasetKind,
    n_pairs: usize,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let n = n_pairs.min(set.len());
    if n == 0 {
        return Err(DataError::Invalid("no image to draw".into()));
    }
    let [c, h, w] = set.shape();
    let pipelines = recipe.pipelines(kind);
    for p in &pipelines {
        if p.output_shape([c, h, w]) != [c, h, w] {
            return Err(DataError::Invalid(
                "the recipe changes the image size".into(),
            ));
        }
    }
    let (ch, cw) = (h * SCALE, w * SCALE);
    let cell_w = 3 * cw + 2 * GAP;
    let cols = n.min(PER_ROW);
    let rows = n.div_ceil(PER_ROW);
    let (gw, gh) = (cols * (cell_w + 4 * GAP), rows * (ch + 4 * GAP));
    let mut canvas = image::RgbImage::from_pixel(gw as u32, gh as u32, image::Rgb([64, 64, 64]));
    let step = (set.len() / n).max(1);
    let (mut img, mut s) = (Image::default(), Scratch::default());
    for k in 0..n {
        let index = k * step;
        let Some(src) = set.image(index) else { break };
        let (x0, y0) = (
            (k % PER_ROW) * (cell_w + 4 * GAP) + 2 * GAP,
            (k / PER_ROW) * (ch + 4 * GAP) + 2 * GAP,
        );
        for panel in 0..3 {
            img.load_u8(src, c, h, w);
            if panel > 0 {
                let view = panel - 1;
                let mut rng = image_rng(seed, 0, index as u64, view as u64);
                pipelines[view].apply(&mut img, &mut s, &mut rng);
            }
            let px = img.to_u8();
            let hw = h * w;
            let xo = x0 + panel * (cw + GAP);
            for y in 0..ch {
                for x in 0..cw {
                    let p = (y / SCALE) * w + x / SCALE;
                    let rgb = if c >= 3 {
                        [px[p], px[hw + p], px[2 * hw + p]]
                    } else {
                        [px[p]; 3]
                    };
                    canvas.put_pixel((xo + x) as u32, (y0 + y) as u32, image::Rgb(rgb));
                }
            }
        }
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DataError::Io {
            file: dir.to_path_buf(),
            source,
        })?;
    }
    canvas
        .save_with_format(out, image::ImageFormat::Png)
        .map_err(|e| DataError::ImageWrite {
            file: out.to_path_buf(),
            reason: e.to_string(),
        })
}
