//! Replays the committed fuzz seeds (`fuzz/seeds/<target>/*`) through the same checks
//! the cargo-fuzz targets run (`fuzz/checks.rs`), on stable, as ordinary tests. The fuzz
//! crate itself needs nightly and libFuzzer; see docs/CONFORMANCE.md, "Fuzzing".

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

mod checks {
    include!("../../fuzz/checks.rs");
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every seed of every target passes its target's checks. A missing or empty seed folder
/// fails: a target without seeds would silently test nothing here.
#[test]
fn seeds_pass_their_checks() {
    let mut failures = Vec::new();
    let mut total = 0;
    for (target, check) in checks::TARGETS {
        let dir = fuzz_dir().join("seeds").join(target);
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("seed folder {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
        for seed in &seeds {
            let data = std::fs::read(seed).unwrap();
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{target}/{}: {msg}", seed.file_name().unwrap().display()));
            }
            total += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} seeds fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("fuzz seeds: {total} replayed, all pass");
}

/// The list of targets here, the fuzz crate's target files and the seed folders agree.
#[test]
fn every_target_has_a_file_and_seeds() {
    let mut files: Vec<String> = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    files.sort();
    let mut dirs: Vec<String> = std::fs::read_dir(fuzz_dir().join("seeds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = checks::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    // The outbox's and TLS targets need the engine crate: their checks are in
    // checks_outbox.rs and checks_tls.rs (replayed by tests/tests/fuzz_seeds_outbox.rs
    // and fuzz_seeds_tls.rs); their names are read from their lists.
    for (file, list) in [("checks_outbox.rs", "OUTBOX_TARGETS"), ("checks_tls.rs", "TLS_TARGETS")] {
        let text = std::fs::read_to_string(fuzz_dir().join(file)).unwrap();
        let list = text.split(list).nth(1).and_then(|r| r.split(';').next()).unwrap();
        names.extend(
            list.split("(\"").skip(1).filter_map(|p| Some(p.split('"').next()?.to_owned())),
        );
    }
    names.sort();
    assert_eq!(files, names, "fuzz/fuzz_targets vs checks::TARGETS");
    assert_eq!(dirs, names, "fuzz/seeds vs checks::TARGETS");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for n in &names {
        assert!(manifest.contains(&format!("name = \"{n}\"")), "{n} not a [[bin]] in Cargo.toml");
    }
}

/// The checks are not vacuous: they reject what they exist to reject.
#[test]
fn checks_catch_broken_properties() {
    // RFC 6455 §5.7's masked "Hello" is a seed and decodes as expected.
    let seed = std::fs::read(fuzz_dir().join("seeds/frame_header/rfc-masked-hello")).unwrap();
    assert_eq!(seed, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    // Fed to a server, the RFC request seed followed by nothing parses whole.
    let req = std::fs::read(fuzz_dir().join("seeds/handshake_request/rfc-request")).unwrap();
    let (_, n) = ringwire_frame::handshake::parse_request(
        &req,
        &ringwire_frame::handshake::HandshakeLimits::default(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(n, req.len());
    // A well-formed stream passes the sent-bytes check; a masked server frame does not.
    // It counts the data frames, which the connection checks compare with the echoes.
    let data = checks_sent_ok(ringwire_frame::Role::Server, &[0x81, 0x02, b'o', b'k', 0x88, 0x00]);
    assert_eq!(data, 1);
    let bad = catch_unwind(|| {
        checks_sent_ok(ringwire_frame::Role::Server, &[0x81, 0x82, 1, 2, 3, 4, 0, 0])
    });
    assert!(bad.is_err(), "a masked frame from a server must be caught");
    let after_close =
        catch_unwind(|| checks_sent_ok(ringwire_frame::Role::Server, &[0x88, 0x00, 0x81, 0x00]));
    assert!(after_close.is_err(), "a data frame after the close must be caught");
}

fn checks_sent_ok(role: ringwire_frame::Role, wire: &[u8]) -> usize {
    checks::check_sent(role, wire, false)
}
