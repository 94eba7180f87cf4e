//! Who may connect, and subscribe and publish to which topics: an [`Authorizer`] looks
//! at each upgrade request and answers with a [`Grant`] (or an HTTP status: 401, 403);
//! the engine keeps the grant with the connection and checks every subscribe and
//! publish of it against the grant's topic patterns, closing with 1008 on a topic it
//! does not grant and when the grant expires. [`JwtAuthorizer`] is the one shipped:
//! JSON Web Tokens signed with HS256, RS256 or EdDSA.
//!
//! Only an engine with an authorizer ([`crate::EngineConfig::authorizer`]) pays for
//! this: the grants live in a map beside the connections, not in them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringwire_frame::handshake::Request;

/// What a connection may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Topics it may subscribe to.
    pub subscribe: Vec<TopicPattern>,
    /// Topics it may publish to.
    pub publish: Vec<TopicPattern>,
    /// When the grant ends: the connection is closed with 1008 then. `None`: never.
    pub expires: Option<SystemTime>,
}

impl Grant {
    /// Whether it grants subscribing to `topic`.
    pub fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|p| p.matches(topic))
    }

    /// Whether it grants publishing to `topic`.
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publish.iter().any(|p| p.matches(topic))
    }

    /// Whether it has ended at `now`.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// A topic name, or a prefix followed by `*` (`prices.*` grants `prices.eu` and
/// `prices.us.close`; `*` alone grants every topic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// The pattern `p`.
    pub fn new(p: impl Into<String>) -> Self {
        Self(p.into())
    }

    /// Whether `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => topic.starts_with(prefix),
            None => self.0 == topic,
        }
    }
}

/// Decides on each upgrade request. Runs on the worker thread during the upgrade: it
/// must not block (verify a signature, look in memory; no network).
pub trait Authorizer: Send + Sync + 'static {
    /// The grant for `req`, or the HTTP status to refuse it with (401: no or bad
    /// credentials; 403: valid but not allowed).
    fn authorize(&self, req: &Request) -> Result<Grant, u16>;

    /// A new grant for an open connection from fresh credentials (a renewed token, sent
    /// by the application's own protocol: [`crate::Ctx::reauthorize`]), or why not.
    /// Default: refused (the authorizer has no renewal).
    fn renew(&self, credentials: &str) -> Result<Grant, u16> {
        let _ = credentials;
        Err(401)
    }
}

/// JSON Web Tokens: the token comes in `Authorization: Bearer TOKEN` or, for browsers
/// (which cannot set headers on a WebSocket), in the query (`?token=TOKEN`). Its claims:
///
/// ```json
/// { "exp": 1796620000, "sub": "user-7", "subscribe": ["prices.*"], "publish": ["chat.7"] }
/// ```
///
/// `exp` (seconds since the epoch) is required and becomes the grant's end; `subscribe`
/// and `publish` list [`TopicPattern`]s (absent: none). A missing, malformed, badly
/// signed or expired token is refused with 401.
pub struct JwtAuthorizer {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl std::fmt::Debug for JwtAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthorizer").field("algorithms", &self.validation.algorithms).finish()
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
#[error("JWT key: {0}")]
pub struct KeyError(String);

#[derive(serde::Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl JwtAuthorizer {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        let key =
            jsonwebtoken::DecodingKey::from_secret(secret).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::HS256))
    }

    /// RS256 with an RSA public key in PEM.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            jsonwebtoken::DecodingKey::from_rsa_pem(pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::RS256))
    }

    /// EdDSA with an Ed25519 public key in PEM.
    pub fn eddsa_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let key =
            jsonwebtoken::DecodingKey::from_ed_pem(pem).map_err(|e| KeyError(e.to_string()))?;
        Ok(Self::with(key, jsonwebtoken::Algorithm::EdDSA))
    }

    /// The key in a file (`ringwire serve --auth-jwt-key FILE`): a PEM public key
    /// (RSA: RS256; Ed25519: EdDSA), else the file's bytes as an HS256 secret.
    pub fn from_key_file(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = String::from_utf8_lossy(bytes);
        if text.contains("-----BEGIN") {
            return Self::rs256_pem(bytes).or_else(|_| Self::eddsa_pem(bytes));
        }
        let secret = text.trim_end_matches(['\n', '\r']);
        if secret.len() < 32 {
            return Err(KeyError(format!(
                "an HS256 secret of {} bytes is too short to be safe (32 at least)",
                secret.len()
            )));
        }
        Self::hs256(secret.as_bytes())
    }

    fn with(key: jsonwebtoken::DecodingKey, alg: jsonwebtoken::Algorithm) -> Self {
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.leeway = 5;
        Self { key, validation }
    }

    /// The grant `token` carries, or why not.
    pub fn verify(&self, token: &str) -> Result<Grant, jsonwebtoken::errors::Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?;
        let c = data.claims;
        Ok(Grant {
            subscribe: c.subscribe.into_iter().map(TopicPattern).collect(),
            publish: c.publish.into_iter().map(TopicPattern).collect(),
            expires: Some(UNIX_EPOCH + Duration::from_secs(c.exp)),
        })
    }
}

