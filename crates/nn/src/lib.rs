//! simclr-nn
