//! Fuzz target `connection_deflate`: the body is `checks::connection_deflate` in `fuzz/checks.rs`, which
//! `frame/tests/fuzz_seeds.rs` also runs on the committed seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod checks {
    include!("../checks.rs");
}

fuzz_target!(|data: &[u8]| checks::connection_deflate(data));
