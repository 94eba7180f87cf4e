//! TLS between the socket and the WebSocket protocol (`wss://`), with rustls.
//!
//! rustls's unbuffered API runs on the workers like the rest of a connection: records
//! are decrypted out of the receive ring's buffers and encrypted into the send
//! allocations, and an idle connection holds its TLS state and no buffer
//! ([`session`]). The crypto provider is *ring* by default: it builds with a C compiler
//! alone (no cmake, no Go), and the project already links it for the NATS client; its
//! AES-GCM and ChaCha20-Poly1305 use the CPU's instructions like aws-lc-rs's do. The
//! `aws-lc-rs` feature puts AWS-LC in its place (rustls's provider, and the AEADs and
//! HKDF of ringwire's own record layer): it adds the post-quantum hybrid key exchange
//! X25519MLKEM768 (offered first by a client, preferred by a server when the client
//! offers it), and costs ~150-200 B more per idle connection
//! ([`crypto_provider`] says what each provider offers).
//!
//! - A server: [`TlsServerConfig::from_pem_files`] (a certificate chain and its key),
//!   more certificates picked by SNI ([`TlsServerConfig::add_pem_files`]), and
//!   [`TlsServerConfig::reload`] to read the files again (the CLI does it on SIGHUP):
//!   handshakes from then on use the new certificates, connections already up keep
//!   theirs and are not dropped.
//! - A client: [`TlsClientConfig::new`] trusts the system's roots
//!   (rustls-native-certs) and the extra authorities it is given;
//!   the server's name is verified; [`TlsClientConfig::insecure`] turns verification
//!   off and says so in its name.
//!
//! Both speak TLS 1.3 and 1.2 and offer ALPN `http/1.1`.

mod record;
mod secrets;

#[cfg(feature = "aws-lc-rs")]
pub(crate) use aws_lc_rs as crypto;
/// The crypto library under ringwire's own record layer and key updates: the same one
/// as rustls's provider ([`crypto_provider`]), so that a connection's keys come from
/// one library. aws-lc-rs offers *ring*'s API for what is used here.
#[cfg(not(feature = "aws-lc-rs"))]
pub(crate) use ring as crypto;
pub mod session;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub use self::session::{TlsError, TlsSession};

/// The fields of rustls's server and client configurations that ringwire sets alike.
trait Config: Clone {
    fn extracts_secrets(&self) -> bool;
    fn parts(&mut self) -> (&mut Vec<Vec<u8>>, &mut bool, &mut Arc<dyn rustls::KeyLog>);
}

macro_rules! config {
    ($t:ty) => {
        impl Config for $t {
            fn extracts_secrets(&self) -> bool {
                self.enable_secret_extraction
            }
            fn parts(&mut self) -> (&mut Vec<Vec<u8>>, &mut bool, &mut Arc<dyn rustls::KeyLog>) {
                (&mut self.alpn_protocols, &mut self.enable_secret_extraction, &mut self.key_log)
            }
        }
    };
}
config!(rustls::ServerConfig);
config!(rustls::ClientConfig);

/// A configuration ringwire makes: ALPN `http/1.1`, and after a TLS 1.3 handshake the
/// session keeps the traffic keys only (secret extraction, and the key log that
/// catches the traffic secrets, `secrets.rs`).
fn ours<C: Config>(mut c: C) -> Arc<C> {
    let (alpn, extract, log) = c.parts();
    *alpn = vec![b"http/1.1".to_vec()];
    *extract = true;
    *log = secrets::SecretCapture::wrap(log.clone());
    Arc::new(c)
}

/// A caller's configuration: where it asks for secret extraction, a copy whose key log
/// also catches the traffic secrets (and passes everything on to the one it had).
fn with_capture<C: Config>(config: Arc<C>) -> Arc<C> {
    if !config.extracts_secrets() {
        return config;
    }
    let mut c = (*config).clone();
    let (_, _, log) = c.parts();
    *log = secrets::SecretCapture::wrap(log.clone());
    Arc::new(c)
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// rustls refused the certificate, the key, or the pair.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// A name given for SNI is not a DNS name.
    #[error("`{0}` is not a DNS name")]
    BadName(String),
    /// [`TlsServerConfig::from_der`] was given no certificate.
    #[error("no certificate in the chain")]
    NoCertificate,
}

