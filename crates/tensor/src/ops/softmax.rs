//! Softmax-family ops along the last axis, numerically stable.
//!
//! `log_softmax(x)ᵢ = xᵢ − log Σⱼ exp(xⱼ)`, computed as `xᵢ − m − log Σⱼ exp(xⱼ − m)` with
//! `m = maxⱼ xⱼ` so nothing overflows. Backward: `dxᵢ = dyᵢ − softmax(x)ᵢ · Σⱼ dyⱼ`.
//!
//! `cross_entropy(x, t) = −(1/N) Σₙ log_softmax(xₙ)_{tₙ}`, fused: its gradient is
//! `(softmax(xₙ) − onehot(tₙ)) / N`.

use crate::tensor::Tensor;

/// Row-wise log-softmax of a `[rows, cols]` array.
pub(crate) fn log_softmax_rows(x: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for (row, o) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
        o.iter_mut().zip(row).for_each(|(o, &v)| *o = v - lse);
    }
    out
}

impl Tensor {
    /// Log-softmax over the last axis.
    pub fn log_softmax(&self) -> Tensor {
        assert!(
            self.ndim() >= 1,
            "log_softmax: needs at least one axis, got a scalar"
        );
        let cols = self.dim(self.ndim() - 1);
        let out = log_softmax_rows(&self.data(), cols);
        let y = out.clone();
        Tensor::from_op(out, self.shape(), &[self], move |g, _| {
            let mut dx = vec![0.0; g.len()];
            for ((d, gr), yr) in dx.chunks_mut(cols).zip(g.chunks(cols)).zip(y.chunks(cols)) {
                let gsum: f32 = gr.iter().sum();
                for ((d, &g), &y) in d.iter_mut().zip(gr).zip(yr) {
                    *d = g - y.exp() * gsum;
                }
            }
            vec![Some(dx)]
        })
    }

    /// Mean cross-entropy of logits `[N, C]` against class indices `targets` (length N).
    ///
    /// Panics (naming the op) if the lengths differ or a target is not below `C`.
    pub fn cross_entropy(&self, targets: &[usize]) -> Tensor {
        assert!(
            self.ndim() == 2 && self.dim(0) == targets.len(),
            "cross_entropy: logits of shape {:?} need [N, C] with N = {} targets",
            self.shape(),
            targets.len()
        );
        let (n, c) = (self.dim(0), self.dim(1));
        if let Some(bad) = targets.iter().find(|&&t| t >= c) {
            panic!("cross_entropy: target {bad} is out of range for {c} classes");
        }
        let logp = log_softmax_rows(&self.data(), c);
        let loss = -targets
            .iter()
            .enumerate()
            .map(|(i, &t)| logp[i * c + t] as f64)
            .sum::<f64>()
            / n.max(1) as f64;
        let targets = targets.to_vec();
        Tensor::from_op(vec![loss as f32], &[], &[self], move |g, _| {
            let scale = g[0] / n.max(1) as f32;
            let mut dx: Vec<f32> = logp.iter().map(|&l| l.exp() * scale).collect();
            for (i, &t) in targets.iter().enumerate() {
                dx[i * c + t] -= scale;
            }
            vec![Some(dx)]
        })
    }
}
