//! Where a training step's time goes, op by op: the wall time of each op's forward and of its
//! backward on the calling thread (`torch.profiler`'s table, in its simplest form).
//!
//! Every op enters the graph through one function ([`Tensor::from_op`](crate::Tensor::from_op),
//! or the `record` beneath it for an output that shares its input's buffer), called when its
//! forward is done, and the backward walk calls each op's closure in one place, so two hooks
//! see every op:
//!
//! - **forward**: the time since the previous op finished (or since [`mark`]) is this op's.
//!   Ops run one after the other on the calling thread (their parallel loops inside them), so
//!   that gap is the op's own forward — as long as nothing else runs between ops; code that
//!   does (an optimizer step, loading a batch) calls [`mark`] after it, so its time goes to
//!   no op.
//! - **backward**: the op's closure, timed around its call, with the summing of its inputs'
//!   gradients.
//!
//! An op is named by where its backward closure is defined (its type name, shortened: e.g.
//! `batch_norm::batch_norm2d_then`), and an op whose kernels depend on its shape says which
//! ran, just before it enters the graph ([`describe`]): the convolutions name their path and
//! shape, e.g. `conv2d::record [Winograd(F4), 16→16 3×3 at 32×32]`. Collecting is per thread and
//! off until [`start`]; off, each hook costs one thread-local read.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One op's share of the profiled time.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// The op, named by where its backward closure is defined and what it [described](describe)
    /// (see the module docs).
    pub op: String,
    /// Forwards recorded (ops whose output entered the graph or, under `no_grad`, was built
    /// through the same call).
    pub calls: usize,
    /// Wall time of its forwards.
    pub forward: Duration,
    /// Wall time of its backwards (with the summing of their inputs' gradients).
    pub backward: Duration,
}

struct Profiler {
    /// When the last op finished (or [`mark`] was called).
    last: Instant,
    /// What the next op to finish [described](describe).
    detail: Option<String>,
    /// Each op's entry, by its name.
    ops: HashMap<Rc<str>, OpTime>,
}

impl Profiler {
    fn entry(&mut self, op: &Rc<str>) -> &mut OpTime {
        self.ops.entry(op.clone()).or_insert_with(|| OpTime {
            op: op.to_string(),
            calls: 0,
            forward: Duration::ZERO,
            backward: Duration::ZERO,
        })
    }
}

thread_local! {
    static PROFILER: RefCell<Option<Profiler>> = const { RefCell::new(None) };
}

/// Starts collecting on this thread (discarding what an earlier [`start`] collected).
pub fn start() {
    PROFILER.set(Some(Profiler {
        last: Instant::now(),
        detail: None,
        ops: HashMap::new(),
    }));
}

/// Stops collecting on this thread and returns each op's times, the largest total first
/// (nothing if [`start`] was not called).
pub fn stop() -> Vec<OpTime> {
    let mut ops: Vec<OpTime> = PROFILER
        .take()
        .map_or_else(Vec::new, |p| p.ops.into_values().collect());
    ops.sort_by_key(|op| std::cmp::Reverse(op.forward + op.backward));
    ops
}

/// The time since the last op is no op's: call it after work between ops that is not an op
/// (an optimizer step, a batch loaded).
pub fn mark() {
    PROFILER.with_borrow_mut(|p| {
        if let Some(p) = p {
            p.last = Instant::now();
        }
    });
}

/// Says which kernels the op about to enter the graph ran (its path, its shape): its entry is
/// then its own, apart from the same op's other kinds. `detail` is called only when
/// collecting.
pub fn describe(detail: impl FnOnce() -> String) {
    PROFILER.with_borrow_mut(|p| {
        if let Some(p) = p {
            p.detail = Some(detail());
        }
    });
}

/// The forward of an op (`closure_type`: the type name of its backward closure) has just
/// finished; returns its entry's name when collecting, for its backward to be counted under.
pub(crate) fn forward_done(closure_type: &'static str) -> Option<Rc<str>> {
    PROFILER.with_borrow_mut(|p| {
        let p = p.as_mut()?;
        let now = Instant::now();
        let since = now - p.last;
        p.last = now;
        let name = match p.detail.take() {
            Some(detail) => format!("{} [{detail}]", short_name(closure_type)),
            None => short_name(closure_type),
        };
        let name: Rc<str> = name.into();
        let entry = p.entry(&name);
        entry.calls += 1;
        entry.forward += since;
        Some(name)
    })
}

