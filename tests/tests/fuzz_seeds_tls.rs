//! Replays the committed seeds of the TLS fuzz target (`fuzz/seeds/tls_session/*`)
//! through its checks (`fuzz/checks_tls.rs`), on stable, as ordinary tests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

mod checks {
    include!("../../fuzz/checks_tls.rs");
}

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target)
}

#[test]
fn tls_seeds_pass_their_checks() {
    for (target, check) in checks::TLS_TARGETS {
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(seeds_dir(target))
            .unwrap_or_else(|e| panic!("seed folder of {target}: {e}"))
            .map(|e| e.unwrap().path())
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 4, "{target}: too few seeds");
        for seed in seeds {
            let data = std::fs::read(&seed).unwrap();
            let r = catch_unwind(AssertUnwindSafe(|| check(&data)));
            assert!(r.is_ok(), "{}", seed.display());
        }
    }
}

/// Each mode of the target, on inputs made here (not only the committed seeds).
#[test]
fn every_mode_holds_on_made_inputs() {
    let big: Vec<u8> = (0..70_000u32).map(|i| (i * 31) as u8).collect();
    for mode in 0..4u8 {
        for piece in [0u8, 3, 255] {
            let mut d = vec![mode, piece];
            d.extend_from_slice(&big[..(mode as usize + 1) * 9_000]);
            checks::tls_session(&d);
            let mut rec = vec![mode, piece, 0x17, 3, 3, 0x40, 0x11];
            rec.extend_from_slice(&big[..0x4011]);
            checks::tls_session(&rec);
            checks::tls_session(&[mode, piece, 0x16, 3, 1, 0xff, 0xff, 1, 0xff, 0xff, 0xff]);
        }
    }
}