/// The token of a request: `Authorization: Bearer TOKEN`, else `token=TOKEN` in the
/// query.
fn token(req: &Request) -> Option<&str> {
    if let Some(v) = req.header("authorization") {
        let v = std::str::from_utf8(v).ok()?.trim();
        if let Some(t) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(t.trim());
        }
    }
    let query = req.path.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix("token="))
}

impl Authorizer for JwtAuthorizer {
    fn authorize(&self, req: &Request) -> Result<Grant, u16> {
        let token = token(req).ok_or(401u16)?;
        self.verify(token).map_err(|_| 401)
    }

    fn renew(&self, token: &str) -> Result<Grant, u16> {
        self.verify(token.trim()).map_err(|_| 401)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwire_frame::handshake::{parse_request, HandshakeLimits};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn token_for(claims: serde_json::Value, secret: &[u8]) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(secret).unwrap();
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    }

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn request(extra: &str, path: &str) -> Request {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        );
        parse_request(head.as_bytes(), &HandshakeLimits::default()).unwrap().unwrap().0
    }

    #[test]
    fn patterns_match_names_and_prefixes() {
        let p = TopicPattern::new("prices.*");
        assert!(p.matches("prices.eu") && p.matches("prices.") && !p.matches("prices"));
        assert!(TopicPattern::new("*").matches("anything"));
        assert!(TopicPattern::new("chat.7").matches("chat.7"));
        assert!(!TopicPattern::new("chat.7").matches("chat.70"));
    }

    #[test]
    fn tokens_are_verified_from_the_header_or_the_query() {
        let auth = JwtAuthorizer::hs256(SECRET).unwrap();
        let good = token_for(
            serde_json::json!({"exp": now() + 60, "subscribe": ["prices.*"], "publish": ["chat.7"]}),
            SECRET,
        );
        let g =
            auth.authorize(&request(&format!("Authorization: Bearer {good}\r\n"), "/")).unwrap();
        assert!(g.may_subscribe("prices.eu") && !g.may_subscribe("chat.7"));
        assert!(g.may_publish("chat.7") && !g.may_publish("prices.eu"));
        assert!(!g.expired(SystemTime::now()));
        let q = auth.authorize(&request("", &format!("/feed?x=1&token={good}"))).unwrap();
        assert_eq!(q, g);
        // Missing, badly signed, expired, malformed: 401.
        assert_eq!(auth.authorize(&request("", "/")), Err(401));
        let forged =
            token_for(serde_json::json!({"exp": now() + 60}), b"another secret of enough bytes!!");
        assert_eq!(
            auth.authorize(&request(&format!("Authorization: Bearer {forged}\r\n"), "/")),
            Err(401)
        );
        let old = token_for(serde_json::json!({"exp": now() - 60}), SECRET);
        assert_eq!(
            auth.authorize(&request(&format!("Authorization: Bearer {old}\r\n"), "/")),
            Err(401)
        );
        assert_eq!(auth.authorize(&request("Authorization: Bearer not.a.jwt\r\n", "/")), Err(401));
        // No exp: refused too (a token must end).
        let forever = token_for(serde_json::json!({"sub": "x"}), SECRET);
        assert_eq!(
            auth.authorize(&request(&format!("Authorization: Bearer {forever}\r\n"), "/")),
            Err(401)
        );
    }

    #[test]
    fn key_files_pick_their_algorithm_and_short_secrets_are_refused() {
        assert!(JwtAuthorizer::from_key_file(b"short\n").is_err());
        assert!(JwtAuthorizer::from_key_file(SECRET).is_ok());
        assert!(JwtAuthorizer::from_key_file(
            b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n"
        )
        .is_err());
    }
}
