//! Per-channel normalisation `x' = (x/255 - mean_c) / std_c`.
//!
//! Constants:
//! - MNIST: mean 0.1307, std 0.3081 (the values every MNIST example uses; the real-data test
//!   recomputes them from the 60,000 training images).
//! - CIFAR-10: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616) — the per-channel
//!   mean and standard deviation of the 50,000 training images' pixels scaled to `[0, 1]`
//!   (again recomputed by the real-data test). Many tutorials use std (0.2023, 0.1994, 0.2010)
//!   instead, which are not the pixel std; the difference is a constant scale per channel.

/// Which dataset an [`crate::ImageSet`] comes from; selects constants and recipe variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatasetKind {
    /// 28×28 grey digits.
    Mnist,
    /// 32×32 RGB objects.
    Cifar10,
}

impl DatasetKind {
    /// The dataset's name on the command line and in a run's `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "mnist",
            DatasetKind::Cifar10 => "cifar10",
        }
    }

    /// The folder of the dataset's files inside the data directory.
    pub fn dir(self) -> &'static str {
        match self {
            DatasetKind::Mnist => crate::mnist::DIR,
            DatasetKind::Cifar10 => crate::cifar10::DIR,
        }
    }

    /// The standard normalisation of this dataset.
    pub fn normalize(self) -> Normalize {
        match self {
            DatasetKind::Mnist => Normalize::mnist(),
            DatasetKind::Cifar10 => Normalize::cifar10(),
        }
    }

    /// Guesses the dataset from the number of channels (1 → MNIST, else CIFAR-10).
    pub fn from_channels(channels: usize) -> Self {
        if channels == 1 {
            DatasetKind::Mnist
        } else {
            DatasetKind::Cifar10
        }
    }
}

impl std::str::FromStr for DatasetKind {
    type Err = crate::DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mnist" => Ok(DatasetKind::Mnist),
            "cifar10" | "cifar-10" | "cifar" => Ok(DatasetKind::Cifar10),
            _ => Err(crate::DataError::Parse {
                what: "dataset",
                input: s.to_string(),
                reason: "expected `mnist` or `cifar10`".into(),
            }),
        }
    }
}

/// Per-channel mean and standard deviation, applied to pixels scaled to `[0, 1]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel.
    pub std: Vec<f32>,
}

impl Normalize {
    /// MNIST: mean 0.1307, std 0.3081.
    pub fn mnist() -> Self {
        Normalize {
            mean: vec![0.1307],
            std: vec![0.3081],
        }
    }

    /// CIFAR-10: mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616).
    pub fn cifar10() -> Self {
        Normalize {
            mean: vec![0.4914, 0.4822, 0.4465],
            std: vec![0.2470, 0.2435, 0.2616],
        }
    }

    /// No normalisation beyond scaling to `[0, 1]` (mean 0, std 1 for `channels` channels).
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// `(scale, shift)` of channel `c` such that `x' = x * scale + shift` for `x` in `[0, 1]`.
    fn affine(&self, c: usize) -> (f32, f32) {
        let m = self
            .mean
            .get(c)
            .or(self.mean.last())
            .copied()
            .unwrap_or(0.0);
        let s = self.std.get(c).or(self.std.last()).copied().unwrap_or(1.0);
        let s = if s == 0.0 { 1.0 } else { s };
        (1.0 / s, -m / s)
    }

    /// Normalises one CHW image of bytes into `dst` (same length); `hw` = pixels per channel.
    pub fn apply_u8(&self, src: &[u8], dst: &mut [f32], hw: usize) {
        if hw == 0 {
            return;
        }
        for (c, (d, s)) in dst.chunks_mut(hw).zip(src.chunks(hw)).enumerate() {
            let (a, b) = self.affine(c);
            let a = a / 255.0;
            for (d, &s) in d.iter_mut().zip(s) {
                *d = s as f32 * a + b;
            }
        }
    }

    /// Normalises one CHW image with values in `[0, 1]` into `dst` (same length).
    pub fn apply_f32(&self, src: &[f32], dst: &mut [f32], hw: usize) {
        if hw == 0 {
            return;
        }
        for (c, (d, s)) in dst.chunks_mut(hw).zip(src.chunks(hw)).enumerate() {
            let (a, b) = self.affine(c);
            for (d, &s) in d.iter_mut().zip(s) {
                *d = s * a + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnist_constants() {
        let n = Normalize::mnist();
        let mut d = [0.0; 2];
        n.apply_u8(&[0, 255], &mut d, 2);
        assert!((d[0] + 0.1307 / 0.3081).abs() < 1e-6);
        assert!((d[1] - (1.0 - 0.1307) / 0.3081).abs() < 1e-5);
        let mut e = [0.0; 2];
        n.apply_f32(&[0.0, 1.0], &mut e, 2);
        assert!((d[0] - e[0]).abs() < 1e-6 && (d[1] - e[1]).abs() < 1e-5);
    }

    #[test]
    fn parse_kind() {
        assert_eq!("MNIST".parse::<DatasetKind>().unwrap(), DatasetKind::Mnist);
        assert_eq!(
            "cifar-10".parse::<DatasetKind>().unwrap(),
            DatasetKind::Cifar10
        );
        assert!("imagenet".parse::<DatasetKind>().is_err());
    }
}
