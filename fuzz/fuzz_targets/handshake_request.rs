//! Fuzz target `handshake_request`: the body is `checks::handshake_request` in `fuzz/checks.rs`, which
//! `frame/tests/fuzz_seeds.rs` also runs on the committed seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod checks {
    include!("../checks.rs");
}

fuzz_target!(|data: &[u8]| checks::handshake_request(data));
