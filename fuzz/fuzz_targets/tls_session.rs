//! Fuzz target `tls_session`: the body is `checks::tls_session` in `fuzz/checks_tls.rs`,
//! which `tests/tests/fuzz_seeds_tls.rs` also runs on the committed seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod checks {
    include!("../checks_tls.rs");
}

fuzz_target!(|data: &[u8]| checks::tls_session(data));
