//! The `echo` scenario: every connection keeps `in_flight` messages outstanding; each
//! reply is timed and answered with a new message. Works against any RFC 6455 echo
//! server: it relies only on replies coming back unchanged and in order.
//!
//! Timing: a binary message of 8 bytes or more carries its send time (monotonic ns,
//! little-endian) in its first 8 bytes; text and shorter messages keep their send times
//! in a per-connection FIFO instead.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use ringwire::frame::Message;
use ringwire::Ctx;
use serde::Serialize;

use super::args::EchoArgs;
use super::cpu::cpu_lines;
use super::json::{ErrorsJson, GeneratorCpuJson, LatencyJson, ServerCpuJson};
use super::procfs::ProcTarget;
use super::report::{line, merge, new_histogram, per_sec, Count, ErrorKind, Errors, Latency};
use super::session::{CpuProbe, CpuUse, Session, THREAD_PREFIX};
use super::worker::{Clients, Cx, Gauge, Phase, Script};

/// How long the drain waits for replies still in flight.
const DRAIN: Duration = Duration::from_secs(2);

/// One worker's echo behaviour.
pub struct EchoScript {
    in_flight: usize,
    size: usize,
    text: bool,
    /// Timestamps travel in the payload (binary, >= 8 bytes).
    embed: bool,
    payload: Vec<u8>,
    text_payload: String,
    /// Send times, `in_flight` slots per connection (FIFO mode only).
    fifo: Vec<u64>,
    head: Vec<u32>,
    outstanding: Vec<u32>,
    hist: Histogram<u64>,
    measured: u64,
}

impl EchoScript {
    pub fn new(conns: usize, in_flight: usize, size: usize, text: bool) -> Self {
        let embed = !text && size >= 8;
        Self {
            in_flight,
            size,
            text,
            embed,
            payload: vec![b'x'; size],
            text_payload: "x".repeat(if text { size } else { 0 }),
            fifo: if embed { Vec::new() } else { vec![0; conns * in_flight] },
            head: vec![0; conns],
            outstanding: vec![0; conns],
            hist: new_histogram(),
            measured: 0,
        }
    }

    fn send(&mut self, gauge: &Gauge, local: usize, ws: &mut Ctx<'_>, now_ns: u64) {
        let out = self.outstanding[local] as usize;
        if self.embed {
            self.payload[..8].copy_from_slice(&now_ns.to_le_bytes());
        } else {
            let slot = (self.head[local] as usize + out) % self.in_flight;
            self.fifo[local * self.in_flight + slot] = now_ns;
        }
        let r = if self.text {
            ws.send_text(&self.text_payload)
        } else {
            ws.send_binary(&self.payload)
        };
        if r.is_ok() {
            self.outstanding[local] += 1;
            Gauge::bump(&gauge.sent, 1);
        }
    }

    fn fill(&mut self, gauge: &Gauge, local: usize, ws: &mut Ctx<'_>, now_ns: u64) {
        while (self.outstanding[local] as usize) < self.in_flight {
            let before = self.outstanding[local];
            self.send(gauge, local, ws, now_ns);
            if self.outstanding[local] == before {
                break;
            }
        }
    }

    /// Messages still unanswered.
    pub fn unanswered(&self) -> u64 {
        self.outstanding.iter().map(|&n| u64::from(n)).sum()
    }
}

fn sending(p: Phase) -> bool {
    matches!(p, Phase::Warmup | Phase::Measure)
}

impl Script for EchoScript {
    fn on_open(&mut self, cx: &mut Cx<'_>, local: usize, _global: usize, ws: &mut Ctx<'_>) {
        Gauge::bump(&cx.gauge.ready, 1);
        if sending(cx.phase) {
            self.fill(cx.gauge, local, ws, cx.now_ns);
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, local: usize, ws: &mut Ctx<'_>, msg: &Message) {
        let data = msg.as_bytes();
        if self.outstanding[local] == 0 {
            Gauge::bump(&cx.gauge.errors, 1);
            cx.errors.note(ErrorKind::Mismatch, || "a message nobody asked for".into());
            return;
        }
        self.outstanding[local] -= 1;
        Gauge::bump(&cx.gauge.msgs, 1);
        let sent = if self.embed {
            data.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        } else {
            let i = local * self.in_flight + self.head[local] as usize;
            self.head[local] = ((self.head[local] as usize + 1) % self.in_flight) as u32;
            self.fifo.get(i).copied()
        };
        if data.len() != self.size || msg.is_text() != self.text {
            Gauge::bump(&cx.gauge.errors, 1);
            let (n, t) = (data.len(), msg.is_text());
            cx.errors.note(ErrorKind::Mismatch, || format!("echo of {n} B (text: {t}) differs"));
        } else if let (Phase::Measure, Some(sent)) = (cx.phase, sent) {
            self.hist.saturating_record(cx.now_ns.saturating_sub(sent).max(1));
            self.measured += 1;
        }
        if sending(cx.phase) {
            self.send(cx.gauge, local, ws, cx.now_ns);
        }
    }

    fn on_phase(&mut self, cx: &mut Cx<'_>, clients: &mut Clients<'_, '_>) {
        if sending(cx.phase) {
            for i in 0..clients.len() {
                if let Some(mut ws) = clients.open(i) {
                    self.fill(cx.gauge, i, &mut ws, cx.now_ns);
                }
            }
        }
    }
}

/// The results of an echo run.
#[derive(Debug, Clone)]
pub struct EchoReport {
    pub connections: usize,
    pub opened: u64,
    pub in_flight: usize,
    pub size: usize,
    pub text: bool,
    pub threads: usize,
    pub warmup: Duration,
    /// Replies timed in the measured window.
    pub messages: u64,
    pub latency: Latency,
    pub cpu: CpuUse,
    pub errors: Errors,
    /// Messages never answered (after the drain).
    pub unanswered: u64,
    pub notes: Vec<String>,
}

impl EchoReport {
    /// Echoed messages per second over the measured window.
    pub fn rate(&self) -> f64 {
        per_sec(self.messages, self.cpu.generator.wall_ns)
    }
    /// Whether anything went wrong.
    pub fn failed(&self) -> bool {
        self.errors.total() > 0 || self.unanswered > 0
    }

