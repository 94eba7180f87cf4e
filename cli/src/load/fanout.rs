//! The `fanout` scenario against the pub/sub gateway (`crate::gateway`): N subscriber
//! connections send `SUB <topic>` and wait for `SUBSCRIBED <topic>`; connection 0 then
//! publishes at a fixed rate with binary publish requests. Each payload starts with its
//! send time (monotonic ns) and a sequence number, both 8 bytes little-endian.
//!
//! Subscribers record every delivery's latency, and per sequence number how many
//! subscribers got it and the latest arrival, which gives the time to deliver a publish
//! to all N.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringwire::frame::Message;
use ringwire::Ctx;
use serde::Serialize;

use super::args::FanoutArgs;
use super::cpu::cpu_lines;
use super::json::{ErrorsJson, GeneratorCpuJson, LatencyJson, ServerCpuJson};
use super::procfs::ProcTarget;
use super::report::{line, merge, new_histogram, per_sec, Count, ErrorKind, Errors, Latency, Ns};
use super::session::{CpuProbe, CpuUse, Session, THREAD_PREFIX};
use super::worker::{Clients, Cx, Gauge, Phase, Script};
use crate::gateway::publish_request;

/// Most publishes sent in one loop turn when the publisher is behind.
const BURST: usize = 1024;
/// Longest wait for deliveries after publishing stops.
const DRAIN: Duration = Duration::from_secs(3);

/// Per sequence number: deliveries and the latest delivery latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seq {
    pub count: u32,
    pub max_ns: u64,
}

/// One worker's fan-out behaviour.
pub struct FanoutScript {
    size: usize,
    sub: String,
    subscribed: String,
    /// This worker's local index of the publisher (global connection 0), if it has it.
    publisher: Option<usize>,
    request: Vec<u8>,
    /// Where the payload starts in `request`.
    payload_at: usize,
    interval_ns: u64,
    next_due: u64,
    max_publishes: usize,
    published: u64,
    hist: Histogram<u64>,
    seqs: Vec<Seq>,
}

impl FanoutScript {
    pub fn new(worker: usize, a: &FanoutArgs, publishes: usize) -> Self {
        let request = publish_request(&a.topic, &vec![0u8; a.size]);
        let payload_at = request.len() - a.size;
        Self {
            size: a.size,
            sub: format!("SUB {}", a.topic),
            subscribed: format!("SUBSCRIBED {}", a.topic),
            publisher: (worker == 0).then_some(0),
            request,
            payload_at,
            interval_ns: (1e9 / a.rate) as u64,
            next_due: 0,
            max_publishes: publishes,
            published: 0,
            hist: new_histogram(),
            seqs: vec![Seq::default(); publishes],
        }
    }

    fn publish(&mut self, ws: &mut Ctx<'_>, seq: u64) -> bool {
        let at = self.payload_at;
        self.request[at + 8..at + 16].copy_from_slice(&seq.to_le_bytes());
        let t = super::clock::now_ns();
        self.request[at..at + 8].copy_from_slice(&t.to_le_bytes());
        ws.send_binary(&self.request).is_ok()
    }
}

