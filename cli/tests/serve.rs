#![allow(missing_docs)]
//! `ringwire serve` as an operator runs it: the startup lines, `--admin` answering
//! `/healthz` and `/metrics`, and the log: `--log-format json` writes one JSON object a
//! line, and a flood of bad upgrades is logged as a burst plus a count, not line for
//! line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `ringwire serve ARGS` on ephemeral ports; killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` and reads its startup lines up to the pid line: (listen address, admin
/// address if any, the lines).
fn serve(
    args: &[&str],
    env: &[(&str, &str)],
) -> (Serve, SocketAddr, Option<SocketAddr>, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["serve", "--workers", "1", "--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringwire serve starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    let mut line = String::new();
    while out.read_line(&mut line).expect("startup output") > 0 {
        let l = std::mem::take(&mut line).trim_end().to_owned();
        let done = l.starts_with("pid ");
        lines.push(l);
        if done {
            break;
        }
    }
    // The rest of stdout is read and dropped (a closed pipe would be tested separately).
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    // "ringwire serving Echo on [127.0.0.1:PORT]: ..." and "admin: http://ADDR/metrics, ...".
    let listen = lines
        .iter()
        .find_map(|l| l.strip_prefix("ringwire serving")?.split_once('[')?.1.split_once(']'))
        .map(|(a, _)| a.parse::<SocketAddr>().unwrap())
        .expect("the listen address");
    let admin = lines
        .iter()
        .find_map(|l| l.strip_prefix("admin: http://")?.split_once('/'))
        .map(|(a, _)| a.parse::<SocketAddr>().unwrap());
    (Serve(child), listen, admin, lines)
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn admin_flag_serves_health_and_metrics() {
    let (_s, listen, admin, lines) = serve(&["--admin", "127.0.0.1:0"], &[]);
    let admin = admin.unwrap_or_else(|| panic!("no admin line in {lines:?}"));
    assert!(get(admin, "/healthz").starts_with("HTTP/1.1 200 OK"));
    assert!(get(admin, "/readyz").starts_with("HTTP/1.1 200 OK"));
    // One bad upgrade, seen in the metrics.
    let mut c = TcpStream::connect(listen).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = String::new();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let metrics = get(admin, "/metrics");
    assert!(
        metrics.contains("ringwire_handshake_refusals_total{worker=\"0\",status=\"400\"} 1"),
        "{metrics}"
    );
    // Without the flag there is no admin line.
    let (_s, _, admin, _) = serve(&[], &[]);
    assert_eq!(admin, None);
}

#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringwire"))
        .args(["serve", "--workers", "1", "--listen", "127.0.0.1:0", "--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // like `ringwire serve | head -1` once head is done
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn json_logs_and_a_flood_is_rate_limited() {
    let (mut s, listen, _, _) =
        serve(&["--log-format", "json", "--duration", "3"], &[("RINGWIRE_LOG", "info")]);
    let mut err = s.0.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = err.read_to_string(&mut all);
        all
    });
    const BAD: usize = 300;
    for _ in 0..BAD {
        let mut c = TcpStream::connect(listen).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut sink = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.read_to_end(&mut sink);
    }
    let _ = s.0.wait();
    let log = reader.join().unwrap();
    let mut refused = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
        if v["fields"]["message"] == "upgrade refused" {
            assert_eq!(v["fields"]["status"], 505, "{line}");
            refused.push(v["fields"]["suppressed"].as_u64().unwrap());
        }
    }
    // A burst of ten, then about one a second (the run lasts three), the last ones
    // counting what was left out.
    assert!((10..=14).contains(&refused.len()), "{} lines: {log}", refused.len());
    let counted: u64 = refused.iter().sum::<u64>() + refused.len() as u64;
    assert!(counted <= BAD as u64, "{counted}");
    assert!(log.contains("shutting down") || log.contains("shut down"), "{log}");
}
