//! MNIST images IDX parser (gzipped or raw bytes): must return Ok or a typed error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(im) = simclr_data::mnist::parse_images(data, Path::new("fuzz")) {
        assert_eq!(im.pixels.len(), im.count * im.rows * im.cols);
    }
});