impl Script for FanoutScript {
    fn on_open(&mut self, cx: &mut Cx<'_>, _local: usize, global: usize, ws: &mut Ctx<'_>) {
        if global == 0 {
            Gauge::bump(&cx.gauge.ready, 1);
        } else if ws.send_text(&self.sub).is_err() {
            cx.errors.note(ErrorKind::Io, || "subscribe refused locally".into());
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, _l: usize, _ws: &mut Ctx<'_>, msg: &Message) {
        let d = msg.as_bytes();
        if msg.is_text() {
            if d == self.subscribed.as_bytes() {
                Gauge::bump(&cx.gauge.ready, 1);
            } else {
                Gauge::bump(&cx.gauge.errors, 1);
                let t = String::from_utf8_lossy(&d[..d.len().min(40)]).into_owned();
                cx.errors.note(ErrorKind::Mismatch, || format!("unexpected text {t:?}"));
            }
            return;
        }
        let word =
            |at: usize| d.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
        let (Some(sent), Some(seq)) = (word(0), word(8)) else {
            Gauge::bump(&cx.gauge.errors, 1);
            cx.errors.note(ErrorKind::Mismatch, || format!("delivery of {} B", d.len()));
            return;
        };
        let Some(slot) = self.seqs.get_mut(seq as usize).filter(|_| d.len() == self.size) else {
            Gauge::bump(&cx.gauge.errors, 1);
            cx.errors.note(ErrorKind::Mismatch, || format!("delivery with sequence {seq}"));
            return;
        };
        let lat = cx.now_ns.saturating_sub(sent).max(1);
        slot.count += 1;
        slot.max_ns = slot.max_ns.max(lat);
        self.hist.saturating_record(lat);
        Gauge::bump(&cx.gauge.msgs, 1);
    }

    fn on_phase(&mut self, cx: &mut Cx<'_>, _clients: &mut Clients<'_, '_>) {
        if cx.phase == Phase::Measure && self.next_due == 0 {
            self.next_due = cx.now_ns;
        }
    }

    fn on_tick(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_, '_>) -> Option<u64> {
        let p = self.publisher?;
        if cx.phase != Phase::Measure {
            return None;
        }
        let mut burst = 0;
        while cx.now_ns >= self.next_due
            && (self.published as usize) < self.max_publishes
            && burst < BURST
        {
            let mut ws = clients.open(p)?;
            if !self.publish(&mut ws, self.published) {
                break;
            }
            self.published += 1;
            burst += 1;
            Gauge::bump(&cx.gauge.sent, 1);
            self.next_due += self.interval_ns;
        }
        ((self.published as usize) < self.max_publishes).then_some(self.next_due)
    }
}

/// The results of a fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutReport {
    pub subscribers: usize,
    pub subscribed: u64,
    pub rate: f64,
    pub size: usize,
    pub threads: usize,
    pub published: u64,
    pub delivered: u64,
    pub latency: Latency,
    /// Time until the last subscriber had a publish, over publishes all got.
    pub to_all: Latency,
    /// Publishes that did not reach every subscriber.
    pub incomplete: u64,
    pub cpu: CpuUse,
    pub errors: Errors,
    pub notes: Vec<String>,
}

impl FanoutReport {
    /// Deliveries expected: every publish to every subscriber.
    pub fn expected(&self) -> u64 {
        self.published * self.subscribed
    }
    /// Deliveries per second over the window (publishing and drain).
    pub fn delivery_rate(&self) -> f64 {
        per_sec(self.delivered, self.cpu.generator.wall_ns)
    }
    /// Whether anything went wrong (errors, missed deliveries).
    pub fn failed(&self) -> bool {
        self.errors.total() > 0 || self.delivered < self.expected() || self.incomplete > 0
    }

    /// The report's figures for `--json`.
    pub fn json(&self) -> FanoutJson<'_> {
        FanoutJson {
            scenario: "fanout",
            subscribers: self.subscribers,
            subscribed: self.subscribed,
            rate_per_s: self.rate,
            size: self.size,
            threads: self.threads,
            measured_s: self.cpu.generator.wall_ns as f64 / 1e9,
            published: self.published,
            delivered: self.delivered,
            expected: self.expected(),
            deliveries_per_s: self.delivery_rate(),
            delivery: LatencyJson::of(&self.latency),
            to_all: LatencyJson::of(&self.to_all),
            incomplete: self.incomplete,
            server_cpu: self.cpu.server.map(|s| ServerCpuJson::of(&s, self.delivered, "delivery")),
            generator_cpu: GeneratorCpuJson::of(&self.cpu.generator, self.threads, true),
            errors: ErrorsJson::of(&self.errors),
            notes: &self.notes,
            failed: self.failed(),
        }
    }
}

/// `ringwire load fanout --json`: the figures of a [`FanoutReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FanoutJson<'a> {
    /// `"fanout"`.
    pub scenario: &'static str,
    /// Subscriber connections asked for (after the fd-limit cap).
    pub subscribers: usize,
    /// Subscribers whose subscription was confirmed.
    pub subscribed: u64,
    /// Publishes per second asked for.
    pub rate_per_s: f64,
    /// Payload bytes per publish.
    pub size: usize,
    /// Generator threads.
    pub threads: usize,
    /// Length of the window (publishing and drain), seconds.
    pub measured_s: f64,
    /// Publishes sent.
    pub published: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Deliveries expected (published x subscribed).
    pub expected: u64,
    /// Deliveries per second over the window.
    pub deliveries_per_s: f64,
    /// Latency of each delivery; `null` without samples.
    pub delivery: Option<LatencyJson>,
    /// Time until the last subscriber had a publish, over publishes all got; `null`
    /// when none did.
    pub to_all: Option<LatencyJson>,
    /// Publishes that did not reach every subscriber.
    pub incomplete: u64,
    /// The server's CPU (per delivery); `null` without `--server-pid`.
    pub server_cpu: Option<ServerCpuJson>,
    /// The generator's CPU.
    pub generator_cpu: GeneratorCpuJson,
    /// Errors.
    pub errors: ErrorsJson<'a>,
    /// Notes of the report (e.g. connections capped by the fd limit).
    pub notes: &'a [String],
    /// Whether anything went wrong (errors, missed deliveries): the exit status is 1.
    pub failed: bool,
}

