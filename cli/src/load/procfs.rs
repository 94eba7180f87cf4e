//! What the kernel knows about a process: CPU time of its threads and resident memory,
//! read from `/proc`. The parsers take text so they are tested on samples.

use std::fs;
use std::io;

/// Whose CPU time and memory to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcTarget {
    /// Every thread of another process.
    Pid(u32),
    /// The threads of this process whose name (`comm`) starts with the prefix: the
    /// in-process server's workers or the generator's own threads.
    SelfThreads(&'static str),
    /// Every thread of this process.
    SelfAll,
}

impl ProcTarget {
    fn dir(&self) -> String {
        match self {
            Self::Pid(p) => format!("/proc/{p}"),
            Self::SelfThreads(_) | Self::SelfAll => "/proc/self".to_owned(),
        }
    }
}

/// The first two fields of `/proc/PID/task/TID/schedstat`: time on a CPU and time
/// runnable but waiting for one, in nanoseconds.
pub fn parse_schedstat(text: &str) -> Option<CpuSample> {
    let mut f = text.split_ascii_whitespace();
    let run_ns = f.next()?.parse().ok()?;
    let wait_ns = f.next()?.parse().ok()?;
    Some(CpuSample { run_ns, wait_ns, ..CpuSample::default() })
}

/// CPU accounting of a set of threads at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// Time on a CPU (user + system).
    pub run_ns: u64,
    /// Time runnable but waiting for a CPU: high when other work shares the cores.
    pub wait_ns: u64,
    /// User and system time from `/proc/.../stat`, in clock ticks (coarse: 10 ms).
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

