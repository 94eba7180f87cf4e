#![allow(missing_docs)]
//! Fan-out across nodes through a real `nats-server` (the Debian package, installed by
//! `.ci/setup.sh`) on a loopback port: three engines, one NATS server. A publish on any
//! node reaches every subscriber on every node once, in order; a node subscribes to a
//! topic's subject only while it has subscribers; with NATS gone local fan-out goes on
//! and, once it is back, the bridges reconnect and their subscriptions with them.

mod common;

use std::io::Read;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use ringwire::cluster::ClusterConfig;
use ringwire::BackendChoice;

/// The NATS server binary, if this machine has one (required under CI).
fn nats_server() -> Option<String> {
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"] {
        if std::path::Path::new(p).is_file() {
            return Some(p.to_owned());
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no nats-server under CI: .ci/setup.sh installs the Debian package"
    );
    eprintln!("SKIPPED: no nats-server (apt-get install nats-server)");
    None
}

/// A nats-server on `port`; killed when dropped.
struct Nats(Child);

impl Nats {
    /// A lone server on `port`.
    fn start(bin: &str, port: u16) -> Nats {
        Nats::spawn(bin, port, &[])
    }

    /// A member of a NATS cluster: clients on `port`, routes on `route`, joined to the
    /// other members' routes.
    fn member(bin: &str, port: u16, route: u16, routes: &[u16]) -> Nats {
        let peers: Vec<String> = routes.iter().map(|r| format!("nats://127.0.0.1:{r}")).collect();
        let cluster = [
            "--cluster_name".to_owned(),
            "ringwire".to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{route}"),
            "--routes".to_owned(),
            peers.join(","),
        ];
        Nats::spawn(bin, port, &cluster)
    }

