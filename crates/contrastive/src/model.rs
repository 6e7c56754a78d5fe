//! The SimCLR model: an encoder `f` followed by a projection head `g`.
//!
//! SimCLR learns `f` by making the projections `z = g(f(x))` of two augmented views of the same
//! image agree (under [`crate::nt_xent()`]) while disagreeing with every other image in the batch.
//! The head exists only for the loss: after pretraining it is discarded and the features
//! `h = f(x)` are what a linear probe, a kNN classifier or a fine-tune use, because the last
//! layers before the loss learn to throw away information (colour, orientation, …) that the
//! augmentations vary but a downstream task may need.
//!
//! Both halves are ordinary [`Module`]s, so the model's state dict is the encoder's under
//! `encoder.` and the head's under `head.` (`encoder.0.weight`, `head.2.bias`, …), which is
//! what checkpoints store.

use simclr_nn::module::named;
use simclr_nn::{MnistEncoder, Module, ProjectionHead, ResNet};
use simclr_tensor::Tensor;

/// An encoder and a projection head, trained together by contrastive pretraining.
pub struct SimClr {
    /// `f`: images → features (kept after pretraining).
    pub encoder: Box<dyn Module>,
    /// `g`: features → projections (used only by the loss).
    pub head: ProjectionHead,
    feature_dim: usize,
}

impl SimClr {
    /// A model from any encoder producing `feature_dim`-dimensional features and a head whose
    /// input is `feature_dim`.
    pub fn new(encoder: Box<dyn Module>, feature_dim: usize, head: ProjectionHead) -> SimClr {
        SimClr {
            encoder,
            head,
            feature_dim,
        }
    }

    /// The report's MNIST model: the small CNN encoder (→128) and a 128→256→128 head.
    pub fn mnist(rng: &mut impl rand::Rng) -> SimClr {
        SimClr::mnist_with_widths(MnistEncoder::REPORT_WIDTHS, rng)
    }

    /// The same model with the encoder's convolutions `widths` channels wide
    /// ([`MnistEncoder::with_widths`]).
    pub fn mnist_with_widths(widths: [usize; 2], rng: &mut impl rand::Rng) -> SimClr {
        let encoder = MnistEncoder::with_widths(widths, 128, rng);
        let dim = encoder.out_features();
        let head = ProjectionHead::new(dim, 256, 128, rng);
        SimClr::new(Box::new(encoder), dim, head)
    }

    /// A ResNet encoder (CIFAR stem, `8·base_width` features) with a `8·base_width`→256→128
    /// head; `ResNet::resnet18(64, ..)` makes the report's CIFAR-10 model.
    pub fn resnet(encoder: ResNet, rng: &mut impl rand::Rng) -> SimClr {
        let dim = encoder.out_features();
        let head = ProjectionHead::new(dim, 256, 128, rng);
        SimClr::new(Box::new(encoder), dim, head)
    }

    /// The report's CIFAR-10 model, ResNet-18 ([`SimClr::resnet`]); `base_width` is 64 for
    /// the standard network.
    pub fn resnet18(base_width: usize, rng: &mut impl rand::Rng) -> SimClr {
        let encoder = ResNet::resnet18(base_width, rng);
        SimClr::resnet(encoder, rng)
    }

    /// Dimension of the encoder's features `h`.
    pub fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    /// Dimension of the projections `z`.
    pub fn projection_dim(&self) -> usize {
        self.head.out_features()
    }

    /// `h = f(x)`: the features downstream tasks use.
    pub fn features(&self, x: &Tensor) -> Tensor {
        self.encoder.forward(x)
    }
}

impl Module for SimClr {
    /// `z = g(f(x))`: the projections the contrastive loss compares.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.head.forward(&self.encoder.forward(x))
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        named(&[("encoder", &self.encoder), ("head", &self.head)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn names_shapes_and_projection() {
        let model = SimClr::mnist(&mut StdRng::seed_from_u64(0));
        let names: Vec<String> = model.state_dict().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "encoder.0.weight");
        assert!(names.contains(&"head.2.bias".to_string()), "{names:?}");
        let x = Tensor::zeros(&[3, 1, 28, 28]);
        assert_eq!(model.features(&x).shape(), &[3, 128]);
        assert_eq!(model.forward(&x).shape(), &[3, 128]);
        assert_eq!((model.feature_dim(), model.projection_dim()), (128, 128));
    }
}
