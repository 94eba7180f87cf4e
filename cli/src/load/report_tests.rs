//! The reports built from known figures: the text (unchanged) and the JSON of each
//! scenario, and `--json` on every scenario.

use std::time::Duration;

use super::echo::EchoReport;
use super::fanout::FanoutReport;
use super::idle::IdleReport;
use super::procfs::CpuWindow;
use super::report::{Errors, Latency};
use super::session::CpuUse;

const WALL: u64 = 5_000_000_000;

fn server_window() -> CpuWindow {
    CpuWindow {
        cpu_ns: 2_050_000_000,
        wait_ns: 2_300_000_000,
        wall_ns: WALL,
        user_ticks: 80,
        sys_ticks: 120,
    }
}

fn busy_generator() -> CpuWindow {
    CpuWindow { cpu_ns: 4_700_000_000, wait_ns: 300_000_000, wall_ns: WALL, ..CpuWindow::default() }
}

fn some_errors() -> Errors {
    Errors {
        connect: 2,
        closed: 1,
        samples: vec!["connect 127.0.0.1:1: refused".into(), "closed by peer".into()],
        ..Errors::default()
    }
}

fn latency() -> Latency {
    Latency {
        count: 1_000_000,
        p50: 61_234,
        p99: 95_000,
        p999: 1_500_000,
        max: 2_345_678_901,
        mean: 70_000.5,
    }
}

fn echo_rich() -> EchoReport {
    EchoReport {
        connections: 100,
        opened: 98,
        in_flight: 1,
        size: 20,
        text: false,
        threads: 1,
        warmup: Duration::from_secs(1),
        messages: 1_000_000,
        latency: latency(),
        cpu: CpuUse { server: Some(server_window()), generator: busy_generator() },
        errors: some_errors(),
        unanswered: 3,
        notes: vec!["capped at 98 of 100 connections".into()],
    }
}

fn echo_plain() -> EchoReport {
    EchoReport {
        connections: 1,
        opened: 1,
        in_flight: 4,
        size: 16,
        text: true,
        threads: 2,
        warmup: Duration::ZERO,
        messages: 0,
        latency: Latency::default(),
        cpu: CpuUse {
            server: None,
            generator: CpuWindow { cpu_ns: 1_000_000_000, wall_ns: WALL, ..CpuWindow::default() },
        },
        errors: Errors::default(),
        unanswered: 0,
        notes: Vec::new(),
    }
}

fn idle_rich() -> IdleReport {
    IdleReport {
        connections: 15_000,
        opened: 15_000,
        setup: Duration::from_millis(1_250),
        rss: Some((10 << 20, (10 << 20) + 14_000 * 125)),
        rss_of: "server (pid 42)".into(),
        baseline: 1_000,
        rss_end: Some((10 << 20) + 14_000 * 130),
        still_open: 14_999,
        hold: Duration::from_secs(2),
        cpu: CpuUse {
            server: Some(CpuWindow { wall_ns: 1_250_000_000, ..server_window() }),
            generator: CpuWindow { wall_ns: 1_250_000_000, ..busy_generator() },
        },
        threads: 1,
        unexpected: 7,
        errors: some_errors(),
        notes: vec!["a note".into()],
    }
}

fn idle_plain() -> IdleReport {
    IdleReport {
        connections: 10,
        opened: 10,
        setup: Duration::from_millis(20),
        rss: None,
        rss_of: String::new(),
        baseline: 0,
        rss_end: None,
        still_open: 10,
        hold: Duration::from_millis(500),
        cpu: CpuUse::default(),
        threads: 2,
        unexpected: 0,
        errors: Errors::default(),
        notes: Vec::new(),
    }
}

fn fanout_rich() -> FanoutReport {
    FanoutReport {
        subscribers: 15_000,
        subscribed: 14_990,
        rate: 2.5,
        size: 64,
        threads: 1,
        published: 10,
        delivered: 149_890,
        latency: latency(),
        to_all: Latency {
            count: 9,
            p50: 4_100_000,
            p99: 9_870_000,
            p999: 9_870_000,
            max: 9_870_000,
            mean: 5e6,
        },
        incomplete: 1,
        cpu: CpuUse { server: Some(server_window()), generator: busy_generator() },
        errors: some_errors(),
        notes: vec!["a note".into()],
    }
}

fn fanout_plain() -> FanoutReport {
    FanoutReport {
        subscribers: 20,
        subscribed: 20,
        rate: 50.0,
        size: 32,
        threads: 2,
        published: 0,
        delivered: 0,
        latency: Latency::default(),
        to_all: Latency::default(),
        incomplete: 0,
        cpu: CpuUse::default(),
        errors: Errors::default(),
        notes: Vec::new(),
    }
}

