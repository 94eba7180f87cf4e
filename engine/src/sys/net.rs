//! Socket setup: listeners with `SO_REUSEPORT` (one per worker) and accepted-socket
//! options. Safe code over `rustix`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};

/// A non-blocking, close-on-exec listening socket bound to `addr` with `SO_REUSEPORT`,
/// so that every worker can have its own and the kernel spreads connections over them.
pub(crate) fn listener(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    net::bind(&fd, &addr)?;
    net::listen(&fd, backlog)?;
    Ok(fd)
}

/// The address a socket is bound to.
pub(crate) fn local_addr(fd: impl AsFd) -> io::Result<SocketAddr> {
    let a = net::getsockname(fd)?;
    SocketAddr::try_from(a).map_err(|_| io::Error::other("listener has a non-IP address"))
}

/// Options on an accepted connection: no Nagle delay (WebSocket frames are messages),
/// and TCP keepalive so dead peers are found even without WebSocket heartbeats.
pub(crate) fn configure_accepted(fd: impl AsFd, keepalive: Option<Duration>) -> io::Result<()> {
    let fd = fd.as_fd();
    sockopt::set_tcp_nodelay(fd, true)?;
    if let Some(idle) = keepalive {
        sockopt::set_socket_keepalive(fd, true)?;
        sockopt::set_tcp_keepidle(fd, idle)?;
        sockopt::set_tcp_keepintvl(fd, Duration::from_secs(10).min(idle))?;
        sockopt::set_tcp_keepcnt(fd, 6)?;
    }
    Ok(())
}
