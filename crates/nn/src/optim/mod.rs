//! Optimizers and learning-rate schedules.
//!
//! An optimizer holds handles to the parameter tensors it was given (sharing their buffers with
//! the model) plus its own per-parameter state, and [`Optimizer::step`] updates the parameters
//! in place from the gradients that `backward()` left in them. Updates are plain loops over
//! slices that the compiler vectorises, split into rayon chunks for large tensors; they never
//! touch the autodiff graph.
//!
//! State (moment estimates, momentum buffers, step counts) is exposed as named tensors —
//! `"{index}.exp_avg"`, `"{index}.step"`, … with the parameter's position in the list given to
//! the constructor, as in a PyTorch optimizer state dict — so checkpoints can save and restore
//! it and a resumed run continues bit-identically.
//!
//! * [`Adam`]: Adam and AdamW (`torch.optim.Adam` / `AdamW` semantics, bias correction).
//! * [`Sgd`]: SGD with momentum, dampening, Nesterov and L2 weight decay (`torch.optim.SGD`).
//! * [`Lars`]: LARS as in the SimCLR paper's code, 1-D tensors excluded from adaptation and decay.
//! * [`Schedule`]: constant, linear, cosine and warm-up learning-rate schedules that compose.

mod adam;
mod lars;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use lars::{Lars, LarsConfig};
pub use schedule::Schedule;
pub use sgd::{Sgd, SgdConfig};

use rayon::prelude::*;
use simclr_tensor::Tensor;

/// Why an optimizer state could not be loaded (each problem names its key).
#[derive(Debug, thiserror::Error)]
pub enum OptimStateError {
    /// The state lacks keys the optimizer needs.
    #[error("optimizer state is missing keys: {0:?}")]
    Missing(Vec<String>),
    /// A state tensor's shape differs from the parameter's.
    #[error("optimizer state `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        /// The offending key.
        key: String,
        /// The shape the optimizer needs.
        expected: Vec<usize>,
        /// The shape in the state.
        found: Vec<usize>,
    },
}

/// A gradient-based parameter updater.
pub trait Optimizer {
    /// Applies one update to every parameter that has a gradient (parameters without one are
    /// skipped, as in PyTorch).
    fn step(&mut self);

    /// Clears the gradients of all parameters.
    fn zero_grad(&self) {
        for p in self.params() {
            p.zero_grad();
        }
    }

    /// The current learning rate.
    fn lr(&self) -> f32;

    /// Sets the learning rate used by the next steps (what a schedule drives).
    fn set_lr(&mut self, lr: f32);

    /// The parameters this optimizer updates, in constructor order.
    fn params(&self) -> &[Tensor];

    /// The optimizer's state as named tensors (copies), for checkpoints.
    fn state(&self) -> Vec<(String, Tensor)>;

    /// Restores a state produced by [`Optimizer::state`] for the same parameter list. On error
    /// nothing is changed.
    fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), OptimStateError>;
}

/// Tensors at or above this size are updated on rayon threads, in chunks of [`CHUNK`].
pub(crate) const PAR_MIN: usize = 1 << 15;
/// Chunk length of a parallel update.
pub(crate) const CHUNK: usize = 1 << 13;

/// Runs `f` over aligned chunks of a parameter, its gradient and two state buffers, in
/// parallel when the tensor is large.
pub(crate) fn zip_update(
    p: &mut [f32],
    g: &[f32],
    s1: &mut [f32],
    s2: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32], &mut [f32]) + Sync,
) {
    if p.len() < PAR_MIN {
        f(p, g, s1, s2);
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(s1.par_chunks_mut(CHUNK))
            .zip(s2.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), s1), s2)| f(p, g, s1, s2));
    }
}

/// Like [`zip_update`] with one state buffer, which may be empty (then `f` gets empty
/// state chunks).
pub(crate) fn zip_update1(
    p: &mut [f32],
    g: &[f32],
    s: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) {
    if p.len() < PAR_MIN {
        f(p, g, s);
    } else if s.is_empty() {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(p, g)| f(p, g, &mut []));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(s.par_chunks_mut(CHUNK))
            .for_each(|((p, g), s)| f(p, g, s));
    }
}

