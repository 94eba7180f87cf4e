//! Where a client connects: a `ws://` or `wss://` URL taken apart (with the `url`
//! crate) and its host resolved, on the caller's thread, never on a worker.

use std::net::{SocketAddr, ToSocketAddrs};

use super::config::ConnectError;

/// A parsed and resolved `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The `Host` header: the host, and the port when it is not 80.
    pub(crate) host_header: String,
    /// The request target: path and query.
    pub(crate) path: String,
    /// "host:port", the key of the per-target connect-rate cap.
    pub(crate) authority: String,
    /// The resolved addresses, tried in turn on successive attempts.
    pub(crate) addrs: Vec<SocketAddr>,
    /// The host name and port, when the host is a name (looked up again after a loss).
    pub(crate) name: Option<(String, u16)>,
    /// `wss://`: the name the server's certificate must carry (the host, or its
    /// address), sent as SNI when it is a name.
    pub(crate) tls: Option<String>,
}

/// Looks `host:port` up (blocking: never on a worker).
pub(crate) fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ConnectError> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|source| ConnectError::Resolve { host: host.to_owned(), source })?
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::NoAddress(host.to_owned()));
    }
    Ok(addrs)
}

/// Parses `url` (`ws://host[:port]/path?query`; the fragment is dropped, as RFC 6455
/// §3 forbids one) and resolves its host.
pub(crate) fn resolve(url: &str) -> Result<Target, ConnectError> {
    let (host, port, host_header, path, tls) = parse(url)?;
    let addrs = lookup(&host, port)?;
    let name = host.parse::<std::net::IpAddr>().is_err().then(|| (host.clone(), port));
    let tls = tls.then(|| host.clone());
    Ok(Target { host_header, path, authority: format!("{host}:{port}"), addrs, name, tls })
}

/// As [`resolve`], for a URL whose host is an IP address: no DNS lookup, so a worker
/// may call it. A host name is refused with [`ConnectError::NeedsLookup`].
pub(crate) fn resolve_literal(url: &str) -> Result<Target, ConnectError> {
    let (host, port, host_header, path, tls) = parse(url)?;
    let ip: std::net::IpAddr = host.parse().map_err(|_| ConnectError::NeedsLookup(host.clone()))?;
    Ok(Target {
        host_header,
        path,
        authority: format!("{host}:{port}"),
        addrs: vec![SocketAddr::new(ip, port)],
        name: None,
        tls: tls.then(|| host.clone()),
    })
}

/// The host (brackets stripped from an IPv6 literal), port, `Host` header, request
/// target and whether TLS is wanted (`wss://`) of a WebSocket URL.
fn parse(url: &str) -> Result<(String, u16, String, String, bool), ConnectError> {
    let u = url::Url::parse(url).map_err(|e| ConnectError::InvalidUrl(format!("{url}: {e}")))?;
    let (tls, default_port) = match u.scheme() {
        "ws" => (false, 80),
        "wss" => (true, 443),
        other => return Err(ConnectError::UnsupportedScheme(other.to_owned())),
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(ConnectError::InvalidUrl(format!("{url}: no host"))),
    };
    let port = u.port_or_known_default().unwrap_or(default_port);
    let shown = u.host_str().unwrap_or_default();
    let host_header =
        if port == default_port { shown.to_owned() } else { format!("{shown}:{port}") };
    let mut path = u.path().to_owned();
    if path.is_empty() {
        path.push('/');
    }
    if let Some(q) = u.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((host, port, host_header, path, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        let p = |u: &str| parse(u).unwrap();
        assert_eq!(
            p("ws://example.com/chat?room=1#frag"),
            ("example.com".into(), 80, "example.com".into(), "/chat?room=1".into(), false)
        );
        assert_eq!(p("ws://h:9001"), ("h".into(), 9001, "h:9001".into(), "/".into(), false));
        assert_eq!(p("ws://[::1]:9/x"), ("::1".into(), 9, "[::1]:9".into(), "/x".into(), false));
        assert_eq!(p("WS://H:80/"), ("h".into(), 80, "h".into(), "/".into(), false));
        assert_eq!(p("wss://h/"), ("h".into(), 443, "h".into(), "/".into(), true));
        assert_eq!(p("wss://h:80/"), ("h".into(), 80, "h:80".into(), "/".into(), true));
    }

    #[test]
    fn other_schemes_and_garbage_are_refused() {
        assert!(matches!(parse("ftp://h/"), Err(ConnectError::UnsupportedScheme(s)) if s == "ftp"));
        assert!(matches!(parse("http://h/"), Err(ConnectError::UnsupportedScheme(_))));
        assert!(matches!(parse("not a url"), Err(ConnectError::InvalidUrl(_))));
        assert!(matches!(parse("ws://"), Err(ConnectError::InvalidUrl(_))));
        assert!(matches!(parse("ws://h:99999/"), Err(ConnectError::InvalidUrl(_))));
    }

    #[test]
    fn a_handler_dials_ip_addresses_only() {
        assert_eq!(
            resolve_literal("ws://[::1]:7/").unwrap().addrs,
            vec!["[::1]:7".parse().unwrap()]
        );
        assert!(matches!(resolve_literal("ws://localhost:7/"), Err(ConnectError::NeedsLookup(_))));
    }

    #[test]
    fn loopback_resolves() {
        let t = resolve("ws://127.0.0.1:9/p").unwrap();
        assert_eq!(t.addrs, vec!["127.0.0.1:9".parse().unwrap()]);
        assert_eq!(t.authority, "127.0.0.1:9");
        assert_eq!(t.name, None, "an address is not looked up again");
        let t = resolve("ws://localhost:9/p").unwrap();
        assert!(t.addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 9), "{:?}", t.addrs);
        assert_eq!(t.name, Some(("localhost".to_owned(), 9)));
    }
}
