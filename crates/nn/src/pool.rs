//! Pooling layers: [`MaxPool2d`] and [`AvgPool2d`] over square windows, and
//! [`GlobalAvgPool`], which averages each channel's whole feature map (`[N, C, H, W] → [N, C]`,
//! the `avgpool` + `flatten` at the end of a ResNet).

use simclr_tensor::Tensor;

use crate::module::Module;

/// Maximum over `kernel × kernel` windows moved by `stride` (`nn.MaxPool2d(kernel, stride)`).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl MaxPool2d {
    /// A max-pool with the given window and stride (`MaxPool2d::new(2, 2)` halves H and W).
    pub fn new(kernel: usize, stride: usize) -> MaxPool2d {
        MaxPool2d { kernel, stride }
    }
}

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.kernel, self.stride)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// Mean over `kernel × kernel` windows moved by `stride` (`nn.AvgPool2d(kernel, stride)`).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    /// Window size.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
}

impl AvgPool2d {
    /// An average-pool with the given window and stride.
    pub fn new(kernel: usize, stride: usize) -> AvgPool2d {
        AvgPool2d { kernel, stride }
    }
}

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(self.kernel, self.stride)
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}

/// `[N, C, H, W] → [N, C]`: the mean of each channel (`AdaptiveAvgPool2d(1)` + `flatten(1)`).
#[derive(Clone, Copy, Debug, Default)]
pub struct GlobalAvgPool;

impl Module for GlobalAvgPool {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.global_avg_pool2d()
    }
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
}
