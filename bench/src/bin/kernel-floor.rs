//! What the kernel alone costs to send small messages over loopback TCP: the floor under
//! every server's CPU per message in `docs/BENCHMARKS.md`.
//!
//! The sending process (the one measured, pinned to `--cpu`, CPU 0 by default) accepts
//! `-n` connections from a receiving process it starts itself (the same binary with
//! `recv`, pinned to `--recv-cpu`, CPU 1 by default, reading with a current-thread tokio
//! runtime). Then, for `--rounds` rounds, it writes one `--size`-byte message to every
//! connection, one `write` each (nothing else: no framing, no parsing, no event loop), and
//! waits until the receiver says on a control connection that every message of the round
//! arrived. It prints the sender's CPU time per message, split into user and kernel, and
//! the time from the round's first write until the last message was read (p50, p99, max).
//!
//! `-n 100 --size 22` is the send half of the matrix's `100 x 20 B` echo row (a 20-byte
//! payload is a 22-byte server frame); `-n 15000 --size 66 --interval-ms 500` is the
//! fan-out row (a 64-byte payload to 15,000 subscribers, two publishes a second). A
//! server cannot spend less than this per message: it makes the same `tcp_sendmsg` call,
//! and on loopback that call also runs the receiving socket's side of TCP and wakes its
//! reader. `io_uring` saves the system-call entry around it, nothing inside it.
//!
//! `--echo` measures the whole echo instead: the other process (the client, on
//! `--recv-cpu`) writes one `--size`-byte request to every connection and reads one
//! `--reply-size`-byte reply from each (a round), and the measured process answers with a
//! bare blocking `read` and `write` per connection, in order: the least a server's echo
//! of one message in flight costs, receive included (no readiness calls: the reads are in
//! the order the requests were written). It prints the measured process's CPU per echo
//! and the client's round time (first request to last reply). With `-n 1` that round is
//! one connection's round trip through a server that does nothing else, the floor under
//! the latency row; `-n 100 --size 26 --reply-size 22` is the `100 x 20 B` row (a 20-byte
//! payload is a 26-byte masked client frame and a 22-byte server frame), `-n 1000 --size
//! 518 --reply-size 514` the `1,000 x 512 B` row.
#![allow(missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: kernel-floor [-n CONNS] [--size BYTES] [--rounds N] [--interval-ms MS] \
                     [--cpu N] [--recv-cpu N] [--echo [--reply-size BYTES] [--json]]";