/// The text reports, byte for byte as before `--json` existed.
#[test]
fn text_reports_unchanged() {
    let cases: [(String, &[&str]); 6] = [
        (
            echo_rich().to_string(),
            &[
                "echo: 100 connections x 1 in flight x 20 B binary, 5.0 s measured after 1.0 s warmup, 1 generator thread(s)",
                "  opened          only 98 of 100",
                "  messages        1,000,000 echoed (200,000 msg/s)",
                "  round trip      p50 61.2 us  p99 95.0 us  p99.9 1.50 ms  max 2.35 s",
                "  server CPU      41.0% of a core, 2.0 us per message (+46% of a core runnable but waiting: shared cores)",
                "  server split    60% kernel, 40% user: 1.2 us and 820 ns per message",
                "  generator CPU   94.0% of 1 thread(s) (+6% of a core runnable but waiting: shared cores)",
                "                  <- generator near its limit: msg/s is bounded by the generator; compare server CPU per message",
                "  unanswered      3",
                "  errors          3 (connect 2, closed early 1)",
                "                  e.g. connect 127.0.0.1:1: refused",
                "                  e.g. closed by peer",
                "  note            capped at 98 of 100 connections",
            ],
        ),
        (
            echo_plain().to_string(),
            &[
                "echo: 1 connections x 4 in flight x 16 B text, 5.0 s measured after 0.0 s warmup, 2 generator thread(s)",
                "  messages        0 echoed (0 msg/s)",
                "  round trip      no samples",
                "  generator CPU   10.0% of 2 thread(s)",
                "  errors          0",
            ],
        ),
        (
            idle_rich().to_string(),
            &[
                "idle: 15,000 connections held 2.0 s, 1 generator thread(s)",
                "  opened          15,000 in 1.25 s (12,000 upgrades/s)",
                "  setup CPU       server 164.0% of a core, 136.7 us per upgrade (+184% of a core runnable but waiting: shared cores)",
                "  generator CPU   376.0% of 1 thread(s) during setup (+24% of a core runnable but waiting: shared cores)",
                "  memory          server (pid 42) RSS 10.0 MiB -> 11.7 MiB: 125 B per connection (marginal: over the last 14,000 after 1,000 already open)",
                "  after the hold  RSS 11.7 MiB: 130 B per connection (includes what heartbeats during the hold used)",
                "  still open      14,999 of 15,000 after the hold",
                "  messages        7 unexpected",
                "  errors          3 (connect 2, closed early 1)",
                "                  e.g. connect 127.0.0.1:1: refused",
                "                  e.g. closed by peer",
                "  note            a note",
            ],
        ),
        (
            idle_plain().to_string(),
            &[
                "idle: 10 connections held 0.5 s, 2 generator thread(s)",
                "  opened          10 in 0.02 s (500 upgrades/s)",
                "  generator CPU   0.0% of 2 thread(s) during setup",
                "  memory          not measured (give --server-pid)",
                "  still open      10 of 10 after the hold",
                "  errors          0",
            ],
        ),
        (
            fanout_rich().to_string(),
            &[
                "fanout: 15,000 subscribers, 2.5 publishes/s x 64 B, 1 generator thread(s)",
                "  subscribed      only 14990 of 15000",
                "  delivered       149,890 of 149,900 (10 publishes; 29,978 deliveries/s)",
                "  delivery        p50 61.2 us  p99 95.0 us  p99.9 1.50 ms  max 2.35 s",
                "  to all          p50 4.10 ms  p99 9.87 ms  max 9.87 ms  (time until the last subscriber had it)",
                "  incomplete      1 publishes missed someone",
                "  server CPU      41.0% of a core, 13.7 us per delivery (+46% of a core runnable but waiting: shared cores)",
                "  server split    60% kernel, 40% user: 8.2 us and 5.5 us per delivery",
                "  generator CPU   94.0% of 1 thread(s) (+6% of a core runnable but waiting: shared cores)",
                "                  <- generator near its limit: msg/s is bounded by the generator; compare server CPU per message",
                "  errors          3 (connect 2, closed early 1)",
                "                  e.g. connect 127.0.0.1:1: refused",
                "                  e.g. closed by peer",
                "  note            a note",
            ],
        ),
        (
            fanout_plain().to_string(),
            &[
                "fanout: 20 subscribers, 50 publishes/s x 32 B, 2 generator thread(s)",
                "  delivered       0 of 0 (0 publishes; 0 deliveries/s)",
                "  delivery        no samples",
                "  generator CPU   0.0% of 2 thread(s)",
                "  errors          0",
            ],
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want.join("\n"));
    }
}

