//! Fuzz target `outbox_receipts`: the body is `checks::outbox_receipts` in `fuzz/checks_outbox.rs`,
//! which `tests/tests/fuzz_seeds_outbox.rs` also runs on the committed seeds.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
mod checks {
    include!("../checks_outbox.rs");
}

fuzz_target!(|data: &[u8]| checks::outbox_receipts(data));
