//! simclr-baselines
