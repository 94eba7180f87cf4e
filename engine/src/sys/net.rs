//! Socket setup: listeners with `SO_REUSEPORT` (one per worker), accepted-socket
//! options, outgoing sockets. Safe code over `rustix`, but for the one option rustix
//! lacks (`IP_BIND_ADDRESS_NO_PORT`, one `setsockopt` below).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{self, sockopt, AddressFamily, SocketFlags, SocketType};

/// A non-blocking, close-on-exec listening socket bound to `addr` with `SO_REUSEPORT`,
/// so that every worker can have its own and the kernel spreads connections over them.
///
/// The accepted sockets' options are set here, once: Linux copies `TCP_NODELAY` and the
/// keepalive settings from the listener to every socket it accepts (the test below checks
/// it), which saves five `setsockopt` calls per accept and leaves nothing to do on an
/// accepted socket (so it can stay an io_uring direct descriptor later).
pub(crate) fn listener(
    addr: SocketAddr,
    backlog: i32,
    keepalive: Option<Duration>,
    user_timeout: Option<Duration>,
) -> io::Result<OwnedFd> {
    let fd = tcp_socket(addr)?;
    sockopt::set_socket_reuseaddr(&fd, true)?;
    sockopt::set_socket_reuseport(&fd, true)?;
    configure_accepted(&fd, keepalive, user_timeout)?;
    net::bind(&fd, &addr)?;
    net::listen(&fd, backlog)?;
    Ok(fd)
}

/// TCP options of an outgoing connection's socket.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientSocketOptions {
    /// Bind to this local address (port 0: any) before connecting.
    pub(crate) bind: Option<SocketAddr>,
    /// TCP keepalive idle time (`None`: off).
    pub(crate) keepalive: Option<Duration>,
    /// `TCP_USER_TIMEOUT`: how long sent data may stay unacknowledged before the kernel
    /// drops the connection (`None`: the kernel's default, about 15 minutes).
    pub(crate) user_timeout: Option<Duration>,
}

/// A non-blocking, close-on-exec TCP socket for connecting to `peer`, with the options
/// an accepted socket gets from its listener (no Nagle delay, keepalive) and those of
/// `opts`. The connect itself goes through the driver.
pub(crate) fn client_socket(peer: SocketAddr, opts: &ClientSocketOptions) -> io::Result<OwnedFd> {
    let fd = tcp_socket(peer)?;
    configure_accepted(&fd, opts.keepalive, opts.user_timeout)?;
    if let Some(local) = opts.bind {
        if local.port() == 0 {
            // The port is chosen at connect time, for the whole 4-tuple, not at bind
            // time for the address alone: one source address then reaches each
            // server ip:port ~28k times instead of sharing ~28k ports among all.
            bind_address_no_port(&fd)?;
        }
        net::bind(&fd, &local)?;
    }
    Ok(fd)
}

/// Sets `IP_BIND_ADDRESS_NO_PORT` (Linux 4.2; it applies to IPv6 sockets too).
fn bind_address_no_port(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from `&on`, a live local
    // of that size, and nothing after the call; `fd` is an open socket we own.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family.
fn tcp_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    Ok(net::socket_with(family, SocketType::STREAM, flags, None)?)
}

/// The address a socket is bound to.
pub(crate) fn local_addr(fd: impl AsFd) -> io::Result<SocketAddr> {
    let a = net::getsockname(fd)?;
    SocketAddr::try_from(a).map_err(|_| io::Error::other("listener has a non-IP address"))
}

/// Options for accepted and outgoing connections: no Nagle delay (WebSocket frames are messages),
/// and TCP keepalive so dead peers are found even without WebSocket heartbeats.
fn configure_accepted(
    fd: impl AsFd,
    keepalive: Option<Duration>,
    user_timeout: Option<Duration>,
) -> io::Result<()> {
    let fd = fd.as_fd();
    sockopt::set_tcp_nodelay(fd, true)?;
    if let Some(t) = user_timeout {
        sockopt::set_tcp_user_timeout(fd, t.as_millis().clamp(1, u128::from(u32::MAX)) as u32)?;
    }
    if let Some(idle) = keepalive {
        sockopt::set_socket_keepalive(fd, true)?;
        sockopt::set_tcp_keepidle(fd, idle)?;
        sockopt::set_tcp_keepintvl(fd, Duration::from_secs(10).min(idle))?;
        sockopt::set_tcp_keepcnt(fd, 6)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// The engine relies on Linux copying these options from the listener to accepted
    /// sockets; if a kernel stopped doing so, this fails.
    #[test]
    fn accepted_sockets_inherit_the_listener_options() {
        let ka = Some(Duration::from_secs(42));
        let fd =
            listener("127.0.0.1:0".parse().unwrap(), 16, ka, Some(Duration::from_secs(7))).unwrap();
        let addr = local_addr(&fd).unwrap();
        let l = TcpListener::from(fd);
        l.set_nonblocking(false).unwrap();
        let _c = TcpStream::connect(addr).unwrap();
        let (a, _) = l.accept().unwrap();
        assert!(sockopt::tcp_nodelay(&a).unwrap());
        assert!(sockopt::socket_keepalive(&a).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&a).unwrap(), Duration::from_secs(42));
        assert_eq!(sockopt::tcp_keepcnt(&a).unwrap(), 6);
        assert_eq!(sockopt::tcp_user_timeout(&a).unwrap(), 7000);
    }
}