/// The crypto every TLS configuration of ringwire uses (and a caller building its own
/// rustls configuration for [`TlsServerConfig::from_rustls`] may use).
///
/// By default *ring*, with X25519 the preferred key exchange and AES-128-GCM the
/// preferred cipher. rustls 0.23.48 lists P-384 first for this provider, and *ring*
/// computes P-384 with generic big-number code: ~0.9 ms of server CPU per handshake
/// here, against ~0.07 ms for X25519 (browsers offer X25519 first too).
/// AES-256-GCM-SHA384 comes first in its suites; AES-128-GCM-SHA256 (what browsers
/// prefer) has four fewer AES rounds per block and hashes its transcript with SHA-256,
/// which CPUs accelerate and SHA-384 they do not.
///
/// With the `aws-lc-rs` feature, AWS-LC, with the key exchanges X25519MLKEM768 (the
/// post-quantum hybrid of RFC draft-ietf-tls-ecdhe-mlkem, which current browsers
/// offer), X25519, P-256 and P-384 in that order, and the same order of suites.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as S;
    #[cfg(not(feature = "aws-lc-rs"))]
    let mut p = {
        use rustls::crypto::ring::kx_group;
        // Deprecated by rustls for having no post-quantum key exchange: the
        // `aws-lc-rs` feature is the way to one.
        #[allow(deprecated)]
        let mut p = rustls::crypto::ring::default_provider();
        p.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
        p
    };
    #[cfg(feature = "aws-lc-rs")]
    let mut p = {
        use rustls::crypto::aws_lc_rs::kx_group;
        let mut p = rustls::crypto::aws_lc_rs::default_provider();
        p.kx_groups = vec![
            kx_group::X25519MLKEM768,
            kx_group::X25519,
            kx_group::SECP256R1,
            kx_group::SECP384R1,
        ];
        p
    };
    p.cipher_suites.sort_by_key(|c| match c.suite() {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 1,
        S::TLS13_AES_256_GCM_SHA384 => 2,
        _ => 3, // TLS 1.2, in rustls's order
    });
    Arc::new(p)
}

/// Whether `group` is a post-quantum key exchange (ML-KEM alone or in a hybrid with an
/// elliptic curve, draft-ietf-tls-ecdhe-mlkem): what a recorded session's secrecy
/// against a future quantum computer rests on.
pub fn is_post_quantum(group: rustls::NamedGroup) -> bool {
    use rustls::NamedGroup as G;
    matches!(
        group,
        G::X25519MLKEM768 | G::secp256r1MLKEM768 | G::MLKEM512 | G::MLKEM768 | G::MLKEM1024
    )
}

/// A certificate chain and its key, read from PEM files.
fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsConfigError> {
    let file_err = |path: &Path, reason: String| TlsConfigError::File { path: path.into(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no certificate in it".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key_der, &crypto_provider())?))
}

/// The certificates a server picks from.
#[derive(Debug, Default)]
struct Certs {
    /// For a client that named no host, or one not listed.
    default: Option<Arc<CertifiedKey>>,
    /// By lower-case DNS name.
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// Where the certificates came from (for [`TlsServerConfig::reload`]).
#[derive(Debug, Clone)]
struct Source {
    names: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

/// Picks a certificate by the ClientHello's server name. Read once per handshake; the
/// lock is taken for writing only by a reload.
#[derive(Debug, Default)]
struct Resolver {
    certs: RwLock<Arc<Certs>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certs = self.certs.read().map(|c| c.clone()).unwrap_or_default();
        if let Some(name) = hello.server_name() {
            if let Some(k) = certs.by_name.get(&name.to_ascii_lowercase()) {
                return Some(k.clone());
            }
        }
        certs.default.clone()
    }
}

/// A TLS server's configuration: what [`crate::EngineBuilder::tls`] takes.
#[derive(Debug, Clone)]
pub struct TlsServerConfig {
    config: Arc<rustls::ServerConfig>,
    resolver: Arc<Resolver>,
    sources: Vec<Source>,
    /// The default certificate given in memory ([`TlsServerConfig::from_der`]), which a
    /// reload keeps.
    fixed: Option<Arc<CertifiedKey>>,
}

impl TlsServerConfig {
    /// A server with the certificate chain in `cert` (PEM, the leaf first) and its
    /// private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1), used for every client
    /// whatever name it asks for (unless [`TlsServerConfig::add_pem_files`] adds one for
    /// that name).
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let source =
            Source { names: Vec::new(), cert: cert.as_ref().into(), key: key.as_ref().into() };
        let resolver = Arc::new(Resolver::default());
        let me = Self {
            config: Self::rustls_config(resolver.clone())?,
            resolver,
            sources: vec![source],
            fixed: None,
        };
        me.reload()?;
        Ok(me)
    }

    /// A server with a certificate chain (the leaf first) and its private key given in
    /// memory as DER, for certificates that do not come from files (a secret store, a
    /// certificate made at run time), used for every client whatever name it asks for
    /// (unless [`TlsServerConfig::add_pem_files`] adds one for that name). A
    /// [`TlsServerConfig::reload`] keeps it.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsConfigError> {
        if chain.is_empty() {
            return Err(TlsConfigError::NoCertificate);
        }
        let pair = Arc::new(CertifiedKey::from_der(chain, key, &crypto_provider())?);
        let resolver = Arc::new(Resolver::default());
        let me = Self {
            config: Self::rustls_config(resolver.clone())?,
            resolver,
            sources: Vec::new(),
            fixed: Some(pair),
        };
        me.reload()?;
        Ok(me)
    }

    /// Adds a certificate chain and key used when the client asks for one of `names`
    /// (SNI). Names are DNS names, compared without regard to case.
    pub fn add_pem_files(
        mut self,
        names: &[&str],
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, TlsConfigError> {
        let mut lower = Vec::new();
        for n in names {
            ServerName::try_from(*n).map_err(|_| TlsConfigError::BadName((*n).to_owned()))?;
            lower.push(n.to_ascii_lowercase());
        }
        self.sources.push(Source {
            names: lower,
            cert: cert.as_ref().into(),
            key: key.as_ref().into(),
        });
        self.reload()?;
        Ok(self)
    }

    fn rustls_config(resolver: Arc<Resolver>) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
        let c = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        Ok(ours(c))
    }

    /// Reads every certificate and key file again; handshakes from now on use them.
    /// Connections already up are not touched. On an error nothing changes (the old
    /// certificates stay in use).
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let mut certs = Certs { default: self.fixed.clone(), ..Certs::default() };
        for s in &self.sources {
            let pair = load_pair(&s.cert, &s.key)?;
            if s.names.is_empty() {
                certs.default = Some(pair);
            } else {
                for n in &s.names {
                    certs.by_name.insert(n.clone(), pair.clone());
                }
            }
        }
        if let Ok(mut w) = self.resolver.certs.write() {
            *w = Arc::new(certs);
        }
        Ok(())
    }

    /// The rustls configuration (for a caller that wants to change what this does not
    /// expose; [`TlsServerConfig::from_rustls`] takes it back).
    pub fn rustls(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// A server configured by the caller in rustls's own terms. [`TlsServerConfig::reload`]
    /// then does nothing. With `enable_secret_extraction` set, TLS 1.3 connections keep
    /// their traffic keys only after the handshake (the configuration's key log is
    /// wrapped to catch the traffic secrets, and still gets everything it got);
    /// without, rustls keeps each connection's whole state.
    pub fn from_rustls(config: Arc<rustls::ServerConfig>) -> Self {
        let config = with_capture(config);
        Self { config, resolver: Arc::new(Resolver::default()), sources: Vec::new(), fixed: None }
    }

    /// A server session of this configuration, for driving TLS without the engine's
    /// sockets (sans-IO: bytes in with [`TlsSession::receive`], out in
    /// [`TlsSession::out`]), as the engine does on its workers.
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        TlsSession::server(self.config.clone())
    }
}