/// utime and stime (fields 14 and 15, clock ticks) from `/proc/PID/stat`. The command
/// name (field 2) is in parentheses and may hold spaces or ')' itself, so fields are
/// counted from the last ')'.
pub fn parse_stat_user_sys(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut f = rest.split_ascii_whitespace().skip(11); // field 3 is the first after ')'
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` of `/proc/PID/status`, in bytes.
pub fn parse_vmrss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line["VmRSS:".len()..].trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kb * 1024)
}

/// Clock ticks per second for `/proc/PID/stat`. `sysconf(_SC_CLK_TCK)` is 100 on every
/// Linux architecture we run on; it is only the fallback when schedstat is missing.
const TICKS_PER_SEC: u64 = 100;

/// CPU time (user + system) and run-queue wait consumed so far by the target's threads.
/// Threads that exited are not counted, so read it over a window in which they live.
pub fn cpu_ns(target: &ProcTarget) -> io::Result<CpuSample> {
    let dir = format!("{}/task", target.dir());
    let mut total = CpuSample::default();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        if let ProcTarget::SelfThreads(prefix) = target {
            match fs::read_to_string(path.join("comm")) {
                Ok(c) if c.starts_with(prefix) => {}
                _ => continue,
            }
        }
        // A thread may exit between listing and reading: skip it.
        let (user, sys) = fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| parse_stat_user_sys(&s))
            .unwrap_or_default();
        let s = match fs::read_to_string(path.join("schedstat")) {
            Ok(s) => parse_schedstat(&s),
            Err(_) => Some(CpuSample {
                run_ns: (user + sys) * (1_000_000_000 / TICKS_PER_SEC),
                ..CpuSample::default()
            }),
        };
        let s = s.unwrap_or_default();
        total.run_ns += s.run_ns;
        total.wait_ns += s.wait_ns;
        total.user_ticks += user;
        total.sys_ticks += sys;
    }
    Ok(total)
}

/// Resident set size of the target's process, in bytes.
pub fn rss_bytes(target: &ProcTarget) -> io::Result<u64> {
    let text = fs::read_to_string(format!("{}/status", target.dir()))?;
    parse_vmrss(&text).ok_or_else(|| io::Error::other("no VmRSS line in /proc status"))
}

/// Whether a process exists (its `/proc` directory does).
pub fn exists(pid: u32) -> bool {
    fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Most file descriptors this process may hold (RLIMIT_NOFILE soft limit).
pub fn fd_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Two CPU readings around a window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuWindow {
    /// CPU time used in the window, nanoseconds.
    pub cpu_ns: u64,
    /// Time the threads waited for a CPU in the window, nanoseconds.
    pub wait_ns: u64,
    /// Wall time of the window, nanoseconds.
    pub wall_ns: u64,
    /// User and system clock ticks in the window.
    pub user_ticks: u64,
    pub sys_ticks: u64,
}

impl CpuWindow {
    /// CPU use as a percentage of one core.
    pub fn percent(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.cpu_ns as f64 * 100.0 / self.wall_ns as f64
    }

    /// The kernel's share of the CPU time, in percent (from clock ticks; `None` if too
    /// few ticks to say).
    pub fn kernel_percent(&self) -> Option<f64> {
        let total = self.user_ticks + self.sys_ticks;
        (total >= 10).then(|| self.sys_ticks as f64 * 100.0 / total as f64)
    }

    /// Run-queue wait as a percentage of the window: CPU taken by something else.
    pub fn wait_percent(&self) -> f64 {
        if self.wall_ns == 0 {
            return 0.0;
        }
        self.wait_ns as f64 * 100.0 / self.wall_ns as f64
    }

    /// CPU time per unit of work done in the window, nanoseconds (0 without work).
    pub fn per(&self, work: u64) -> u64 {
        self.cpu_ns.checked_div(work).unwrap_or(0)
    }

    /// `per` (CPU ns per unit of work) split into kernel and user time by the share of
    /// the clock ticks; `None` when too few ticks to say.
    pub fn split(&self, per: u64) -> Option<Split> {
        let kernel_percent = self.kernel_percent()?;
        let kernel_ns = (per as f64 * kernel_percent / 100.0) as u64;
        Some(Split { kernel_percent, kernel_ns, user_ns: per.saturating_sub(kernel_ns) })
    }
}

/// CPU time per unit of work split into kernel and user time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// The kernel's share of the CPU time, percent (from clock ticks).
    pub kernel_percent: f64,
    /// Kernel time per unit, nanoseconds.
    pub kernel_ns: u64,
    /// User time per unit, nanoseconds.
    pub user_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat() {
        let s = parse_schedstat("123456789 5000 42\n").unwrap();
        assert_eq!((s.run_ns, s.wait_ns), (123_456_789, 5000));
        assert_eq!(parse_schedstat(""), None);
        assert_eq!(parse_schedstat("1"), None);
        assert_eq!(parse_schedstat("x 1 2"), None);
    }

    #[test]
    fn stat_with_odd_comm() {
        let s = "4242 (ring wire) w)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 3 0 \
                 100 1000000 500 18446744073709551615";
        let (u, k) = parse_stat_user_sys(s).unwrap();
        assert_eq!(u + k, 325);
        let w = CpuWindow { user_ticks: 8, sys_ticks: 92, ..CpuWindow::default() };
        assert_eq!(w.kernel_percent(), Some(92.0));
        assert_eq!(CpuWindow { user_ticks: 1, ..CpuWindow::default() }.kernel_percent(), None);
        assert_eq!(parse_stat_user_sys("4242 (x) S 1"), None);
        assert_eq!(parse_stat_user_sys("no paren"), None);
    }

    #[test]
    fn vmrss() {
        let s = "Name:\tringwire\nVmPeak:\t  10000 kB\nVmRSS:\t    5120 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss(s), Some(5120 * 1024));
        assert_eq!(parse_vmrss("Name: x\n"), None);
        assert_eq!(parse_vmrss("VmRSS: lots kB\n"), None);
    }

    #[test]
    fn reads_self() {
        assert!(cpu_ns(&ProcTarget::SelfAll).is_ok());
        assert!(rss_bytes(&ProcTarget::SelfAll).unwrap() > 0);
        assert!(exists(std::process::id()));
        let w = CpuWindow { cpu_ns: 500, wait_ns: 100, wall_ns: 1000, ..CpuWindow::default() };
        assert_eq!((w.percent(), w.wait_percent()), (50.0, 10.0));
    }
}
