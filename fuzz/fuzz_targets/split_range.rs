//! Command-line parsers: split ranges and recipe names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = simclr_data::parse_range(s) {
            assert!(r.start < r.end);
        }
        let _ = s.parse::<simclr_data::Recipe>();
    }
});
