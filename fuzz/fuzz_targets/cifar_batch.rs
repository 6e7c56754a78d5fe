//! CIFAR-10 batch parser (gzipped or raw bytes): Ok or a typed error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(b) = simclr_data::cifar10::parse_batch(data, Path::new("fuzz")) {
        assert_eq!(b.images.len(), b.labels.len() * simclr_data::cifar10::IMAGE_BYTES);
        assert!(b.labels.iter().all(|&l| l <= 9));
    }
});