    fn spawn(bin: &str, port: u16, extra: &[String]) -> Nats {
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        assert!(
            wait_until(PATIENCE, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()),
            "nats-server did not listen on {port}"
        );
        Nats(child)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn node(port: u16) -> (Guarded, SocketAddr) {
    node_on(&[port])
}

/// A node whose bridge knows these NATS servers (the first tried first).
fn node_on(ports: &[u16]) -> (Guarded, SocketAddr) {
    let servers = ports.iter().map(|p| format!("nats://127.0.0.1:{p}"));
    node_with(ClusterConfig::nats(servers))
}

fn node_with(cluster: ClusterConfig) -> (Guarded, SocketAddr) {
    let b = builder(BackendChoice::Auto).admin("127.0.0.1:0".parse().unwrap()).cluster(cluster);
    let (server, _rx) = start_probe(b);
    let addr = server.local_addr();
    (server, addr)
}

/// A subscriber of `topic` on `addr`.
fn subscriber(addr: SocketAddr, topic: &str) -> RawClient {
    let mut c = RawClient::open(addr);
    c.send(true, OP_TEXT, format!("sub:{topic}").as_bytes());
    assert_eq!(c.expect_data().payload, b"ok");
    c
}

/// The next text message on `c` if one comes within `wait` (small unmasked frames only).
fn poll_text(c: &mut RawClient, wait: Duration) -> Option<String> {
    c.s.set_read_timeout(Some(wait)).unwrap();
    let mut head = [0u8; 2];
    let got = c.s.read_exact(&mut head);
    c.s.set_read_timeout(Some(PATIENCE)).unwrap();
    got.ok()?;
    assert!(head[1] < 126, "a small frame");
    let mut body = vec![0u8; usize::from(head[1])];
    c.s.read_exact(&mut body).unwrap();
    Some(String::from_utf8(body).unwrap())
}

/// A TCP relay on a port of its own to NATS on `to`: `cut` breaks every connection
/// through it and refuses new ones (NATS gone, for the nodes behind it; the others keep
/// theirs), `restore` listens again on the same port.
struct Relay {
    port: u16,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(to: u16) -> Relay {
        let port = free_port();
        let (down, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let live = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (d, st, l) = (down.clone(), stop.clone(), live.clone());
        std::thread::spawn(move || {
            let mut listener: Option<TcpListener> = None;
            while !st.load(SeqCst) {
                if d.load(SeqCst) {
                    listener = None; // connection refused while cut
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let ln = listener.get_or_insert_with(|| {
                    let ln = TcpListener::bind(("127.0.0.1", port)).expect("the relay's port");
                    ln.set_nonblocking(true).unwrap();
                    ln
                });
                let Ok((inbound, _)) = ln.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                inbound.set_nonblocking(false).unwrap();
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", to)) else { continue };
                let mut live = l.lock().unwrap();
                live.push(inbound.try_clone().unwrap());
                live.push(outbound.try_clone().unwrap());
                for (mut from, mut into) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        assert!(wait_until(PATIENCE, || TcpStream::connect(("127.0.0.1", port)).is_ok()));
        Relay { port, down, stop, live }
    }

    fn cut(&self) {
        self.down.store(true, SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.down.store(false, SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        self.cut();
    }
}

#[test]
fn a_publish_reaches_every_node_once_in_order() {
    let Some(bin) = nats_server() else { return };
    let port = free_port();
    let _nats = Nats::start(&bin, port);
    let nodes: Vec<_> = (0..3).map(|_| node(port)).collect();
    for (s, _) in &nodes {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().connected), "connected");
    }
    // Two subscribers on node 0, one on node 1, none on node 2 (which publishes).
    let mut subs = vec![
        subscriber(nodes[0].1, "prices.eu"),
        subscriber(nodes[0].1, "prices.eu"),
        subscriber(nodes[1].1, "prices.eu"),
    ];
    let subscribed = |i: usize, n: u64| {
        wait_until(PATIENCE, || nodes[i].0.cluster_stats().unwrap().subscriptions == n)
    };
    assert!(subscribed(0, 1) && subscribed(1, 1), "interest reached the broker");
    assert_eq!(nodes[2].0.cluster_stats().unwrap().subscriptions, 0, "no subscribers there");

    // 200 publishes from a client of node 2, and 1 from node 0's own client.
    let mut publisher = RawClient::open(nodes[2].1);
    for i in 0..200 {
        publisher.send(true, OP_TEXT, format!("pub:prices.eu:{i}").as_bytes());
    }
    for s in &mut subs {
        for i in 0..200 {
            let m = s.expect_data();
            assert_eq!(String::from_utf8(m.payload).unwrap(), i.to_string(), "in order");
        }
    }
    let mut local = RawClient::open(nodes[0].1);
    local.send(true, OP_TEXT, b"pub:prices.eu:from node 0");
    for s in &mut subs {
        assert_eq!(s.expect_data().payload, b"from node 0", "once, its own node included");
    }
    // Nothing more: no loop sent anything twice.
    for s in &mut subs {
        s.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut b = [0u8; 1];
        let extra = std::io::Read::read(&mut s.s, &mut b);
        assert!(extra.is_err(), "a duplicate arrived: {extra:?}");
        s.s.set_read_timeout(Some(PATIENCE)).unwrap();
    }
    let s2 = nodes[2].0.cluster_stats().unwrap();
    assert_eq!((s2.published, s2.dropped), (200, 0), "{s2:?}");
    let s0 = nodes[0].0.cluster_stats().unwrap();
    assert_eq!((s0.received, s0.published), (200, 1), "{s0:?}");
    let admin = nodes[2].0.admin_addr().unwrap();
    let metrics = http_exchange(admin, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    for line in ["ringwire_cluster_published_total 200", "ringwire_cluster_connected 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line} in {metrics}");
    }

    // The last subscriber of node 1 leaves: node 1 drops its subject.
    let mut leaving = subs.pop().unwrap();
    leaving.send(true, OP_TEXT, b"unsub:prices.eu");
    assert_eq!(leaving.expect_data().payload, b"ok");
    assert!(subscribed(1, 0), "interest ended at the broker");
    assert_eq!(nodes[0].0.cluster_stats().unwrap().subscriptions, 1);
    drop((subs, leaving, publisher, local));
    for (s, _) in nodes {
        s.shutdown().unwrap();
    }
}

/// The NATS server itself gone for 5 s and started again on the same port: nothing
/// crashes, local fan-out goes on, A's publishes meanwhile wait in its bridge's queue
/// (10) with the oldest dropped and counted, both bridges reconnect and subscribe again,
/// and cross-node delivery comes back. What reaches B of the 10 that waited depends on
/// whether B subscribed again before A sent them (core NATS keeps nothing for a subject
/// without interest): some of the newest, in order, never an older one.
#[test]
fn nats_gone_and_back() {
    let Some(bin) = nats_server() else { return };
    let port = free_port();
    let nats = Nats::start(&bin, port);
    let a = node_with(ClusterConfig::nats([format!("nats://127.0.0.1:{port}")]).queue(10, 1 << 20));
    let b = node(port);
    for (s, _) in [&a, &b] {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().connected));
    }
    let mut on_a = subscriber(a.1, "news");
    let mut on_b = subscriber(b.1, "news");
    assert!(wait_until(PATIENCE, || b.0.cluster_stats().unwrap().subscriptions == 1));
    let mut publisher = RawClient::open(a.1);
    publisher.send(true, OP_TEXT, b"pub:news:before");
    assert_eq!(on_a.expect_data().payload, b"before");
    assert_eq!(on_b.expect_data().payload, b"before");

    // NATS goes away for 5 s: local fan-out goes on.
    drop(nats);
    assert!(wait_until(PATIENCE, || !a.0.cluster_stats().unwrap().connected), "noticed");
    for i in 0..50 {
        publisher.send(true, OP_TEXT, format!("pub:news:down {i}").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..50 {
        assert_eq!(on_a.expect_data().payload, format!("down {i}").as_bytes());
    }
    let st = a.0.cluster_stats().unwrap();
    assert_eq!((st.published, st.dropped, st.queued), (1, 40, 10), "{st:?}");

    // Back on the same port: both bridges reconnect, the subscription comes back, and
    // cross-node delivery with it.
    let _nats = Nats::start(&bin, port);
    for (s, _) in [&a, &b] {
        let back = wait_until(Duration::from_secs(20), || {
            let st = s.cluster_stats().unwrap();
            st.connected && st.reconnects >= 1
        });
        assert!(back, "reconnected: {:?}", s.cluster_stats());
    }
    // Publish until one arrives at B (a publish may race B's resubscription).
    let mut waited = Vec::new();
    let mut arrived = false;
    'publish: for i in 0..20 {
        publisher.send(true, OP_TEXT, format!("pub:news:after {i}").as_bytes());
        assert_eq!(on_a.expect_data().payload, format!("after {i}").as_bytes());
        while let Some(m) = poll_text(&mut on_b, Duration::from_millis(250)) {
            if let Some(k) = m.strip_prefix("down ") {
                waited.push(k.parse::<u32>().unwrap());
            } else {
                assert!(m.starts_with("after"), "{m}");
                arrived = true;
                break 'publish;
            }
        }
    }
    assert!(arrived, "cross-node delivery came back: {:?}", b.0.cluster_stats());
    assert!(
        waited.windows(2).all(|w| w[0] < w[1]) && waited.iter().all(|&k| k >= 40),
        "only the newest 10 waited, and they came in order: {waited:?}"
    );
    let st = a.0.cluster_stats().unwrap();
    assert_eq!((st.dropped, st.queued, st.failed), (40, 0, 0), "{st:?}");
    drop((on_a, on_b, publisher));
    a.0.shutdown().unwrap();
    b.0.shutdown().unwrap();
}

/// NATS gone for 5 s for the publishing node A (the path between it and NATS cut, so
/// that node B keeps its subscription): A's local fan-out goes on; its publishes wait in
/// the bridge's queue (10 messages here) and the oldest are dropped and counted; once
/// NATS is back, exactly the newest 10 reach B, in order, and nothing else is lost;
/// A's own subscription comes back.
#[test]
fn nats_gone_for_five_seconds_loses_what_the_policy_says() {
    let Some(bin) = nats_server() else { return };
    let port = free_port();
    let _nats = Nats::start(&bin, port);
    let relay = Relay::start(port);
    let a = node_with(
        ClusterConfig::nats([format!("nats://127.0.0.1:{}", relay.port)]).queue(10, 1 << 20),
    );
    let b = node(port);
    for (s, _) in [&a, &b] {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().connected));
    }
    let mut on_a = subscriber(a.1, "ticks");
    let mut on_b = subscriber(b.1, "ticks");
    for (s, _) in [&a, &b] {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().subscriptions == 1));
    }
    let mut publisher = RawClient::open(a.1);
    publisher.send(true, OP_TEXT, b"pub:ticks:0");
    assert_eq!(on_a.expect_data().payload, b"0");
    assert_eq!(on_b.expect_data().payload, b"0");

    relay.cut();
    assert!(wait_until(PATIENCE, || !a.0.cluster_stats().unwrap().connected), "noticed");
    // 100 publishes over 5 s while NATS is gone for A.
    for i in 1..=100 {
        publisher.send(true, OP_TEXT, format!("pub:ticks:{i}").as_bytes());
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 1..=100 {
        let m = String::from_utf8(on_a.expect_data().payload).unwrap();
        assert_eq!(m, i.to_string(), "local fan-out went on, in order");
    }
    let st = a.0.cluster_stats().unwrap();
    assert_eq!((st.published, st.dropped, st.queued), (1, 90, 10), "{st:?}");
    assert_eq!(poll_text(&mut on_b, Duration::from_millis(200)), None, "nothing crossed");

    relay.restore();
    let back = wait_until(Duration::from_secs(20), || {
        let st = a.0.cluster_stats().unwrap();
        st.connected && st.reconnects >= 1
    });
    assert!(back, "reconnected: {:?}", a.0.cluster_stats());
    for i in 91..=100 {
        assert_eq!(poll_text(&mut on_b, PATIENCE), Some(i.to_string()), "the newest 10, in order");
    }
    assert_eq!(poll_text(&mut on_b, Duration::from_millis(300)), None, "and nothing else");
    let st = a.0.cluster_stats().unwrap();
    assert_eq!((st.published, st.dropped, st.queued, st.failed), (11, 90, 0, 0), "{st:?}");

    // A's subscription came back with the connection: B's publishes reach A again (one
    // may race the resubscription).
    let mut from_b = RawClient::open(b.1);
    let mut arrived = false;
    for i in 0..20 {
        from_b.send(true, OP_TEXT, format!("pub:ticks:b{i}").as_bytes());
        assert_eq!(poll_text(&mut on_b, PATIENCE), Some(format!("b{i}")));
        if let Some(m) = poll_text(&mut on_a, Duration::from_millis(250)) {
            assert!(m.starts_with('b'), "{m}");
            arrived = true;
            break;
        }
    }
    assert!(arrived, "A subscribed again: {:?}", a.0.cluster_stats());
    drop((on_a, on_b, publisher, from_b, relay));
    a.0.shutdown().unwrap();
    b.0.shutdown().unwrap();
}

/// Three ringwire nodes, each on its own member of a three-server NATS cluster; the
/// member of one node is killed mid-stream and started again. That node's bridge moves to
/// another member, its subscription with it, and delivery to its subscriber goes on; no
/// subscriber ever sees a message twice or out of order.
#[test]
fn a_nats_cluster_member_dies_mid_stream() {
    let Some(bin) = nats_server() else { return };
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let member = |i: usize| {
        let others: Vec<u16> = (0..3).filter(|&j| j != i).map(|j| routes[j]).collect();
        Nats::member(&bin, ports[i], routes[i], &others)
    };
    let mut members: Vec<Option<Nats>> = (0..3).map(|i| Some(member(i))).collect();
    // Node i is given member i only: it learns the others from the cluster (NATS
    // announces its members to clients), which is how it fails over.
    let nodes: Vec<_> = (0..3).map(|i| node_on(&[ports[i]])).collect();
    for (s, _) in &nodes {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().connected));
    }
    let mut subs: Vec<RawClient> = (1..3).map(|i| subscriber(nodes[i].1, "feed")).collect();
    for (s, _) in &nodes[1..] {
        assert!(wait_until(PATIENCE, || s.cluster_stats().unwrap().subscriptions == 1));
    }
    // Let the routes carry the interest between the members before publishing.
    std::thread::sleep(Duration::from_millis(500));
    let mut publisher = RawClient::open(nodes[0].1);
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); 2];
    let read_all = |subs: &mut [RawClient], seen: &mut [Vec<u32>], upto: u32| {
        for (k, s) in subs.iter_mut().enumerate() {
            loop {
                s.s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
                let mut head = [0u8; 2];
                if std::io::Read::read_exact(&mut s.s, &mut head).is_err() {
                    break;
                }
                let len = usize::from(head[1] & 0x7f);
                let mut body = vec![0u8; len];
                std::io::Read::read_exact(&mut s.s, &mut body).unwrap();
                let n: u32 = String::from_utf8(body).unwrap().parse().unwrap();
                seen[k].push(n);
                if n == upto {
                    break;
                }
            }
        }
    };
    for i in 0..100u32 {
        publisher.send(true, OP_TEXT, format!("pub:feed:{i}").as_bytes());
    }
    read_all(&mut subs, &mut seen, 99);
    assert_eq!(seen[0].len(), 100, "all before the failure: {:?}", seen[0].len());
    assert_eq!(seen[1].len(), 100);

    // Node 1's member dies: its bridge moves to another member.
    members[1] = None;
    assert!(
        wait_until(Duration::from_secs(20), || {
            let st = nodes[1].0.cluster_stats().unwrap();
            st.connected && st.reconnects >= 1
        }),
        "node 1 reconnected elsewhere: {:?}",
        nodes[1].0.cluster_stats()
    );
    std::thread::sleep(Duration::from_millis(500));
    for i in 100..200u32 {
        publisher.send(true, OP_TEXT, format!("pub:feed:{i}").as_bytes());
    }
    read_all(&mut subs, &mut seen, 199);
    // The member comes back; more messages.
    members[1] = Some(member(1));
    std::thread::sleep(Duration::from_millis(500));
    for i in 200..300u32 {
        publisher.send(true, OP_TEXT, format!("pub:feed:{i}").as_bytes());
    }
    read_all(&mut subs, &mut seen, 299);
    for (k, got) in seen.iter().enumerate() {
        assert!(got.windows(2).all(|w| w[0] < w[1]), "subscriber {k}: twice or out of order");
        assert_eq!(got.last(), Some(&299), "subscriber {k} got the last: {} messages", got.len());
    }
    eprintln!("through the failover node 1's subscriber got {} of 300", seen[0].len());
    assert_eq!(seen[1].len(), 300, "node 2 never lost its member: everything");
    assert!(seen[0].len() >= 200, "node 1 lost at most what the failover took: {}", seen[0].len());
    drop((subs, publisher, members));
    for (s, _) in nodes {
        s.shutdown().unwrap();
    }
}
