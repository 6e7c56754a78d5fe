//! ResNet-10 / 18 / 34 with the CIFAR stem, as SimCLR uses them on 32×32 images.
//!
//! A ResNet is a stem, four stages of residual blocks and a global average pool. Each
//! [`BasicBlock`] computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, two 3×3
//! convolutions around an identity path; when a block halves the resolution (stride 2) or
//! changes the width, the shortcut is a 1×1 stride-2 convolution plus BatchNorm
//! (torchvision's `downsample.0` / `downsample.1`). Stage `i` has `base·2^i` channels, so the
//! features have `8·base` dimensions (512 for the standard `base = 64`).
//!
//! The CIFAR stem replaces ImageNet's 7×7 stride-2 convolution and max-pool with one 3×3
//! stride-1 convolution (no bias) + BN + ReLU, keeping the 32×32 resolution for `layer1`.
//! The classifier `fc` is removed: the encoder outputs features. Every parameter and buffer
//! has torchvision's state-dict name (`conv1.weight`, `layer2.0.downsample.1.running_var`, …),
//! so `torchvision.models.resnet18()` weights load with
//! [`crate::checkpoint::LoadOptions::torchvision_resnet`].
//!
//! Initialisation follows torchvision: convolutions Kaiming-normal (fan-out, ReLU gain),
//! BatchNorm γ = 1, β = 0.
//!
//! Each `BatchNorm, ReLU` pair runs as one fused op ([`BatchNorm2d::forward_relu`]), and so
//! does each block's end, `BatchNorm, +shortcut, ReLU` ([`BatchNorm2d::forward_add_relu`]):
//! neither keeps the maps between its steps for the backward (PyTorch's in-place ReLU saves
//! the same memory), and each passes over the activations once each way instead of two or
//! three times.

use simclr_tensor::Tensor;

use crate::batch_norm::BatchNorm2d;
use crate::conv::{Conv2d, Conv2dConfig};
use crate::module::{named, Module};
use crate::sequential::Sequential;

/// The two-convolution residual block of ResNet-18/34 (`torchvision.models.resnet.BasicBlock`).
pub struct BasicBlock {
    /// 3×3 convolution, stride 1 or 2.
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm2d,
    /// 3×3 convolution, stride 1.
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm2d,
    /// The projection shortcut (1×1 conv + BN) when the shape changes, else identity.
    pub downsample: Option<Sequential>,
}

impl BasicBlock {
    /// A block from `in_planes` to `planes` channels; a projection shortcut is added when
    /// `stride ≠ 1` or the widths differ.
    pub fn new(
        in_planes: usize,
        planes: usize,
        stride: usize,
        rng: &mut impl rand::Rng,
    ) -> BasicBlock {
        let conv3x3 = |cin, stride| {
            Conv2dConfig::new(cin, planes, 3)
                .with_stride(stride)
                .with_padding(1)
                .resnet()
        };
        let conv1 = conv3x3(in_planes, stride).init(rng);
        let conv2 = conv3x3(planes, 1).init(rng);
        let downsample = (stride != 1 || in_planes != planes).then(|| {
            Sequential::new()
                .add(
                    Conv2dConfig::new(in_planes, planes, 1)
                        .with_stride(stride)
                        .resnet()
                        .init(rng),
                )
                .add(BatchNorm2d::new(planes))
        });
        BasicBlock {
            conv1,
            bn1: BatchNorm2d::new(planes),
            conv2,
            bn2: BatchNorm2d::new(planes),
            downsample,
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let out = self.bn1.forward_relu(&self.conv1.forward(x));
        let shortcut = match &self.downsample {
            Some(d) => d.forward(x),
            None => x.clone(),
        };
        self.bn2
            .forward_add_relu(&self.conv2.forward(&out), &shortcut)
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut children = named(&[
            ("conv1", &self.conv1),
            ("bn1", &self.bn1),
            ("conv2", &self.conv2),
            ("bn2", &self.bn2),
        ]);
        if let Some(d) = &self.downsample {
            children.push(("downsample".into(), d));
        }
        children
    }
}

/// A CIFAR-stem ResNet encoder without its classifier: `[N, 3, H, W] → [N, 8·base_width]`.
pub struct ResNet {
    /// The 3×3 stride-1 stem convolution (no bias).
    pub conv1: Conv2d,
    /// BatchNorm of the stem.
    pub bn1: BatchNorm2d,
    /// The four stages `layer1..layer4`, each a `Sequential` of [`BasicBlock`]s.
    pub layers: [Sequential; 4],
    out_features: usize,
}

impl ResNet {
    /// A ResNet with `blocks[i]` basic blocks in stage `i` and `base_width` channels in the
    /// first stage (64 in torchvision; smaller values give a proportionally narrower network,
    /// with roughly `(base_width/64)²` of the parameters and compute).
    pub fn new(blocks: [usize; 4], base_width: usize, rng: &mut impl rand::Rng) -> ResNet {
        assert!(base_width > 0, "ResNet: base width must be positive");
        let conv1 = Conv2dConfig::new(3, base_width, 3)
            .with_padding(1)
            .resnet()
            .init(rng);
        let bn1 = BatchNorm2d::new(base_width);
        let mut in_planes = base_width;
        let layers = std::array::from_fn(|stage| {
            let planes = base_width << stage;
            let mut layer = Sequential::new();
            for b in 0..blocks[stage] {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                layer.push(BasicBlock::new(in_planes, planes, stride, rng));
                in_planes = planes;
            }
            layer
        });
        ResNet {
            conv1,
            bn1,
            layers,
            out_features: 8 * base_width,
        }
    }

    /// ResNet-10 (blocks `[1, 1, 1, 1]`): half ResNet-18's depth and compute at the same width,
    /// so a CPU budget can buy width instead (see `docs/recipes.md`).
    pub fn resnet10(base_width: usize, rng: &mut impl rand::Rng) -> ResNet {
        ResNet::new([1, 1, 1, 1], base_width, rng)
    }

    /// ResNet-18 (blocks `[2, 2, 2, 2]`); `base_width = 64` is the standard network
    /// (11,168,832 parameters without `fc`, 512-d features).
    pub fn resnet18(base_width: usize, rng: &mut impl rand::Rng) -> ResNet {
        ResNet::new([2, 2, 2, 2], base_width, rng)
    }

    /// ResNet-34 (blocks `[3, 4, 6, 3]`); `base_width = 64` is the standard network.
    pub fn resnet34(base_width: usize, rng: &mut impl rand::Rng) -> ResNet {
        ResNet::new([3, 4, 6, 3], base_width, rng)
    }

    /// Dimension of the output features (`8·base_width`).
    pub fn out_features(&self) -> usize {
        self.out_features
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.bn1.forward_relu(&self.conv1.forward(x));
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        h.global_avg_pool2d()
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        let mut children = named(&[("conv1", &self.conv1), ("bn1", &self.bn1)]);
        for (i, layer) in self.layers.iter().enumerate() {
            children.push((format!("layer{}", i + 1), layer));
        }
        children
    }
}
