//! MNIST labels IDX parser, and the images + labels pairing (the input is split in two).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(labels) = simclr_data::mnist::parse_labels(data, Path::new("fuzz")) {
        assert!(labels.iter().all(|&l| l <= 9));
    }
    let mid = data.len() / 2;
    let _ = simclr_data::mnist::parse_pair(
        &data[..mid],
        Path::new("images"),
        &data[mid..],
        Path::new("labels"),
    );
});