/// Runs the fan-out scenario. `server`: whose CPU to charge (default `--server-pid`).
pub fn run_fanout(
    a: &FanoutArgs,
    server: Option<ProcTarget>,
    reserved: u64,
) -> Result<FanoutReport, String> {
    let (duration, publishes) = a.check()?;
    let mut plan = a.client.plan()?;
    if a.remote_subscribers {
        if plan.targets.len() < 2 {
            return Err("--remote-subscribers needs two --addr or more".into());
        }
        plan.first_target_alone = true;
    }
    let server = server.or(plan.server_pid.map(ProcTarget::Pid));
    let threads = plan.threads;
    let want = a.subscribers.saturating_add(1);
    let mut s =
        Session::start(plan, want, reserved, "fanout", |i, _| FanoutScript::new(i, a, publishes))?;
    let (conns, note) = (s.conns, s.note.clone());
    s.wait_ready();
    let subscribed = s.total_of(|g| &g.ready).saturating_sub(1);
    let mut probe = CpuProbe::new(server, ProcTarget::SelfThreads(THREAD_PREFIX));
    probe.begin();
    s.hold(Phase::Measure, duration, "publish", |_| false);
    s.hold(Phase::Drain, DRAIN, "drain", |c| {
        c.total(|g| &g.msgs) >= c.total(|g| &g.sent) * subscribed
    });
    let cpu = probe.end();
    let (scripts, errors) = s.finish()?;
    let published: u64 = scripts.iter().map(|s| s.published).sum();
    let mut seqs = vec![Seq::default(); published as usize];
    for sc in &scripts {
        for (t, s) in seqs.iter_mut().zip(&sc.seqs) {
            t.count += s.count;
            t.max_ns = t.max_ns.max(s.max_ns);
        }
    }
    let mut to_all = new_histogram();
    let mut incomplete = 0;
    for s in &seqs {
        if u64::from(s.count) >= subscribed && subscribed > 0 {
            to_all.saturating_record(s.max_ns.max(1));
        } else {
            incomplete += 1;
        }
    }
    let hist = merge(scripts.iter().map(|s| &s.hist));
    Ok(FanoutReport {
        subscribers: conns - 1,
        subscribed,
        rate: a.rate,
        size: a.size,
        threads,
        published,
        delivered: hist.len(),
        latency: Latency::of(&hist),
        to_all: Latency::of(&to_all),
        incomplete,
        cpu,
        errors,
        notes: note.into_iter().collect(),
    })
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        out.push_str(&format!(
            "fanout: {} subscribers, {} publishes/s x {} B, {} generator thread(s)\n",
            Count(self.subscribers as u64),
            self.rate,
            self.size,
            self.threads
        ));
        if self.subscribed < self.subscribers as u64 {
            line(
                &mut out,
                "subscribed",
                format_args!("only {} of {}", self.subscribed, self.subscribers),
            );
        }
        line(
            &mut out,
            "delivered",
            format_args!(
                "{} of {} ({} publishes; {} deliveries/s)",
                Count(self.delivered),
                Count(self.expected()),
                Count(self.published),
                Count(self.delivery_rate() as u64)
            ),
        );
        line(&mut out, "delivery", self.latency);
        if self.to_all.count > 0 {
            line(
                &mut out,
                "to all",
                format_args!(
                    "p50 {}  p99 {}  max {}  (time until the last subscriber had it)",
                    Ns(self.to_all.p50),
                    Ns(self.to_all.p99),
                    Ns(self.to_all.max)
                ),
            );
        }
        if self.incomplete > 0 {
            line(
                &mut out,
                "incomplete",
                format_args!("{} publishes missed someone", self.incomplete),
            );
        }
        cpu_lines(&mut out, &self.cpu, self.threads, self.delivered, "delivery");
        line(&mut out, "errors", &self.errors);
        for n in &self.notes {
            line(&mut out, "note", n);
        }
        f.write_str(out.trim_end())
    }
}