pub(super) fn parse(json: &impl serde::Serialize) -> serde_json::Value {
    let text = super::json::to_string(json).unwrap();
    assert!(!text.contains('\n'), "one line: {text}");
    serde_json::from_str(&text).unwrap()
}

/// Checks `value` against `(path, expected)` pairs; a path is keys joined by '/'.
fn check(value: &serde_json::Value, want: &[(&str, serde_json::Value)]) {
    for (path, expected) in want {
        let got = value.pointer(&format!("/{path}"));
        assert_eq!(got, Some(expected), "{path} in {value}");
    }
}

#[test]
fn echo_json() {
    use serde_json::json;
    let v = parse(&echo_rich().json());
    check(
        &v,
        &[
            ("scenario", json!("echo")),
            ("connections", json!(100)),
            ("opened", json!(98)),
            ("in_flight", json!(1)),
            ("size", json!(20)),
            ("text", json!(false)),
            ("threads", json!(1)),
            ("warmup_s", json!(1.0)),
            ("measured_s", json!(5.0)),
            ("messages", json!(1_000_000)),
            ("msg_per_s", json!(200_000.0)),
            ("round_trip/count", json!(1_000_000)),
            ("round_trip/p50_ns", json!(61_234)),
            ("round_trip/p99_ns", json!(95_000)),
            ("round_trip/p999_ns", json!(1_500_000)),
            ("round_trip/max_ns", json!(2_345_678_901u64)),
            ("round_trip/mean_ns", json!(70_000.5)),
            ("server_cpu/percent_of_core", json!(41.0)),
            ("server_cpu/wait_percent_of_core", json!(46.0)),
            ("server_cpu/cpu_ns", json!(2_050_000_000u64)),
            ("server_cpu/wait_ns", json!(2_300_000_000u64)),
            ("server_cpu/wall_ns", json!(5_000_000_000u64)),
            ("server_cpu/user_ticks", json!(80)),
            ("server_cpu/sys_ticks", json!(120)),
            ("server_cpu/unit", json!("message")),
            ("server_cpu/ns_per_unit", json!(2050)),
            ("server_cpu/kernel_percent", json!(60.0)),
            ("server_cpu/user_percent", json!(40.0)),
            ("server_cpu/kernel_ns_per_unit", json!(1230)),
            ("server_cpu/user_ns_per_unit", json!(820)),
            ("generator_cpu/threads", json!(1)),
            ("generator_cpu/percent_of_threads", json!(94.0)),
            ("generator_cpu/percent_of_core", json!(94.0)),
            ("generator_cpu/wait_percent_of_core", json!(6.0)),
            ("generator_cpu/busy_percent_of_threads", json!(100.0)),
            ("generator_cpu/near_limit", json!(true)),
            ("unanswered", json!(3)),
            ("errors/total", json!(3)),
            ("errors/connect", json!(2)),
            ("errors/handshake", json!(0)),
            ("errors/closed", json!(1)),
            ("errors/mismatch", json!(0)),
            ("errors/io", json!(0)),
            ("errors/samples", json!(["connect 127.0.0.1:1: refused", "closed by peer"])),
            ("notes", json!(["capped at 98 of 100 connections"])),
            ("failed", json!(true)),
        ],
    );
    // Nothing measured: nulls, and the whole object (field order included) is stable.
    let text = super::json::to_string(&echo_plain().json()).unwrap();
    assert_eq!(
        text,
        r#"{"scenario":"echo","connections":1,"opened":1,"in_flight":4,"size":16,"text":true,"threads":2,"warmup_s":0.0,"measured_s":5.0,"messages":0,"msg_per_s":0.0,"round_trip":null,"server_cpu":null,"generator_cpu":{"threads":2,"percent_of_threads":10.0,"percent_of_core":20.0,"wait_percent_of_core":0.0,"busy_percent_of_threads":10.0,"cpu_ns":1000000000,"wait_ns":0,"wall_ns":5000000000,"near_limit":false},"unanswered":0,"errors":{"total":0,"connect":0,"handshake":0,"closed":0,"mismatch":0,"io":0,"samples":[]},"notes":[],"failed":false}"#
    );
}

