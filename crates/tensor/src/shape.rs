//! Shape arithmetic: element counts, row-major strides, NumPy broadcasting, and the reduction
//! of a broadcast gradient back to the shape of the input that was broadcast.

/// Product of the axis sizes (1 for a scalar's empty shape).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides: how far apart consecutive indices of each axis are.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The broadcast shape of `a` and `b` (NumPy rules: align trailing axes; sizes must match or
/// one of them be 1), or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Strides that read an array of shape `from` as if it had the broadcast shape `to`: axes that
/// are broadcast (missing, or of size 1) get stride 0.
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let own = strides(from);
    let offset = to.len() - from.len();
    (0..to.len())
        .map(|i| {
            if i < offset || from[i - offset] == 1 {
                0
            } else {
                own[i - offset]
            }
        })
        .collect()
}

/// Gathers `data` (of shape `from`) into a dense array of the broadcast shape `to`.
pub fn broadcast_to(data: &[f32], from: &[usize], to: &[usize]) -> Vec<f32> {
    if from == to {
        return data.to_vec();
    }
    let src_strides = broadcast_strides(from, to);
    let mut out = Vec::with_capacity(numel(to));
    for_each_index(to, |_, src| out.push(data[src]), &src_strides);
    out
}

/// Sums a gradient of the broadcast shape `to` back down to the input shape `from`
/// (the adjoint of [`broadcast_to`]).
pub fn sum_to_shape(grad: &[f32], to: &[usize], from: &[usize]) -> Vec<f32> {
    if from == to {
        return grad.to_vec();
    }
    let mut out = vec![0.0; numel(from)];
    let dst_strides = broadcast_strides(from, to);
    for_each_index(to, |i, dst| out[dst] += grad[i], &dst_strides);
    out
}

/// Visits every index of `shape` in row-major order, passing the flat position and the offset
/// under `other_strides`.
pub(crate) fn for_each_index(
    shape: &[usize],
    mut f: impl FnMut(usize, usize),
    other_strides: &[usize],
) {
    let n = numel(shape);
    if n == 0 {
        return;
    }
    let nd = shape.len();
    let mut idx = vec![0usize; nd];
    let mut other = 0usize;
    for flat in 0..n {
        f(flat, other);
        // Increment the multi-index, carrying into higher axes.
        for ax in (0..nd).rev() {
            idx[ax] += 1;
            other += other_strides[ax];
            if idx[ax] < shape[ax] {
                break;
            }
            other -= other_strides[ax] * shape[ax];
            idx[ax] = 0;
        }
    }
}

/// Resolves a possibly negative axis (`-1` = last) against `ndim`, panicking with `op` named.
pub fn normalize_axis(axis: isize, ndim: usize, op: &str) -> usize {
    let resolved = if axis < 0 { axis + ndim as isize } else { axis };
    assert!(
        resolved >= 0 && (resolved as usize) < ndim,
        "{op}: axis {axis} is out of range for a tensor with {ndim} axes"
    );
    resolved as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 3], &[3]), Some(vec![2, 3]));
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4]), None);
        let b = broadcast_to(&[1.0, 2.0], &[2, 1], &[2, 3]);
        assert_eq!(b, vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        assert_eq!(sum_to_shape(&b, &[2, 3], &[2, 1]), vec![3.0, 6.0]);
        assert_eq!(sum_to_shape(&[1.0; 6], &[2, 3], &[3]), vec![2.0, 2.0, 2.0]);
    }
}
