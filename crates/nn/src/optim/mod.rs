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
use simclr_tensor::parallel::min_items;
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

/// Chunk length of an update: its f32 partial sums stay accurate, and a large tensor is
/// updated on rayon's threads, several chunks a task ([`simclr_tensor::parallel`]).
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
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(s1.par_chunks_mut(CHUNK))
        .zip(s2.par_chunks_mut(CHUNK))
        .with_min_len(min_items(CHUNK))
        .for_each(|(((p, g), s1), s2)| f(p, g, s1, s2));
}

/// Like [`zip_update`] with one state buffer, which may be empty (then `f` gets empty
/// state chunks).
pub(crate) fn zip_update1(
    p: &mut [f32],
    g: &[f32],
    s: &mut [f32],
    f: impl Fn(&mut [f32], &[f32], &mut [f32]) + Sync,
) {
    if s.is_empty() {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .with_min_len(min_items(CHUNK))
            .for_each(|(p, g)| f(p, g, &mut []));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(s.par_chunks_mut(CHUNK))
            .with_min_len(min_items(CHUNK))
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
    x.par_chunks(CHUNK)
        .with_min_len(min_items(CHUNK))
        .map(sq)
        .sum::<f64>()
        .sqrt()
}

/// Looks `key` up in `state`, checking its shape against `shape`.
fn find_state<'a>(
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

/// What every optimizer here keeps besides its settings: the parameters, each one's step
/// count, and `N` buffers per parameter shaped like it, each kind under a name (Adam's
/// `exp_avg` and `exp_avg_sq`, SGD's `momentum_buffer`, LARS's `momentum`). Saving and
/// restoring them by those names is the same for every optimizer, so it lives here.
pub(crate) struct Slots<const N: usize> {
    /// The parameters, in the order the optimizer was given them.
    pub params: Vec<Tensor>,
    /// Updates applied to each parameter so far.
    pub steps: Vec<u64>,
    /// Per kind of buffer, one zero-initialised buffer per parameter.
    pub buffers: [Vec<Vec<f32>>; N],
    names: [&'static str; N],
}

impl<const N: usize> Slots<N> {
    /// Step counts at 0 and every buffer zero, for `params`.
    pub fn new(params: Vec<Tensor>, names: [&'static str; N]) -> Self {
        let zeros = || params.iter().map(|p| vec![0.0; p.numel()]).collect();
        Slots {
            steps: vec![0; params.len()],
            buffers: std::array::from_fn(|_| zeros()),
            params,
            names,
        }
    }

    /// The named state tensors: `"lr"`, then for each parameter `i` `"{i}.step"` and each
    /// buffer `"{i}.{name}"` ([`Optimizer::state`]).
    pub fn state(&self, lr: f32) -> Vec<(String, Tensor)> {
        let mut out = vec![("lr".to_string(), Tensor::scalar(lr))];
        for (i, p) in self.params.iter().enumerate() {
            out.push((format!("{i}.step"), Tensor::scalar(self.steps[i] as f32)));
            for (name, bufs) in self.names.iter().zip(&self.buffers) {
                let buf = Tensor::from_vec(bufs[i].clone(), p.shape());
                out.push((format!("{i}.{name}"), buf));
            }
        }
        out
    }

    /// Takes step counts and buffers from `state` ([`Optimizer::load_state`]) and returns the
    /// learning rate it holds; everything is validated first, so on error nothing changes.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<f32, OptimStateError> {
        let mut missing = Vec::new();
        let lr = find_state(state, "lr", &[], &mut missing)?.map(|t| t.item());
        let mut steps = Vec::with_capacity(self.params.len());
        let mut buffers: [Vec<Vec<f32>>; N] =
            std::array::from_fn(|_| Vec::with_capacity(self.params.len()));
        for (i, p) in self.params.iter().enumerate() {
            let step = find_state(state, &format!("{i}.step"), &[], &mut missing)?;
            steps.push(step.map_or(0, |t| t.item() as u64));
            for (name, bufs) in self.names.iter().zip(&mut buffers) {
                let t = find_state(state, &format!("{i}.{name}"), p.shape(), &mut missing)?;
                bufs.push(t.map_or_else(Vec::new, Tensor::to_vec));
            }
        }
        if !missing.is_empty() {
            return Err(OptimStateError::Missing(missing));
        }
        (self.steps, self.buffers) = (steps, buffers);
        Ok(lr.unwrap_or(0.0))
    }
}

/// The [`Optimizer`] methods other than `step` of an optimizer that keeps its learning rate in
/// `self.config.lr` and its parameters and state in `self.slots` (a [`Slots`]): `lr`, `set_lr`,
/// `params`, `state` and `load_state`, the same for every optimizer here. Used inside the
/// optimizer's `impl Optimizer for …` block.
macro_rules! config_lr_and_slots_methods {
    () => {
        fn lr(&self) -> f32 {
            self.config.lr
        }

        fn set_lr(&mut self, lr: f32) {
            self.config.lr = lr;
        }

        fn params(&self) -> &[::simclr_tensor::Tensor] {
            &self.slots.params
        }

        fn state(&self) -> Vec<(String, ::simclr_tensor::Tensor)> {
            self.slots.state(self.config.lr)
        }

        fn load_state(
            &mut self,
            state: &[(String, ::simclr_tensor::Tensor)],
        ) -> Result<(), $crate::optim::OptimStateError> {
            self.config.lr = self.slots.load_state(state)?;
            Ok(())
        }
    };
}
pub(crate) use config_lr_and_slots_methods;
