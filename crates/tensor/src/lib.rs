//! simclr-tensor