#[test]
fn idle_json() {
    use serde_json::json;
    let base = 10u64 << 20;
    let v = parse(&idle_rich().json());
    check(
        &v,
        &[
            ("scenario", json!("idle")),
            ("connections", json!(15_000)),
            ("opened", json!(15_000)),
            ("threads", json!(1)),
            ("setup_s", json!(1.25)),
            ("upgrades_per_s", json!(12_000.0)),
            ("hold_s", json!(2.0)),
            ("server_cpu/unit", json!("upgrade")),
            ("server_cpu/ns_per_unit", json!(2_050_000_000u64 / 15_000)),
            ("server_cpu/percent_of_core", json!(164.0)),
            ("generator_cpu/percent_of_threads", json!(376.0)),
            ("memory/of", json!("server (pid 42)")),
            ("memory/baseline_connections", json!(1_000)),
            ("memory/measured_connections", json!(14_000)),
            ("memory/rss_before_bytes", json!(base)),
            ("memory/rss_after_bytes", json!(base + 14_000 * 125)),
            ("memory/bytes_per_connection", json!(125.0)),
            ("memory/rss_after_hold_bytes", json!(base + 14_000 * 130)),
            ("memory/bytes_per_connection_after_hold", json!(130.0)),
            ("still_open", json!(14_999)),
            ("unexpected", json!(7)),
            ("errors/total", json!(3)),
            ("notes", json!(["a note"])),
            ("failed", json!(true)),
        ],
    );
    // The setup window says nothing about a limit on msg/s.
    assert_eq!(v.pointer("/generator_cpu/near_limit"), None, "{v}");
    let v = parse(&idle_plain().json());
    check(
        &v,
        &[
            ("memory", json!(null)),
            ("server_cpu", json!(null)),
            ("upgrades_per_s", json!(500.0)),
            ("failed", json!(false)),
        ],
    );
}

#[test]
fn fanout_json() {
    use serde_json::json;
    let v = parse(&fanout_rich().json());
    check(
        &v,
        &[
            ("scenario", json!("fanout")),
            ("subscribers", json!(15_000)),
            ("subscribed", json!(14_990)),
            ("rate_per_s", json!(2.5)),
            ("size", json!(64)),
            ("threads", json!(1)),
            ("measured_s", json!(5.0)),
            ("published", json!(10)),
            ("delivered", json!(149_890)),
            ("expected", json!(149_900)),
            ("deliveries_per_s", json!(29_978.0)),
            ("delivery/p50_ns", json!(61_234)),
            ("delivery/p999_ns", json!(1_500_000)),
            ("to_all/count", json!(9)),
            ("to_all/p50_ns", json!(4_100_000)),
            ("to_all/p99_ns", json!(9_870_000)),
            ("to_all/max_ns", json!(9_870_000)),
            ("incomplete", json!(1)),
            ("server_cpu/unit", json!("delivery")),
            ("server_cpu/ns_per_unit", json!(2_050_000_000u64 / 149_890)),
            ("server_cpu/kernel_percent", json!(60.0)),
            ("generator_cpu/near_limit", json!(true)),
            ("errors/total", json!(3)),
            ("failed", json!(true)),
        ],
    );
    let v = parse(&fanout_plain().json());
    check(
        &v,
        &[
            ("delivery", json!(null)),
            ("to_all", json!(null)),
            ("server_cpu", json!(null)),
            ("generator_cpu/near_limit", json!(false)),
            ("failed", json!(false)),
        ],
    );
}

#[test]
fn json_flag_on_every_scenario() {
    use clap::Parser as _;
    for scenario in ["echo", "idle", "fanout", "reconnect"] {
        let cli = crate::Cli::try_parse_from(["ringwire", "load", scenario, "--json"]).unwrap();
        let Some(crate::Cmd::Load(load)) = cli.cmd else { panic!("{scenario}: not load") };
        let client = match load.scenario {
            super::Scenario::Echo(a) => a.client,
            super::Scenario::Idle(a) => a.client,
            super::Scenario::Fanout(a) => a.client,
            super::Scenario::Reconnect(a) => a.client,
        };
        assert!(client.json, "{scenario}");
        // A redirected stderr (as under `cargo test`) gets no progress line with --json.
        let plan = client.plan().unwrap();
        assert_eq!(plan.progress, std::io::IsTerminal::is_terminal(&std::io::stderr()));
    }
    let cli = crate::Cli::try_parse_from(["ringwire", "load", "echo"]).unwrap();
    let Some(crate::Cmd::Load(load)) = cli.cmd else { panic!("not load") };
    let super::Scenario::Echo(a) = load.scenario else { panic!("not echo") };
    assert!(!a.client.json && a.client.plan().unwrap().progress);
}
