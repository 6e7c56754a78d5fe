//! Elementwise ops: arithmetic with broadcasting, scalar arithmetic, and unary functions.
//!
//! For `z = f(x, y)` the backward is `dx = dz · ∂f/∂x`, `dy = dz · ∂f/∂y`, each summed back over
//! the axes that broadcasting stretched ([`sum_to_shape`]). Large arrays are processed in
//! parallel chunks; the closures here are plain arithmetic that the compiler vectorises.

use super::pool::vec_filled_by;
use crate::shape::{broadcast_shapes, broadcast_to, sum_to_shape};
use crate::tensor::Tensor;

/// Elements per piece of a pass (a task takes several when they are short: [`crate::parallel`]).
const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`, in parallel for large inputs. The output is written once, never
/// zero-filled first.
pub(crate) fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    // SAFETY: chunk `i` covers elements `i·CHUNK..`, which the inputs (as long as the output)
    // all have, so the zip writes every element of the chunk.
    unsafe {
        vec_filled_by(x.len(), CHUNK, |i, out| {
            for (o, &v) in out.iter_mut().zip(&x[i * CHUNK..]) {
                o.write(f(v));
            }
        })
    }
}

/// `out[i] = f(x[i], y[i])`, in parallel for large inputs, written once.
pub(crate) fn zip_map(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(x.len(), y.len(), "zip_map: operands differ in length");
    // SAFETY: chunk `i` covers elements `i·CHUNK..`, which the inputs (as long as the output)
    // all have, so the zip writes every element of the chunk.
    unsafe {
        vec_filled_by(x.len(), CHUNK, |i, out| {
            let (x, y) = (&x[i * CHUNK..], &y[i * CHUNK..]);
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                o.write(f(a, b));
            }
        })
    }
}

/// `out[i] = f(x[i], y[i], z[i])`, in parallel for large inputs, written once.
fn zip_map3(x: &[f32], y: &[f32], z: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert!(
        x.len() == y.len() && y.len() == z.len(),
        "zip_map3: operands differ in length"
    );
    // SAFETY: chunk `i` covers elements `i·CHUNK..`, which the inputs (as long as the output)
    // all have, so the zip writes every element of the chunk.
    unsafe {
        vec_filled_by(x.len(), CHUNK, |i, out| {
            let (x, y, z) = (&x[i * CHUNK..], &y[i * CHUNK..], &z[i * CHUNK..]);
            for (((o, &a), &b), &c) in out.iter_mut().zip(x).zip(y).zip(z) {
                o.write(f(a, b, c));
            }
        })
    }
}

/// The kinds of broadcasting binary op.
#[derive(Clone, Copy)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Sub => "sub",
            Binary::Mul => "mul",
            Binary::Div => "div",
        }
    }
}

fn binary(a: &Tensor, b: &Tensor, op: Binary) -> Tensor {
    let out_shape = broadcast_shapes(a.shape(), b.shape()).unwrap_or_else(|| {
        panic!(
            "{}: shapes {:?} and {:?} cannot be broadcast together",
            op.name(),
            a.shape(),
            b.shape()
        )
    });
    let (xa, xb) = (a.data(), b.data());
    // Materialise a broadcast operand only when shapes differ.
    let ba = if a.shape() == out_shape.as_slice() {
        None
    } else {
        Some(broadcast_to(&xa, a.shape(), &out_shape))
    };
    let bb = if b.shape() == out_shape.as_slice() {
        None
    } else {
        Some(broadcast_to(&xb, b.shape(), &out_shape))
    };
    let (va, vb) = (ba.as_deref().unwrap_or(&xa), bb.as_deref().unwrap_or(&xb));
    let out = match op {
        Binary::Add => zip_map(va, vb, |x, y| x + y),
        Binary::Sub => zip_map(va, vb, |x, y| x - y),
        Binary::Mul => zip_map(va, vb, |x, y| x * y),
        Binary::Div => zip_map(va, vb, |x, y| x / y),
    };
    let (a_shape, b_shape, shape) = (a.shape().to_vec(), b.shape().to_vec(), out_shape.clone());
    // Mul and div need the (broadcast) operands in backward: a shared handle when the operand
    // already has the output's shape, a broadcast copy otherwise.
    let keep = |t: &Tensor, broadcast: Option<Vec<f32>>| match broadcast {
        Some(v) => Tensor::from_vec(v, &out_shape),
        None => t.detach(),
    };
    let saved = match op {
        Binary::Mul | Binary::Div => Some((keep(a, ba), keep(b, bb))),
        _ => None,
    };
    drop((xa, xb));
    Tensor::from_op(out, &out_shape, &[a, b], move |g, needs| {
        let (ga, gb): (Option<Vec<f32>>, Option<Vec<f32>>) = match (op, saved) {
            (Binary::Add, _) => (needs[0].then(|| g.to_vec()), needs[1].then(|| g.to_vec())),
            (Binary::Sub, _) => (
                needs[0].then(|| g.to_vec()),
                needs[1].then(|| map(g, |v| -v)),
            ),
            (Binary::Mul, Some((x, y))) => (
                needs[0].then(|| zip_map(g, &y.data(), |g, y| g * y)),
                needs[1].then(|| zip_map(g, &x.data(), |g, x| g * x)),
            ),
            (Binary::Div, Some((x, y))) => (
                needs[0].then(|| zip_map(g, &y.data(), |g, y| g / y)),
                needs[1].then(|| zip_map3(g, &x.data(), &y.data(), |g, x, y| -g * x / (y * y))),
            ),
            _ => unreachable!("mul/div save their operands"),
        };
        vec![
            ga.map(|g| sum_to_shape(&g, &shape, &a_shape)),
            gb.map(|g| sum_to_shape(&g, &shape, &b_shape)),
        ]
    })
}

/// A unary op `y = f(x)` whose derivative is expressed through `x` and `y`. Backward reads
/// the input and output buffers through shared handles (no copies).
fn unary(
    x: &Tensor,
    f: impl Fn(f32) -> f32 + Sync,
    df: impl Fn(f32, f32) -> f32 + Sync + 'static,
) -> Tensor {
    let out = Tensor::from_vec(map(&x.data(), f), x.shape());
    let (xs, ys) = (x.detach(), out.detach());
    Tensor::record(out, &[x], move |g, _| {
        vec![Some(zip_map3(g, &xs.data(), &ys.data(), |g, x, y| {
            g * df(x, y)
        }))]
    })
}

impl Tensor {
    /// `self + other`, broadcasting. Backward: `d(self) = dz`, `d(other) = dz` (summed over
    /// broadcast axes).
    pub fn add(&self, other: &Tensor) -> Tensor {
        binary(self, other, Binary::Add)
    }

    /// `self - other`, broadcasting. Backward: `dz` and `-dz`.
    pub fn sub(&self, other: &Tensor) -> Tensor {
        binary(self, other, Binary::Sub)
    }

    /// `self ⊙ other` (elementwise), broadcasting. Backward: `dz·other` and `dz·self`.
    pub fn mul(&self, other: &Tensor) -> Tensor {
        binary(self, other, Binary::Mul)
    }

    /// `self / other` (elementwise), broadcasting. Backward: `dz/other` and `-dz·self/other²`.
    pub fn div(&self, other: &Tensor) -> Tensor {
        binary(self, other, Binary::Div)
    }

    /// `self + c`. Backward: `dz`.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        let out = map(&self.data(), |x| x + c);
        Tensor::from_op(out, self.shape(), &[self], |g, _| vec![Some(g.to_vec())])
    }

    /// `self · c`. Backward: `c·dz`.
    pub fn mul_scalar(&self, c: f32) -> Tensor {
        let out = map(&self.data(), |x| x * c);
        Tensor::from_op(out, self.shape(), &[self], move |g, _| {
            vec![Some(map(g, |g| g * c))]
        })
    }

    /// `-self`. Backward: `-dz`.
    pub fn neg(&self) -> Tensor {
        self.mul_scalar(-1.0)
    }

    /// `eˣ`. Backward: `dz·eˣ = dz·y`.
    pub fn exp(&self) -> Tensor {
        unary(self, f32::exp, |_, y| y)
    }

    /// Natural logarithm. Backward: `dz/x`.
    pub fn log(&self) -> Tensor {
        unary(self, f32::ln, |x, _| 1.0 / x)
    }

    /// `√x`. Backward: `dz/(2√x) = dz/(2y)`.
    pub fn sqrt(&self) -> Tensor {
        unary(self, f32::sqrt, |_, y| 0.5 / y)
    }

    /// `xᵖ` for a constant exponent. Backward: `dz·p·xᵖ⁻¹`.
    pub fn pow(&self, p: f32) -> Tensor {
        unary(self, move |x| x.powf(p), move |x, _| p * x.powf(p - 1.0))
    }

    /// `max(x, 0)`. Backward: `dz` where `x > 0`, else 0.
    pub fn relu(&self) -> Tensor {
        let out = Tensor::from_vec(map(&self.data(), |x| x.max(0.0)), self.shape());
        let ys = out.detach();
        Tensor::record(out, &[self], move |g, _| {
            vec![Some(zip_map(
                g,
                &ys.data(),
                |g, y| if y > 0.0 { g } else { 0.0 },
            ))]
        })
    }
}

macro_rules! operator {
    ($trait:ident, $method:ident, $fn:ident) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                Tensor::$fn(self, rhs)
            }
        }
    };
}
operator!(Add, add, add);
operator!(Sub, sub, sub);
operator!(Mul, mul, mul);
operator!(Div, div, div);
