//! End-to-end: the generator against in-process ringwire servers.

use std::time::Duration;

use ringwire::{Echo, Engine};

use super::args::{ClientArgs, EchoArgs, FanoutArgs, IdleArgs};
use super::procfs::ProcTarget;
use super::report_tests::parse;
use crate::gateway::PubSub;

fn client(addr: std::net::SocketAddr) -> ClientArgs {
    ClientArgs { addrs: vec![addr], connect_timeout: 10.0, ..ClientArgs::default() }
}

/// The worker threads' name of [`echo_server`]: its CPU is measured by that name, and
/// the other tests' servers (`ringwire-w`, the default) start and stop beside it.
const ECHO_THREADS: &str = "echo-test-w";

/// A one-worker echo server on an ephemeral loopback port.
fn echo_server() -> ringwire::Server {
    Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .thread_name(ECHO_THREADS.into())
        .start(|_| Echo)
        .unwrap()
}

/// A one-worker pub/sub gateway on an ephemeral loopback port.
fn pubsub_server() -> ringwire::Server {
    Engine::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .pin_cpus(false)
        .start(|_| PubSub)
        .unwrap()
}

#[test]
fn tiny_echo_run() {
    let server = echo_server();
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
        let r = super::echo::run_echo(&a, Some(ProcTarget::SelfThreads(ECHO_THREADS))).unwrap();
        assert_eq!(r.opened, 10, "{r}");
        assert!(r.messages > 100, "{r}");
        assert_eq!(r.errors.total(), 0, "{r}");
        // The server's counts say which side lost track of a message (seen once in CI
        // on 2026-11-26, 16 unanswered, not reproduced in 55 local runs).
        assert_eq!(r.unanswered, 0, "{r}\nserver: {:?}", server.stats());
        assert!(!r.failed(), "{r}");
        assert!(r.latency.p50 > 0 && r.latency.p50 <= r.latency.p99, "{r}");
        assert!(r.cpu.server.is_some_and(|c| c.cpu_ns > 0), "{r}");
        let v = parse(&r.json());
        assert_eq!(v["messages"], r.messages, "{v}");
        assert_eq!(v["round_trip"]["p50_ns"], r.latency.p50, "{v}");
        assert!(v["server_cpu"]["ns_per_unit"].as_u64().is_some_and(|n| n > 0), "{v}");
    }
    let stats = server.stats();
    assert_eq!(stats.handshake_failures, 0);
    server.shutdown().unwrap();
}

#[test]
fn tiny_fanout_and_idle_runs() {
    let server = pubsub_server();
    let a = FanoutArgs {
        client: ClientArgs { threads: 2, ..client(server.local_addr()) },
        subscribers: 20,
        rate: 50.0,
        duration: 0.5,
        size: 32,
        topic: "t".into(),
        remote_subscribers: false,
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

/// A publisher at 10,000/s makes every publish of its window: its tick's wake is asked
/// for again when `on_wake` comes before the tick is due (a wake lost that way stopped
/// publishing for the rest of the window; this test failed 1 time in 3 without it).
#[test]
fn a_fast_publisher_makes_every_publish() {
    let server = pubsub_server();
    for round in 0..3 {
        let a = FanoutArgs {
            client: ClientArgs { threads: 1, ..client(server.local_addr()) },
            subscribers: 4,
            rate: 10_000.0,
            duration: 1.0,
            size: 32,
            topic: format!("fast{round}"),
            remote_subscribers: false,
        };
        let r = super::fanout::run_fanout(&a, None, 0).unwrap();
        // All 10,000 when the machine is quiet; a publisher starved by other tests at
        // the very end of its window may miss a few. A lost wake stopped publishing
        // for good (runs made 12-40% of theirs).
        assert!(r.published >= 9_000, "round {round}: {r}");
        assert_eq!(r.delivered, 4 * r.published, "round {round}: {r}");
    }
    server.shutdown().unwrap();
}

#[test]
fn the_generator_runs_on_either_backend_of_the_engine() {
    let server = echo_server();
    for backend in [crate::serve::Backend::Epoll, crate::serve::Backend::IoUring] {
        let a = EchoArgs {
            client: ClientArgs { backend, threads: 2, ..client(server.local_addr()) },
            connections: 7,
            in_flight: 3,
            size: 100,
            duration: 0.3,
            warmup: 0.0,
            text: false,
        };
        let r = super::echo::run_echo(&a, None).unwrap();
        assert_eq!((r.opened, r.unanswered), (7, 0), "{backend:?}: {r}");
        assert!(r.messages > 20 && !r.failed(), "{backend:?}: {r}");
    }
    server.shutdown().unwrap();
}

#[test]
fn a_reconnect_run_brings_every_client_back() {
    let a = super::args::ReconnectArgs {
        client: ClientArgs { threads: 2, connect_timeout: 10.0, ..ClientArgs::default() },
        connections: 60,
        down: 0.3,
        cap: 0,
        cap_burst: 1,
        server_workers: 1,
        server_cpus: Vec::new(),
        timeout: 30.0,
    };
    let r = super::reconnect::run_reconnect(&a).unwrap();
    assert_eq!((r.connected, r.reconnected(), r.losses), (60, 60, 60), "{r}");
    assert!(!r.failed(), "{r}");
    assert!(r.down >= Duration::from_millis(300), "{r}");
    // Every client came back after the server did, in at most the backoff's first
    // ceiling (1 s) plus the server's start; at least one attempt each.
    let (p50, all) = (r.quantile(0.5).unwrap(), r.quantile(1.0).unwrap());
    assert!(p50 <= all && all < Duration::from_secs(5), "{r}");
    assert!(r.attempts >= 60 && r.peak_accepts >= 1 && r.peak_accepts <= 60, "{r}");
    let v = parse(&r.json());
    assert_eq!(v["reconnected"], 60, "{v}");
    assert_eq!(v["cap_per_s"], serde_json::Value::Null, "{v}");
    // A server given on the command line is refused: the scenario runs its own.
    let with_url = super::args::ReconnectArgs {
        client: ClientArgs { urls: vec!["ws://127.0.0.1:1/".into()], ..ClientArgs::default() },
        ..a
    };
    assert!(super::reconnect::run_reconnect(&with_url).unwrap_err().contains("own server"));
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