struct Opts {
    conns: usize,
    size: usize,
    rounds: usize,
    interval: Duration,
    cpu: usize,
    recv_cpu: usize,
    /// Measure the echo (read and write per message), not only the send.
    echo: bool,
    /// The echo's reply size (default: `size`).
    reply_size: Option<usize>,
    /// With `--echo`: one JSON object on stdout instead of the text (for the matrix).
    json: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        conns: 100,
        size: 22,
        rounds: 20_000,
        interval: Duration::ZERO,
        cpu: 0,
        recv_cpu: 1,
        echo: false,
        reply_size: None,
        json: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match a.as_str() {
            "-n" | "--conns" => o.conns = value(a)?,
            "--size" => o.size = value(a)?,
            "--rounds" => o.rounds = value(a)?,
            "--interval-ms" => o.interval = Duration::from_millis(value(a)? as u64),
            "--cpu" => o.cpu = value(a)?,
            "--recv-cpu" => o.recv_cpu = value(a)?,
            "--echo" => o.echo = true,
            "--reply-size" => o.reply_size = Some(value(a)?),
            "--json" => o.json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.conns == 0 || o.size == 0 || o.rounds == 0 || o.reply_size == Some(0) {
        return Err("-n, --size, --reply-size and --rounds must be at least 1".into());
    }
    if (o.reply_size.is_some() || o.json) && !o.echo {
        return Err("--reply-size and --json go with --echo".into());
    }
    Ok(o)
}

fn pin(cpu: usize) {
    let ok = core_affinity::get_core_ids()
        .and_then(|ids| ids.into_iter().find(|c| c.id == cpu))
        .is_some_and(core_affinity::set_for_current);
    if !ok {
        eprintln!("kernel-floor: could not pin to CPU {cpu}; running unpinned");
    }
}

/// This process's user and system time in clock ticks (`/proc/self/stat`, fields 14 and
/// 15), and its time on a CPU in nanoseconds (`/proc/self/schedstat`).
fn cpu_times() -> std::io::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let bad = || std::io::Error::other("unexpected /proc/self/stat");
    // The command name (field 2) may hold spaces; the fields after it start past ')'.
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse().ok()).ok_or_else(bad);
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let (user, sys) = (tick(11)?, tick(12)?);
    let sched = std::fs::read_to_string("/proc/self/schedstat")?;
    let on_cpu = sched.split_whitespace().next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
    Ok((user, sys, on_cpu))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn send_side(o: &Opts) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["recv", &addr.to_string(), &o.conns.to_string(), &o.size.to_string()])
        .arg(o.recv_cpu.to_string())
        .stdin(Stdio::null())
        .spawn()?;
    // Pinned after the spawn: a child inherits its parent's CPU set and could not leave it.
    pin(o.cpu);
    // The receiver connects its control connection first and only then the others.
    let (mut control, _) = listener.accept()?;
    let mut conns = Vec::with_capacity(o.conns);
    while conns.len() < o.conns {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let msg = vec![0x5a_u8; o.size];
    let mut ack = [0u8; 1];
    let mut round = |conns: &mut [TcpStream]| -> std::io::Result<Duration> {
        let t0 = Instant::now();
        for s in conns.iter_mut() {
            s.write_all(&msg)?;
        }
        control.read_exact(&mut ack)?;
        Ok(t0.elapsed())
    };
    // One round to warm up: the first write on each connection grows its buffers.
    round(&mut conns)?;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let mut to_all = Vec::with_capacity(o.rounds);
    let mut busy = Duration::ZERO;
    let (u0, s0, c0) = cpu_times()?;
    let started = Instant::now();
    for _ in 0..o.rounds {
        let t = round(&mut conns)?;
        busy += t;
        to_all.push(t);
        if !o.interval.is_zero() {
            std::thread::sleep(o.interval.saturating_sub(t));
        }
    }
    let wall = started.elapsed();
    let (u1, s1, c1) = cpu_times()?;
    drop(conns);
    drop(control);
    let _ = child.wait();

    let msgs = (o.rounds * o.conns) as f64;
    let on_cpu_ns = (c1 - c0) as f64 / msgs;
    let (user, sys) = ((u1 - u0) as f64, (s1 - s0) as f64);
    let user_share = if user + sys > 0.0 { user / (user + sys) } else { 0.0 };
    to_all.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "kernel-floor: {} connections x {} B, {} rounds, {:.1} s ({:.1} s of it sending and waiting)",
        o.conns,
        o.size,
        o.rounds,
        wall.as_secs_f64(),
        busy.as_secs_f64()
    );
    println!(
        "sender CPU per message: {:.0} ns ({:.0} ns user, {:.0} ns kernel; {} + {} ticks of {:.0} Hz)",
        on_cpu_ns,
        on_cpu_ns * user_share,
        on_cpu_ns * (1.0 - user_share),
        u1 - u0,
        s1 - s0,
        ticks_per_s
    );
    println!(
        "round, first write to last read: p50 {:.1} us, p99 {:.1} us, max {:.1} us ({:.2} us per message at p50)",
        us(percentile(&to_all, 0.50)),
        us(percentile(&to_all, 0.99)),
        us(percentile(&to_all, 1.0)),
        us(percentile(&to_all, 0.50)) / o.conns as f64
    );
    Ok(())
}

