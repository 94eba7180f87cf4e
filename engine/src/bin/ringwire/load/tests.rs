//! End-to-end: the generator against in-process ringwire servers.

use ringwire::gateway::PubSub;
use ringwire::{Echo, Engine};

use super::args::{ClientArgs, EchoArgs, FanoutArgs, IdleArgs};
use super::procfs::ProcTarget;

fn client(addr: std::net::SocketAddr) -> ClientArgs {
    ClientArgs { addrs: vec![addr], connect_timeout: 10.0, ..ClientArgs::default() }
}

#[test]
fn tiny_echo_run() {
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .start(|_| Echo)
        .unwrap();
    for (size, text) in [(32, false), (4, false), (16, true)] {
        let a = EchoArgs {
            client: client(server.local_addr()),
            connections: 10,
            in_flight: 2,
            size,
            duration: 1.0,
            warmup: 0.1,
            text,
        };
        let r = super::echo::run_echo(&a, Some(ProcTarget::SelfThreads("ringwire-w"))).unwrap();
        assert_eq!(r.opened, 10, "{r}");
        assert!(r.messages > 100, "{r}");
        assert_eq!(r.errors.total(), 0, "{r}");
        assert_eq!(r.unanswered, 0, "{r}");
        assert!(!r.failed(), "{r}");
        assert!(r.latency.p50 > 0 && r.latency.p50 <= r.latency.p99, "{r}");
        assert!(r.cpu.server.is_some_and(|c| c.cpu_ns > 0), "{r}");
    }
    let stats = server.stats();
    assert_eq!(stats.handshake_failures, 0);
    server.shutdown().unwrap();
}

#[test]
fn tiny_fanout_and_idle_runs() {
    let server = Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .start(|_| PubSub)
        .unwrap();
    let a = FanoutArgs {
        client: ClientArgs { threads: 2, ..client(server.local_addr()) },
        subscribers: 20,
        rate: 50.0,
        duration: 0.5,
        size: 32,
        topic: "t".into(),
    };
    let r = super::fanout::run_fanout(&a, None, 0).unwrap();
    assert_eq!(r.subscribed, 20, "{r}");
    assert_eq!(r.published, 25, "{r}");
    assert_eq!(r.delivered, 500, "{r}");
    assert_eq!((r.incomplete, r.to_all.count), (0, 25), "{r}");
    assert!(!r.failed(), "{r}");

    let a = IdleArgs {
        client: ClientArgs { source_ips: 3, ..client(server.local_addr()) },
        connections: 50,
        hold: 0.2,
        settle: 0.0,
        baseline: 10,
    };
    let r = super::idle::run_idle(&a, Some((ProcTarget::SelfAll, "this process".into())), None, 0)
        .unwrap();
    assert_eq!((r.opened, r.still_open, r.baseline), (50, 50, 10), "{r}");
    assert!(r.rss.is_some() && !r.failed(), "{r}");
    server.shutdown().unwrap();
}

#[test]
fn refused_connections_are_errors() {
    // Nothing listens on this port (bound and closed again).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let a = EchoArgs {
        client: client(port),
        connections: 3,
        in_flight: 1,
        size: 8,
        duration: 0.1,
        warmup: 0.0,
        text: false,
    };
    let r = super::echo::run_echo(&a, None).unwrap();
    assert_eq!(r.errors.connect, 3, "{r}");
    assert!(r.failed());
}
