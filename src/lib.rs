//! simclr umbrella
