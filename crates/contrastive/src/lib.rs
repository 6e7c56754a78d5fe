//! simclr-contrastive
