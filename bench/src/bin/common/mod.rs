//! What every `peer-*` comparison server shares: its command line and its start-up line.
//!
//! Each peer is one file in `bench/src/bin/` that includes this module with
//! `#[path = "common/mod.rs"] mod common;` (a directory without `main.rs` is not a binary).

#![allow(dead_code)] // each peer uses part of it

use std::io::Write as _;
use std::net::SocketAddr;

/// The address used when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9002";

/// The peers' command line: `--listen ADDR` or a positional `ADDR`, and optional flags.
pub struct Args {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Flags given (`--batch`), without their dashes.
    pub flags: Vec<String>,
}

impl Args {
    /// Parses `std::env::args`; exits with a usage line on a bad argument. `known`: the
    /// flags this peer accepts besides `--listen`.
    pub fn parse(name: &str, known: &[&str]) -> Args {
        let usage = || -> ! {
            let extra: String = known.iter().map(|f| format!(" [--{f}]")).collect();
            eprintln!("usage: {name} [--listen ADDR | ADDR]{extra}   (default {DEFAULT_ADDR})");
            std::process::exit(2)
        };
        let mut addr: Option<String> = None;
        let mut flags = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                "--listen" | "-l" => addr = Some(it.next().unwrap_or_else(|| usage())),
                "-h" | "--help" => usage(),
                f if f.starts_with("--") && known.contains(&&f[2..]) => flags.push(f[2..].into()),
                f if !f.starts_with('-') && addr.is_none() => addr = Some(f.into()),
                _ => usage(),
            }
        }
        let addr = addr.as_deref().unwrap_or(DEFAULT_ADDR).parse().unwrap_or_else(|_| usage());
        Args { addr, flags }
    }

    /// Whether `--flag` was given.
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Prints `pid N` and the bound address (what `run-engine-matrix.sh` waits for).
pub fn announce(name: &str, addr: SocketAddr, what: &str) {
    println!("{name} listening on {addr} ({what})");
    println!("pid {}", std::process::id());
    let _ = std::io::stdout().flush();
}

/// With `--tls`: a tokio-rustls acceptor for the certificate chain and key in the PEM
/// files named by `PEER_TLS_CERT` and `PEER_TLS_KEY`, with the crypto ringwire's server
/// uses (`ringwire::tls::crypto_provider`: ring, X25519 and AES-128-GCM first) and ALPN
/// http/1.1, so that both do the same cryptography.
pub fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let var = |n: &str| std::env::var(n).unwrap_or_else(|_| panic!("--tls needs {n}"));
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(var("PEER_TLS_CERT"))
        .expect("PEER_TLS_CERT")
        .map(|c| c.expect("a certificate"))
        .collect();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(var("PEER_TLS_KEY")).expect("PEER_TLS_KEY");
    let mut c = rustls::ServerConfig::builder_with_provider(ringwire::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("the certificate and key");
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(c))
}