/// A TLS client's configuration: what a `wss://` dial uses
/// ([`crate::client::ClientConfig::tls`]).
#[derive(Debug, Clone)]
pub struct TlsClientConfig {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClientConfig {
    /// Trusts the system's certificate authorities (rustls-native-certs; on Debian
    /// `/etc/ssl/certs`) and `extra_cas` (PEM files, for a private authority).
    /// Verifies the server's name against its certificate.
    pub fn new(extra_cas: &[&Path]) -> Result<Self, TlsConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        // Unreadable system certificates are skipped: a machine with none still
        // trusts the extra authorities.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        for path in extra_cas {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsConfigError::File { path: path.into(), reason: e.to_string() })?
                .collect::<Result<_, _>>()
                .map_err(|e| TlsConfigError::File { path: path.into(), reason: e.to_string() })?;
            if certs.is_empty() {
                return Err(TlsConfigError::File {
                    path: path.into(),
                    reason: "no certificate in it".into(),
                });
            }
            for c in certs {
                roots.add(c)?;
            }
        }
        Ok(Self::from_roots(roots))
    }

    /// [`TlsClientConfig::new`] without extra authorities, made once per process: what
    /// a `wss://` client gets by default.
    pub(crate) fn system() -> Self {
        static SYSTEM: std::sync::OnceLock<TlsClientConfig> = std::sync::OnceLock::new();
        SYSTEM
            .get_or_init(|| {
                Self::new(&[]).unwrap_or_else(|_| Self::from_roots(rustls::RootCertStore::empty()))
            })
            .clone()
    }

    fn from_roots(roots: rustls::RootCertStore) -> Self {
        let c = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self { config: ours(c) }
    }

    /// No verification of the server's certificate or name at all: anyone on the path
    /// can read and change the traffic. For tests against a server whose certificate
    /// cannot be trusted otherwise; never the default.
    pub fn insecure() -> Self {
        let c = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(crypto_provider())))
            .with_no_client_auth();
        Self { config: ours(c) }
    }

    /// A client configured by the caller in rustls's own terms (as
    /// [`TlsServerConfig::from_rustls`] about `enable_secret_extraction`).
    pub fn from_rustls(config: Arc<rustls::ClientConfig>) -> Self {
        let config = with_capture(config);
        Self { config }
    }

    /// A client session of this configuration for the server named `host` (its
    /// ClientHello already in [`TlsSession::out`]), sans-IO as
    /// [`TlsServerConfig::session`].
    pub fn session(&self, host: &str) -> Result<TlsSession, TlsError> {
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            TlsError::Protocol(rustls::Error::General(format!("bad server name `{host}`")))
        })?;
        TlsSession::client(self.config.clone(), name)
    }
}

/// [`TlsClientConfig::insecure`]'s verifier: accepts any certificate (signatures on the
/// handshake are still checked, so the session keys are the peer's).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
