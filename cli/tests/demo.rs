#![allow(missing_docs)]
//! `ringwire demo --json`: the text report on stderr, one JSON object with every
//! scenario's figures on stdout, exit status 0 on a clean run.

use std::process::Command;

#[test]
fn demo_json_is_one_object_with_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["demo", "--json", "--workers", "1", "--seconds", "0.5"])
        .args(["--echo-connections", "10", "--subscribers", "20", "--rate", "50"])
        .args(["--idle-connections", "100", "--durable-messages", "100"])
        .output()
        .expect("ringwire demo runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert_eq!(stdout.lines().count(), 1, "one line of JSON on stdout: {stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(v["scenario"], "demo");
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(v["echo"]["connections"], 10, "{v}");
    assert!(v["echo"]["messages"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["durable"]["delivered"], 100, "{v}");
    assert_eq!(v["durable"]["twice"], 0);
    assert!(v["server"]["accepted"].as_u64().unwrap() >= 130, "{v}");
    assert!(stderr.contains("  echo ") && stderr.contains("  errors          0"), "{stderr}");
}