/// `--echo`, the measured side: accepts the client's connections, then answers every
/// request with a bare `read` and `write`, connection after connection, round after
/// round (one warm-up round first, not measured).
fn echo_side(o: &Opts) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let reply_size = o.reply_size.unwrap_or(o.size);
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .arg("echo-client")
        .args([addr.to_string(), o.conns.to_string(), o.size.to_string()])
        .args([reply_size.to_string(), o.rounds.to_string(), o.recv_cpu.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    pin(o.cpu);
    let mut conns = Vec::with_capacity(o.conns);
    while conns.len() < o.conns {
        let (s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        conns.push(s);
    }
    let mut req = vec![0u8; o.size];
    let reply = vec![0xa5_u8; reply_size];
    let mut round = |conns: &mut [TcpStream]| -> std::io::Result<()> {
        for s in conns.iter_mut() {
            s.read_exact(&mut req)?;
            s.write_all(&reply)?;
        }
        Ok(())
    };
    round(&mut conns)?;
    let (u0, s0, c0) = cpu_times()?;
    for _ in 0..o.rounds {
        round(&mut conns)?;
    }
    let (u1, s1, c1) = cpu_times()?;
    drop(conns);
    let out = child.wait_with_output()?;
    // The client's one line: "round_trip_ns P50 P99 MAX".
    let line = String::from_utf8_lossy(&out.stdout);
    let rt: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let [p50, p99, max] = rt[..] else {
        return Err(std::io::Error::other(format!("echo-client reported {line:?}")));
    };
    let msgs = (o.rounds * o.conns) as f64;
    let on_cpu_ns = (c1 - c0) as f64 / msgs;
    let (user, sys) = ((u1 - u0) as f64, (s1 - s0) as f64);
    let user_share = if user + sys > 0.0 { user / (user + sys) } else { 0.0 };
    if o.json {
        println!(
            "{{\"scenario\":\"kernel-floor-echo\",\"connections\":{},\"request_bytes\":{},\
             \"reply_bytes\":{},\"rounds\":{},\"cpu_ns_per_message\":{:.1},\
             \"user_ns_per_message\":{:.1},\"round_trip\":{{\"p50_ns\":{},\"p99_ns\":{},\
             \"max_ns\":{}}}}}",
            o.conns,
            o.size,
            reply_size,
            o.rounds,
            on_cpu_ns,
            on_cpu_ns * user_share,
            p50,
            p99,
            max
        );
        return Ok(());
    }
    let us = |ns: u64| ns as f64 / 1e3;
    println!(
        "kernel-floor --echo: {} connections x {} B requests, {} B replies, {} rounds",
        o.conns, o.size, reply_size, o.rounds
    );
    println!(
        "echo CPU per message (read + write): {:.0} ns ({:.0} ns user, {:.0} ns kernel; {} + {} ticks)",
        on_cpu_ns,
        on_cpu_ns * user_share,
        on_cpu_ns * (1.0 - user_share),
        u1 - u0,
        s1 - s0
    );
    println!(
        "client round, first request to last reply: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        us(p50),
        us(p99),
        us(max)
    );
    Ok(())
}

/// `--echo`, the client: `echo-client ADDR CONNS SIZE REPLY_SIZE ROUNDS CPU`. Writes a
/// request to every connection, then reads every reply, and prints the round times.
fn echo_client(args: &[String]) -> std::io::Result<()> {
    let bad = || std::io::Error::other("echo-client: ADDR CONNS SIZE REPLY_SIZE ROUNDS CPU");
    let [addr, rest @ ..] = args else { return Err(bad()) };
    let addr: SocketAddr = addr.parse().map_err(|_| bad())?;
    let nums: Vec<usize> =
        rest.iter().map(|a| a.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
    let [conns, size, reply_size, rounds, cpu] = nums[..] else { return Err(bad()) };
    pin(cpu);
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let req = vec![0x5a_u8; size];
    let mut reply = vec![0u8; reply_size];
    let mut times = Vec::with_capacity(rounds);
    for r in 0..=rounds {
        let t0 = Instant::now();
        for s in streams.iter_mut() {
            s.write_all(&req)?;
        }
        for s in streams.iter_mut() {
            s.read_exact(&mut reply)?;
        }
        if r > 0 {
            times.push(t0.elapsed());
        }
    }
    times.sort_unstable();
    let ns = |d: Duration| d.as_nanos();
    println!(
        "round_trip_ns {} {} {}",
        ns(percentile(&times, 0.50)),
        ns(percentile(&times, 0.99)),
        ns(percentile(&times, 1.0))
    );
    Ok(())
}

/// The receiving process: `recv ADDR CONNS SIZE CPU`.
fn recv_side(args: &[String]) -> std::io::Result<()> {
    let bad = |_| std::io::Error::other("recv: bad arguments");
    let [addr, conns, size, cpu] = args else {
        return Err(std::io::Error::other("recv: ADDR CONNS SIZE CPU"));
    };
    let addr: SocketAddr = addr.parse().map_err(|_| std::io::Error::other("recv: bad address"))?;
    let (conns, size, cpu): (usize, usize, usize) =
        (conns.parse().map_err(bad)?, size.parse().map_err(bad)?, cpu.parse().map_err(bad)?);
    pin(cpu);
    let control = TcpStream::connect(addr)?;
    control.set_nodelay(true)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    rt.block_on(async move {
        use std::cell::Cell;
        use std::rc::Rc;
        use tokio::io::AsyncReadExt as _;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                let received = Rc::new(Cell::new(0usize));
                let control = Rc::new(control);
                let mut tasks = Vec::with_capacity(conns);
                for _ in 0..conns {
                    let mut s = tokio::net::TcpStream::connect(addr).await?;
                    let (received, control) = (received.clone(), control.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut buf = vec![0u8; size];
                        while s.read_exact(&mut buf).await.is_ok() {
                            received.set(received.get() + 1);
                            if received.get() == conns {
                                received.set(0);
                                // One byte on an idle connection: never blocks.
                                if (&*control).write_all(&[1]).is_err() {
                                    break;
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                Ok::<(), std::io::Error>(())
            })
            .await
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("recv") => recv_side(&args[1..]),
        Some("echo-client") => echo_client(&args[1..]),
        _ => match parse_opts(&args) {
            Ok(o) if o.echo => echo_side(&o),
            Ok(o) => send_side(&o),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
    };
    if let Err(e) = result {
        eprintln!("kernel-floor: {e}");
        std::process::exit(1);
    }
}