/// `Σ f(i)²` over one chunk with eight independent f32 lanes (so it vectorises), returned as
/// f64; chunks are at most [`CHUNK`] long, so the f32 partial sums stay accurate.
#[inline]
pub(crate) fn chunk_sum_sq(n: usize, f: impl Fn(usize) -> f32) -> f64 {
    let mut lanes = [0.0f32; 8];
    let full = n / 8 * 8;
    for base in (0..full).step_by(8) {
        for (l, lane) in lanes.iter_mut().enumerate() {
            let v = f(base + l);
            *lane += v * v;
        }
    }
    let tail: f64 = (full..n).map(|i| (f(i) as f64).powi(2)).sum();
    lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
}

/// `√Σ x²`, summed per chunk in f32 lanes and across chunks in f64 (in parallel for large
/// slices).
pub(crate) fn l2_norm(x: &[f32]) -> f64 {
    let sq = |c: &[f32]| chunk_sum_sq(c.len(), |i| c[i]);
    if x.len() < PAR_MIN {
        x.chunks(CHUNK).map(sq).sum::<f64>().sqrt()
    } else {
        x.par_chunks(CHUNK).map(sq).sum::<f64>().sqrt()
    }
}

/// A state buffer shaped like each parameter, zero-filled.
pub(crate) fn zeros_like_all(params: &[Tensor]) -> Vec<Vec<f32>> {
    params.iter().map(|p| vec![0.0; p.numel()]).collect()
}

/// Looks `key` up in `state`, checking its element count against `shape`.
pub(crate) fn find_state<'a>(
    state: &'a [(String, Tensor)],
    key: &str,
    shape: &[usize],
    missing: &mut Vec<String>,
) -> Result<Option<&'a Tensor>, OptimStateError> {
    match state.iter().find(|(k, _)| k == key) {
        None => {
            missing.push(key.to_string());
            Ok(None)
        }
        Some((_, t)) if t.shape() != shape => Err(OptimStateError::Shape {
            key: key.to_string(),
            expected: shape.to_vec(),
            found: t.shape().to_vec(),
        }),
        Some((_, t)) => Ok(Some(t)),
    }
}

/// A validated optimizer state: learning rate, per-parameter step counts, and for each buffer
/// name one buffer per parameter.
pub(crate) struct LoadedState {
    pub lr: f32,
    pub steps: Vec<u64>,
    pub buffers: Vec<Vec<Vec<f32>>>,
}

/// Reads per-parameter buffers named `"{i}.{name}"` and per-parameter step counts
/// `"{i}.step"`, plus the scalar `"lr"`, validating everything before returning it.
pub(crate) fn read_state(
    state: &[(String, Tensor)],
    params: &[Tensor],
    buffer_names: &[&str],
) -> Result<LoadedState, OptimStateError> {
    let mut missing = Vec::new();
    let lr = find_state(state, "lr", &[], &mut missing)?.map(|t| t.item());
    let mut steps = Vec::with_capacity(params.len());
    let mut buffers = vec![Vec::with_capacity(params.len()); buffer_names.len()];
    for (i, p) in params.iter().enumerate() {
        let step = find_state(state, &format!("{i}.step"), &[], &mut missing)?;
        steps.push(step.map_or(0, |t| t.item() as u64));
        for (b, name) in buffer_names.iter().enumerate() {
            let t = find_state(state, &format!("{i}.{name}"), p.shape(), &mut missing)?;
            buffers[b].push(t.map_or_else(Vec::new, Tensor::to_vec));
        }
    }
    if !missing.is_empty() {
        return Err(OptimStateError::Missing(missing));
    }
    Ok(LoadedState {
        lr: lr.unwrap_or(0.0),
        steps,
        buffers,
    })
}

/// Builds the named state tensors: `"lr"`, then for each parameter `"{i}.step"` and each
/// buffer `"{i}.{name}"`.
pub(crate) fn write_state(
    lr: f32,
    params: &[Tensor],
    steps: &[u64],
    buffers: &[(&str, &[Vec<f32>])],
) -> Vec<(String, Tensor)> {
    let mut out = vec![("lr".to_string(), Tensor::scalar(lr))];
    for (i, p) in params.iter().enumerate() {
        out.push((format!("{i}.step"), Tensor::scalar(steps[i] as f32)));
        for (name, bufs) in buffers {
            out.push((
                format!("{i}.{name}"),
                Tensor::from_vec(bufs[i].clone(), p.shape()),
            ));
        }
    }
    out
}
