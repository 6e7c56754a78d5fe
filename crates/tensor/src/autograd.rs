//! Reverse-mode automatic differentiation, define-by-run (the micrograd idea).
//!
//! Every op computes its output *and* a closure that maps the gradient of that output to the
//! gradients of its inputs (the vector-Jacobian product). [`Tensor::from_op`] stores the closure
//! and the input handles in a [`Node`] attached to the output. [`Tensor::backward`] sorts the
//! graph topologically, then walks it from the loss back to the leaves, calling each closure
//! once with the summed gradient of its output; leaves that `requires_grad` add what reaches
//! them into their `.grad`. Each node is taken out of its tensor as it runs, so the graph (and
//! every buffer its closures captured) is freed by the walk.
//!
//! Inside [`no_grad`] nothing is recorded: outputs are plain leaves, and the closures are
//! dropped at once. Evaluation and optimizer updates run there.
//!
//! Those two places — an op entering the graph, its closure called by the walk — are also
//! where [`crate::profile`] times each op's forward and backward, when it collects.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::profile;
use crate::tensor::Tensor;

/// Maps the gradient of an op's output to one gradient per input (`None` where an input needs
/// none). The second argument says which inputs need a gradient, so work can be skipped.
pub type BackwardFn = Box<dyn FnOnce(&[f32], &[bool]) -> Vec<Option<Vec<f32>>>>;

/// How a tensor was computed: its inputs and the vector-Jacobian product of the op.
pub(crate) struct Node {
    parents: Vec<Tensor>,
    backward: BackwardFn,
    /// The op's name in the [profile](crate::profile) being collected when it was recorded.
    profiled: Option<Rc<str>>,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops currently record a graph (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording any graph, like `torch.no_grad()`; restores the previous mode
/// afterwards, even if `f` panics.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

impl Tensor {
    /// The output of an op: `data` with `shape`, computed from `parents`.
    ///
    /// If grad mode is on and any parent requires grad, the result requires grad and remembers
    /// `backward`, which receives the gradient of the result and must return one entry per
    /// parent, in order (each `Some` with that parent's number of elements). Otherwise
    /// `backward` is dropped unused. This is the one way ops enter the graph, so a new op (in
    /// this crate or outside it) is a forward computation plus this call.
    pub fn from_op(
        data: Vec<f32>,
        shape: &[usize],
        parents: &[&Tensor],
        backward: impl FnOnce(&[f32], &[bool]) -> Vec<Option<Vec<f32>>> + 'static,
    ) -> Tensor {
        Tensor::record(Tensor::from_vec(data, shape), parents, backward)
    }

    /// Attaches `backward` to an already built output (e.g. one sharing its input's buffer),
    /// under the same rules as [`Tensor::from_op`].
    pub(crate) fn record(
        out: Tensor,
        parents: &[&Tensor],
        backward: impl FnOnce(&[f32], &[bool]) -> Vec<Option<Vec<f32>>> + 'static,
    ) -> Tensor {
        let profiled = profile::forward_done(std::any::type_name_of_val(&backward));
        if is_grad_enabled() && parents.iter().any(|p| p.requires_grad()) {
            out.0.requires_grad.set(true);
            *out.0.node.borrow_mut() = Some(Node {
                parents: parents.iter().map(|p| (*p).clone()).collect(),
                backward: Box::new(backward),
                profiled,
            });
        }
        out
    }
}

/// Tensors reachable from `root` through recorded nodes, each after all of its inputs.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    // Iterative post-order DFS: (tensor, whether its parents were already pushed).
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.0.node.borrow().as_ref() {
            for p in &node.parents {
                if p.requires_grad() && !visited.contains(&p.id()) {
                    stack.push((p.clone(), false));
                }
            }
        }
    }
    order
}

pub(crate) fn backward(root: &Tensor) {
    assert_eq!(
        root.numel(),
        1,
        "backward: needs a one-element tensor (a loss), got shape {:?}",
        root.shape()
    );
    if !root.requires_grad() {
        panic!("backward: the tensor does not require grad (no parameter took part in computing it, or it was computed under no_grad)");
    }
    let order = topological_order(root);
    profile::mark();
    let mut grads: HashMap<usize, Vec<f32>> = HashMap::new();
    grads.insert(root.id(), vec![1.0]);
    for t in order.iter().rev() {
        let Some(grad) = grads.remove(&t.id()) else {
            continue;
        };
        let node = t.0.node.borrow_mut().take();
        match node {
            None => t.accumulate_grad(&grad),
            Some(Node {
                parents,
                backward,
                profiled,
            }) => profile::backward_of(profiled.as_ref(), || {
                let needs: Vec<bool> = parents.iter().map(Tensor::requires_grad).collect();
                let parent_grads = backward(&grad, &needs);
                debug_assert_eq!(parent_grads.len(), parents.len());
                for ((p, g), need) in parents.iter().zip(parent_grads).zip(needs) {
                    let (Some(g), true) = (g, need) else { continue };
                    debug_assert_eq!(
                        g.len(),
                        p.numel(),
                        "a backward returned a wrong-sized gradient"
                    );
                    match grads.get_mut(&p.id()) {
                        Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
                        None => {
                            grads.insert(p.id(), g);
                        }
                    }
                }
            }),
        }
    }
    profile::mark();
}
