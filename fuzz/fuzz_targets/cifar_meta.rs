//! `batches.meta.txt` parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(names) = simclr_data::cifar10::parse_meta(data, Path::new("fuzz")) {
        assert_eq!(names.len(), 10);
    }
});
