//! The [`Tensor`] type: a shape, a shared f32 buffer, and (when it takes part in autodiff) the
//! gradient it accumulates and the node that made it.
//!
//! A tensor is a cheap handle (`Rc`) to its contents, so cloning one shares it; the same is true
//! of [`Tensor::reshape`] and [`Tensor::detach`], which share the buffer with a new shape or
//! without the graph. Data are always contiguous, row-major (the last axis varies fastest), NCHW
//! for images. An optimizer updates a parameter in place through [`Tensor::data_mut`].

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::autograd::{self, Node};
use crate::shape::numel;

/// The shared storage behind one or more tensors.
pub(crate) type Storage = Rc<RefCell<Vec<f32>>>;

/// An n-dimensional array of `f32` that can record the operations applied to it and
/// compute gradients by reverse-mode automatic differentiation ([`Tensor::backward`]).
#[derive(Clone)]
pub struct Tensor(pub(crate) Rc<Inner>);

pub(crate) struct Inner {
    pub(crate) id: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Storage,
    pub(crate) grad: RefCell<Option<Vec<f32>>>,
    pub(crate) requires_grad: Cell<bool>,
    /// How this tensor was computed; `None` for leaves and after `backward` consumed it.
    pub(crate) node: RefCell<Option<Node>>,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

impl Tensor {
    pub(crate) fn from_storage(data: Storage, shape: Vec<usize>) -> Tensor {
        assert_eq!(
            data.borrow().len(),
            numel(&shape),
            "tensor: {} values cannot have shape {shape:?}",
            data.borrow().len()
        );
        Tensor(Rc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shape,
            data,
            grad: RefCell::new(None),
            requires_grad: Cell::new(false),
            node: RefCell::new(None),
        }))
    }

    /// A tensor owning `data`, laid out row-major with the given shape.
    ///
    /// Panics if `data.len()` is not the product of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Tensor {
        Tensor::from_storage(Rc::new(RefCell::new(data)), shape.to_vec())
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }

    /// A tensor with every element equal to `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::from_vec(vec![value; numel(shape)], shape)
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::from_vec(vec![value], &[])
    }

    /// Samples from N(0, 1) with the given RNG (reproducible from its seed).
    pub fn randn(shape: &[usize], rng: &mut impl rand::Rng) -> Tensor {
        use rand_distr::{Distribution, StandardNormal};
        let data = (0..numel(shape))
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Tensor::from_vec(data, shape)
    }

    /// Samples uniformly from `[low, high)` with the given RNG.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl rand::Rng) -> Tensor {
        let data = (0..numel(shape))
            .map(|_| rng.gen_range(low..high))
            .collect();
        Tensor::from_vec(data, shape)
    }

    /// A process-unique id (the key of a gradient during backward).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// The sizes of the axes.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.0.shape.len()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// Size of axis `axis`.
    pub fn dim(&self, axis: usize) -> usize {
        self.0.shape[axis]
    }

    /// Borrows the values (row-major).
    pub fn data(&self) -> Ref<'_, Vec<f32>> {
        self.0.data.borrow()
    }

    /// Mutably borrows the values, e.g. for an optimizer step. Records nothing in the graph.
    pub fn data_mut(&self) -> RefMut<'_, Vec<f32>> {
        self.0.data.borrow_mut()
    }

    /// A copy of the values.
    pub fn to_vec(&self) -> Vec<f32> {
        self.data().clone()
    }

    /// The single value of a one-element tensor (e.g. a loss).
    pub fn item(&self) -> f32 {
        assert_eq!(
            self.numel(),
            1,
            "item: tensor of shape {:?} is not a scalar",
            self.shape()
        );
        self.data()[0]
    }

    /// Whether gradients flow to (and accumulate in) this tensor.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.get()
    }

    /// Marks this tensor as a leaf whose gradient [`Tensor::backward`] accumulates;
    /// returns `self` for chaining.
    pub fn set_requires_grad(self, requires: bool) -> Tensor {
        self.0.requires_grad.set(requires);
        self
    }

    /// The accumulated gradient, if `backward` reached this tensor.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .borrow()
            .as_ref()
            .map(|g| Tensor::from_vec(g.clone(), self.shape()))
    }

    /// Borrows the accumulated gradient without copying it (used by optimizers).
    pub fn grad_ref(&self) -> Ref<'_, Option<Vec<f32>>> {
        self.0.grad.borrow()
    }

    /// Borrows the accumulated gradient mutably (a data-parallel run sums it over its ranks).
    pub fn grad_mut(&self) -> RefMut<'_, Option<Vec<f32>>> {
        self.0.grad.borrow_mut()
    }

    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.borrow_mut() = None;
    }

    /// Adds `g` into the accumulated gradient (what backward does for a leaf).
    pub(crate) fn accumulate_grad(&self, g: &[f32]) {
        let mut slot = self.0.grad.borrow_mut();
        match slot.as_mut() {
            Some(acc) => acc.iter_mut().zip(g).for_each(|(a, b)| *a += b),
            None => *slot = Some(g.to_vec()),
        }
    }

    /// The same values, cut from the graph: no gradient flows back through the result.
    /// Shares the buffer with `self`.
    pub fn detach(&self) -> Tensor {
        Tensor::from_storage(self.0.data.clone(), self.0.shape.clone())
    }

    /// A deep copy of the values as a new leaf.
    pub fn copy(&self) -> Tensor {
        Tensor::from_vec(self.to_vec(), self.shape())
    }

    /// Whether this tensor was produced by a recorded operation (and backward has not run yet).
    pub fn has_graph(&self) -> bool {
        self.0.node.borrow().is_some()
    }

    /// Runs reverse-mode autodiff from this one-element tensor: every tensor in its graph that
    /// requires grad and is a leaf receives d(self)/d(leaf) added into its `grad`. The graph
    /// is freed as it is walked.
    pub fn backward(&self) {
        autograd::backward(self);
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data();
        let shown: Vec<f32> = data.iter().take(8).copied().collect();
        write!(
            f,
            "Tensor(shape={:?}, requires_grad={}, data={:?}{})",
            self.shape(),
            self.requires_grad(),
            shown,
            if data.len() > 8 { " …" } else { "" }
        )
    }
}