/// Runs `f`, the backward of the op named `op` by [`forward_done`], and counts its time when
/// collecting (ops recorded before [`start`] have no name, and count nowhere).
pub(crate) fn backward_of<R>(op: Option<&Rc<str>>, f: impl FnOnce() -> R) -> R {
    let Some(op) = op.filter(|_| PROFILER.with_borrow(Option::is_some)) else {
        return f();
    };
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    PROFILER.with_borrow_mut(|p| {
        if let Some(p) = p {
            p.entry(op).backward += took;
        }
    });
    out
}

/// `simclr_tensor::ops::conv2d::<impl simclr_tensor::tensor::Tensor>::conv2d::{{closure}}` →
/// `conv2d::conv2d`: the path without the crate, `ops`, `impl` blocks and closures.
fn short_name(type_name: &str) -> String {
    let mut path = String::new();
    let mut depth = 0;
    for c in type_name.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 => path.push(c),
            _ => {}
        }
    }
    let segments: Vec<&str> = path
        .split("::")
        .filter(|s| !s.is_empty() && !s.starts_with("{{") && !s.starts_with('{'))
        .collect();
    let skip = match segments.first() {
        Some(first) if first.starts_with("simclr_") => 1,
        _ => 0,
    };
    let rest = &segments[skip..];
    let rest = rest.strip_prefix(&["ops"]).unwrap_or(rest);
    rest.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn names_lose_the_crate_impls_and_closures() {
        assert_eq!(
            short_name(
                "simclr_tensor::ops::conv2d::<impl simclr_tensor::tensor::Tensor>::conv2d::{{closure}}"
            ),
            "conv2d::conv2d"
        );
        assert_eq!(
            short_name("simclr_nn::linear::Linear::forward::{{closure}}::{{closure}}"),
            "linear::Linear::forward"
        );
        assert_eq!(short_name("my_crate::op::{{closure}}"), "my_crate::op");
    }

    #[test]
    fn every_op_of_a_step_is_counted_forward_and_backward() {
        let x = Tensor::from_vec(vec![1.0, -2.0, 3.0, -4.0], &[2, 2]).set_requires_grad(true);
        start();
        let loss = x.relu().sum();
        loss.backward();
        let second = x.relu().sum();
        let ops = stop();
        // Two forwards each of two ops; one backward walk.
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(ops.iter().all(|o| o.calls == 2), "{ops:?}");
        let names: Vec<&str> = ops.iter().map(|o| o.op.as_str()).collect();
        assert!(names.iter().any(|n| n.contains("relu")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("sum")), "{names:?}");
        assert!(ops.iter().all(|o| o.backward > Duration::ZERO), "{ops:?}");
        // Its backward outlived the profile: counted nowhere.
        // Stopped: nothing more is collected, and nothing is left to return.
        second.backward();
        let _ = x.relu();
        assert!(stop().is_empty());
    }

    #[test]
    fn a_described_op_has_an_entry_of_its_own() {
        let x = Tensor::from_vec(vec![1.0, -2.0, 3.0, -4.0], &[2, 2]).set_requires_grad(true);
        start();
        describe(|| "kind a".into());
        let a = x.relu();
        let b = x.relu();
        describe(|| "kind a".into());
        let c = x.relu();
        a.add(&b).add(&c).sum().backward();
        let ops = stop();
        let relu = |suffix: &str| {
            ops.iter()
                .find(|o| o.op.contains("relu") && o.op.ends_with(suffix))
                .unwrap_or_else(|| panic!("no relu{suffix} in {ops:?}"))
                .clone()
        };
        let described = relu(" [kind a]");
        assert_eq!(described.calls, 2);
        assert!(described.backward > Duration::ZERO);
        assert_eq!(relu("relu").calls, 1);
        // Not collecting: nothing is described, nothing is called.
        describe(|| panic!("describe called its closure while not collecting"));
    }
}
