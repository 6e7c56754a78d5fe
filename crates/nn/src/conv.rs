//! The 2-D convolution layer (`nn.Conv2d` with square kernels, equal stride and padding on
//! both axes), a thin owner of its weight `[C_out, C_in, k, k]` and optional bias `[C_out]`
//! around the tensor crate's im2col + GEMM [`Tensor::conv2d`] op.

use simclr_tensor::Tensor;

use crate::init::{kaiming_normal_fan_out, parameter, pytorch_default_uniform};
use crate::module::Module;

/// `y = conv2d(x, W) + b` over `[N, C_in, H, W]` inputs.
pub struct Conv2d {
    /// The filters, `[out_channels, in_channels, kernel, kernel]`.
    pub weight: Tensor,
    /// The per-output-channel bias, if any.
    pub bias: Option<Tensor>,
    /// Step between applications of the kernel.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
}

impl Conv2d {
    /// A convolution initialised as `torch.nn.Conv2d` does: weight and bias from
    /// `U(±1/√fan_in)` with `fan_in = in_channels·kernel²` (see [`crate::init`]).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        rng: &mut impl rand::Rng,
    ) -> Conv2d {
        let fan_in = in_channels * kernel * kernel;
        let shape = [out_channels, in_channels, kernel, kernel];
        let weight = parameter(pytorch_default_uniform(&shape, fan_in, rng));
        let bias = bias.then(|| parameter(pytorch_default_uniform(&[out_channels], fan_in, rng)));
        Conv2d {
            weight,
            bias,
            stride,
            padding,
        }
    }

    /// A bias-free convolution with torchvision's ResNet init: `N(0, 2/fan_out)`,
    /// `fan_out = out_channels·kernel²`.
    pub fn resnet(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        rng: &mut impl rand::Rng,
    ) -> Conv2d {
        let shape = [out_channels, in_channels, kernel, kernel];
        let weight = parameter(kaiming_normal_fan_out(
            &shape,
            out_channels * kernel * kernel,
            rng,
        ));
        Conv2d {
            weight,
            bias: None,
            stride,
            padding,
        }
    }

    /// Number of output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.dim(0)
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), self.stride, self.padding)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut p = vec![("weight".to_string(), self.weight.clone())];
        if let Some(b) = &self.bias {
            p.push(("bias".to_string(), b.clone()));
        }
        p
    }
}
