//! Results: latency histograms and their percentiles, error tallies, and the formatting
//! of the report tables.

use std::fmt;

use hdrhistogram::Histogram;

/// Highest latency recorded (60 s); larger values are clamped to it.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// An empty latency histogram: 1 ns to 60 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

/// Merges per-thread histograms into one (all share the same bounds).
pub fn merge<'a>(hists: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut total = new_histogram();
    for h in hists {
        // Same bounds everywhere: addition cannot fail.
        let _ = total.add(h);
    }
    total
}

/// The percentiles a report shows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {}  p99 {}  p99.9 {}  max {}",
            Ns(self.p50),
            Ns(self.p99),
            Ns(self.p999),
            Ns(self.max)
        )
    }
}

/// Nanoseconds, shown in the unit that fits.
#[derive(Debug, Clone, Copy)]
pub struct Ns(pub u64);

impl fmt::Display for Ns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0 as f64;
        match self.0 {
            0..1_000 => write!(f, "{} ns", self.0),
            1_000..1_000_000 => write!(f, "{:.1} us", v / 1e3),
            1_000_000..1_000_000_000 => write!(f, "{:.2} ms", v / 1e6),
            _ => write!(f, "{:.2} s", v / 1e9),
        }
    }
}

/// An integer with thousands separators.
#[derive(Debug, Clone, Copy)]
pub struct Count(pub u64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        let mut out = String::with_capacity(s.len() + s.len() / 3);
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        f.pad(&out)
    }
}

/// Bytes, shown in the unit that fits.
#[derive(Debug, Clone, Copy)]
pub struct Bytes(pub f64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.abs() < 10_000.0 {
            write!(f, "{v:.0} B")
        } else if v.abs() < 10_000_000.0 {
            write!(f, "{:.1} KiB", v / 1024.0)
        } else {
            write!(f, "{:.1} MiB", v / (1024.0 * 1024.0))
        }
    }
}

/// Kinds of error the generator counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// socket/bind/connect failed.
    Connect,
    /// The upgrade failed (status, bad accept key, timeout, peer gone).
    Handshake,
    /// A connection ended before we asked it to (server close, protocol error, EOF).
    Closed,
    /// A reply or delivery that does not match what was sent.
    Mismatch,
    /// A read or write failed.
    Io,
}

/// Error counts and the first few messages.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    pub connect: u64,
    pub handshake: u64,
    pub closed: u64,
    pub mismatch: u64,
    pub io: u64,
    /// The first few errors in words (bounded).
    pub samples: Vec<String>,
}

/// How many error messages are kept.
const SAMPLES: usize = 5;

impl Errors {
    /// Counts an error; `detail` is only built for the first few.
    pub fn note(&mut self, kind: ErrorKind, detail: impl FnOnce() -> String) {
        let c = match kind {
            ErrorKind::Connect => &mut self.connect,
            ErrorKind::Handshake => &mut self.handshake,
            ErrorKind::Closed => &mut self.closed,
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::Io => &mut self.io,
        };
        *c += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(detail());
        }
    }

    pub fn total(&self) -> u64 {
        self.connect + self.handshake + self.closed + self.mismatch + self.io
    }

    pub fn merge(&mut self, o: &Errors) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.closed += o.closed;
        self.mismatch += o.mismatch;
        self.io += o.io;
        for s in &o.samples {
            if self.samples.len() < SAMPLES {
                self.samples.push(s.clone());
            }
        }
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.total() == 0 {
            return write!(f, "0");
        }
        write!(f, "{}", self.total())?;
        let parts = [
            ("connect", self.connect),
            ("handshake", self.handshake),
            ("closed early", self.closed),
            ("mismatch", self.mismatch),
            ("i/o", self.io),
        ];
        let list: Vec<String> =
            parts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| format!("{k} {n}")).collect();
        write!(f, " ({})", list.join(", "))?;
        for s in &self.samples {
            write!(f, "\n                  e.g. {s}")?;
        }
        Ok(())
    }
}

/// A report line: a fixed-width label and its value.
pub fn line(out: &mut String, label: &str, value: impl fmt::Display) {
    use fmt::Write as _;
    let _ = writeln!(out, "  {label:<16}{value}");
}

/// `n` events in `wall_ns` nanoseconds, per second (0 for an empty window).
pub(crate) fn per_sec(n: u64, wall_ns: u64) -> f64 {
    if wall_ns == 0 {
        0.0
    } else {
        n as f64 * 1e9 / wall_ns as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_percentiles() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=500u64 {
            a.record(v * 1000).unwrap();
        }
        for v in 501..=1000u64 {
            b.record(v * 1000).unwrap();
        }
        b.saturating_record(u64::MAX); // clamped, not lost
        let m = merge([&a, &b]);
        let l = Latency::of(&m);
        assert_eq!(l.count, 1001);
        assert!((l.p50 as f64 - 500_000.0).abs() / 500_000.0 < 0.01, "{}", l.p50);
        assert!((l.p99 as f64 - 990_000.0).abs() / 990_000.0 < 0.01, "{}", l.p99);
        assert!(l.max >= MAX_LATENCY_NS);
        assert_eq!(Latency::of(&new_histogram()).count, 0);
    }

    #[test]
    fn formatting() {
        assert_eq!(Ns(999).to_string(), "999 ns");
        assert_eq!(Ns(12_345).to_string(), "12.3 us");
        assert_eq!(Ns(1_500_000).to_string(), "1.50 ms");
        assert_eq!(Count(1_234_567).to_string(), "1,234,567");
        assert_eq!(Count(999).to_string(), "999");
        assert_eq!(Bytes(128.0).to_string(), "128 B");
        assert_eq!(Bytes(20480.0).to_string(), "20.0 KiB");
    }

    #[test]
    fn errors_bounded() {
        let mut e = Errors::default();
        for i in 0..100 {
            e.note(ErrorKind::Closed, || format!("conn {i}"));
        }
        e.note(ErrorKind::Connect, || "refused".into());
        assert_eq!((e.total(), e.closed, e.samples.len()), (101, 100, SAMPLES));
        let mut t = Errors::default();
        t.merge(&e);
        assert_eq!(t.total(), 101);
        assert!(t.to_string().starts_with("101 (connect 1, closed early 100)"));
    }
}
