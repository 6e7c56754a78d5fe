//! Frozen features: the encoder applied once to a whole image set, without building a graph.
//!
//! Linear and kNN evaluation both train nothing inside the encoder, so its features are
//! computed once — in eval mode (BatchNorm uses its running statistics), under
//! [`no_grad`], batch by batch — and cached as one `[N, F]` tensor.

use simclr_data::{ImageSet, Normalize};
use simclr_nn::Module;
use simclr_tensor::{no_grad, Tensor};

/// Features of every image of `set` (normalised with `norm`, no augmentation) as `[N, F]`,
/// computed `batch_size` images at a time. Leaves `encoder` in eval mode.
pub fn extract_features(
    encoder: &dyn Module,
    set: &ImageSet,
    norm: &Normalize,
    batch_size: usize,
) -> Tensor {
    let images = set.to_normalized(norm);
    let [c, h, w] = set.shape();
    features_of(encoder, &images, [c, h, w], batch_size)
}

/// Features of normalised images `images` (`[N, C, H, W]` flattened) as `[N, F]`, in batches.
/// Leaves `encoder` in eval mode.
pub fn features_of(
    encoder: &dyn Module,
    images: &[f32],
    shape: [usize; 3],
    batch_size: usize,
) -> Tensor {
    let per = shape.iter().product::<usize>();
    assert!(
        per > 0 && images.len() / per * per == images.len(),
        "features_of: {} values are not whole images of shape {shape:?}",
        images.len()
    );
    let n = images.len() / per;
    encoder.eval();
    let batch_size = batch_size.max(1);
    no_grad(|| {
        let mut out: Vec<f32> = Vec::new();
        let mut dim = 0;
        for start in (0..n).step_by(batch_size) {
            let end = (start + batch_size).min(n);
            let x = Tensor::from_vec(
                images[start * per..end * per].to_vec(),
                &[end - start, shape[0], shape[1], shape[2]],
            );
            let f = encoder.forward(&x);
            dim = f.numel() / (end - start);
            if out.capacity() == 0 {
                out.reserve_exact(n * dim);
            }
            out.extend_from_slice(&f.data());
        }
        Tensor::from_vec(out, &[n, dim])
    })
}