    /// The report's figures for `--json`.
    pub fn json(&self) -> EchoJson<'_> {
        EchoJson {
            scenario: "echo",
            connections: self.connections,
            opened: self.opened,
            in_flight: self.in_flight,
            size: self.size,
            text: self.text,
            threads: self.threads,
            warmup_s: self.warmup.as_secs_f64(),
            measured_s: self.cpu.generator.wall_ns as f64 / 1e9,
            messages: self.messages,
            msg_per_s: self.rate(),
            round_trip: LatencyJson::of(&self.latency),
            server_cpu: self.cpu.server.map(|s| ServerCpuJson::of(&s, self.messages, "message")),
            generator_cpu: GeneratorCpuJson::of(&self.cpu.generator, self.threads, true),
            unanswered: self.unanswered,
            errors: ErrorsJson::of(&self.errors),
            notes: &self.notes,
            failed: self.failed(),
        }
    }
}

/// `ringwire load echo --json`: the figures of an [`EchoReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EchoJson<'a> {
    /// `"echo"`.
    pub scenario: &'static str,
    /// Connections asked for (after the fd-limit cap).
    pub connections: usize,
    /// Connections that opened.
    pub opened: u64,
    /// Messages outstanding per connection.
    pub in_flight: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Text messages (else binary).
    pub text: bool,
    /// Generator threads.
    pub threads: usize,
    /// Seconds of traffic before the measured window.
    pub warmup_s: f64,
    /// Length of the measured window, seconds.
    pub measured_s: f64,
    /// Replies timed in the measured window.
    pub messages: u64,
    /// Echoed messages per second over the window.
    pub msg_per_s: f64,
    /// Round-trip latency; `null` without samples.
    pub round_trip: Option<LatencyJson>,
    /// The server's CPU (per message); `null` without `--server-pid`.
    pub server_cpu: Option<ServerCpuJson>,
    /// The generator's CPU.
    pub generator_cpu: GeneratorCpuJson,
    /// Messages never answered (after the drain).
    pub unanswered: u64,
    /// Errors.
    pub errors: ErrorsJson<'a>,
    /// Notes of the report (e.g. connections capped by the fd limit).
    pub notes: &'a [String],
    /// Whether anything went wrong (errors or unanswered messages): the exit status is 1.
    pub failed: bool,
}

/// Runs the echo scenario. `server`: whose CPU to charge (a PID, or the in-process
/// server's threads).
pub fn run_echo(a: &EchoArgs, server: Option<ProcTarget>) -> Result<EchoReport, String> {
    let (duration, warmup) = a.check()?;
    let plan = a.client.plan()?;
    let server = server.or(plan.server_pid.map(ProcTarget::Pid));
    let threads = plan.threads;
    let mut s = Session::start(plan, a.connections, 0, "echo", |i, conns| {
        let mine = (i..conns).step_by(threads).count();
        EchoScript::new(mine, a.in_flight, a.size, a.text)
    })?;
    let (conns, note) = (s.conns, s.note.clone());
    s.wait_ready();
    let opened = s.total_of(|g| &g.opened);
    s.hold(Phase::Warmup, warmup, "warmup", |_| false);
    let mut probe = CpuProbe::new(server, ProcTarget::SelfThreads(THREAD_PREFIX));
    probe.begin();
    s.hold(Phase::Measure, duration, "measure", |_| false);
    let cpu = probe.end();
    // Replies still in flight come back; nothing new is sent.
    s.hold(Phase::Drain, DRAIN, "drain", |c| c.total(|g| &g.sent) <= c.total(|g| &g.msgs));
    let (scripts, errors) = s.finish()?;
    let hist = merge(scripts.iter().map(|s| &s.hist));
    Ok(EchoReport {
        connections: conns,
        opened,
        in_flight: a.in_flight,
        size: a.size,
        text: a.text,
        threads,
        warmup,
        messages: scripts.iter().map(|s| s.measured).sum(),
        latency: Latency::of(&hist),
        cpu,
        errors,
        unanswered: scripts.iter().map(EchoScript::unanswered).sum(),
        notes: note.into_iter().collect(),
    })
}

impl fmt::Display for EchoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let kind = if self.text { "text" } else { "binary" };
        let secs = self.cpu.generator.wall_ns as f64 / 1e9;
        out.push_str(&format!(
            "echo: {} connections x {} in flight x {} B {kind}, {secs:.1} s measured after {:.1} s warmup, {} generator thread(s)\n",
            Count(self.connections as u64),
            self.in_flight,
            self.size,
            self.warmup.as_secs_f64(),
            self.threads
        ));
        if self.opened < self.connections as u64 {
            line(&mut out, "opened", format_args!("only {} of {}", self.opened, self.connections));
        }
        line(
            &mut out,
            "messages",
            format_args!("{} echoed ({} msg/s)", Count(self.messages), Count(self.rate() as u64)),
        );
        line(&mut out, "round trip", self.latency);
        cpu_lines(&mut out, &self.cpu, self.threads, self.messages, "message");
        if self.unanswered > 0 {
            line(&mut out, "unanswered", Count(self.unanswered));
        }
        line(&mut out, "errors", &self.errors);
        for n in &self.notes {
            line(&mut out, "note", n);
        }
        f.write_str(out.trim_end())
    }
}
