//! simclr-data
