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

/// How a convolution's weights start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvInit {
    /// `torch.nn.Conv2d`'s default: weight and bias from `U(±1/√fan_in)`,
    /// `fan_in = in_channels·kernel²`.
    PytorchDefault,
    /// torchvision's ResNet init: weight from `N(0, 2/fan_out)`, `fan_out = out_channels·kernel²`
    /// (bias, if any, zero).
    KaimingNormalFanOut,
}

/// The settings of a [`Conv2d`]: channels and kernel size are required, the rest default to
/// `torch.nn.Conv2d`'s (stride 1, no padding, a bias, PyTorch's initialisation).
///
/// ```
/// use simclr_nn::{Conv2dConfig, ConvInit};
/// let mut rng = rand::thread_rng();
/// let conv = Conv2dConfig::new(1, 32, 3).with_padding(1).init(&mut rng);
/// let stem = Conv2dConfig::new(3, 64, 3)
///     .with_padding(1)
///     .with_bias(false)
///     .with_initializer(ConvInit::KaimingNormalFanOut)
///     .init(&mut rng);
/// assert_eq!((conv.out_channels(), stem.bias.is_none()), (32, true));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Side of the square kernel.
    pub kernel: usize,
    /// Step between applications of the kernel (default 1).
    pub stride: usize,
    /// Zero padding on every side (default 0).
    pub padding: usize,
    /// Whether there is a bias (default yes).
    pub bias: bool,
    /// How the weights start (default [`ConvInit::PytorchDefault`]).
    pub initializer: ConvInit,
}

impl Conv2dConfig {
    /// `in_channels → out_channels` with a `kernel × kernel` kernel, the other settings at
    /// their defaults.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel,
            stride: 1,
            padding: 0,
            bias: true,
            initializer: ConvInit::PytorchDefault,
        }
    }

    /// The same with stride `stride`.
    pub fn with_stride(self, stride: usize) -> Self {
        Conv2dConfig { stride, ..self }
    }

    /// The same with `padding` zeros on every side.
    pub fn with_padding(self, padding: usize) -> Self {
        Conv2dConfig { padding, ..self }
    }

    /// The same with or without a bias.
    pub fn with_bias(self, bias: bool) -> Self {
        Conv2dConfig { bias, ..self }
    }

    /// The same with another initialisation.
    pub fn with_initializer(self, initializer: ConvInit) -> Self {
        Conv2dConfig {
            initializer,
            ..self
        }
    }

    /// torchvision's ResNet convolution of this shape: no bias, Kaiming-normal (fan-out).
    pub fn resnet(self) -> Self {
        self.with_bias(false)
            .with_initializer(ConvInit::KaimingNormalFanOut)
    }

    /// A convolution with these settings, its weights drawn from `rng`.
    pub fn init(&self, rng: &mut impl rand::Rng) -> Conv2d {
        let Conv2dConfig {
            in_channels: cin,
            out_channels: cout,
            kernel: k,
            ..
        } = *self;
        let shape = [cout, cin, k, k];
        let (weight, bias) = match self.initializer {
            ConvInit::PytorchDefault => {
                let fan_in = cin * k * k;
                let weight = pytorch_default_uniform(&shape, fan_in, rng);
                let bias = self
                    .bias
                    .then(|| pytorch_default_uniform(&[cout], fan_in, rng));
                (weight, bias)
            }
            ConvInit::KaimingNormalFanOut => {
                let weight = kaiming_normal_fan_out(&shape, cout * k * k, rng);
                (weight, self.bias.then(|| Tensor::zeros(&[cout])))
            }
        };
        Conv2d {
            weight: parameter(weight),
            bias: bias.map(parameter),
            stride: self.stride,
            padding: self.padding,
        }
    }
}

impl Conv2d {
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
