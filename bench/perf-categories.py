#!/usr/bin/env python3
"""Where a server's CPU goes, by kind of work, from `perf record` profiles.

    bench/perf-categories.py [--per-message NS,NS,...] A.data B.data ...
    bench/perf-categories.py --symbols NAME=REGEX[,NAME=REGEX...] A.data B.data ...

Reads each profile with `perf report --no-children --sort dso,sym` and sums the samples
of each symbol into a category: the kernel's network stack, io_uring, system call entry
and the VFS (epoll included), the scheduler, timers and the clock, slab and page
allocation, locks / softirq enabling / RCU, and user space (the program, libc). Idle
(the halt of an idle CPU, when the profile was taken per CPU with `-C`) is left out, so
the shares are of the CPU time the profiled work used. With `--per-message` (one figure
per profile: that run's CPU time per message in ns), each share is also given in ns per
message. `bench/profile-echo.sh` takes the profiles. Symbols that fit no category are
summed as "other", the largest listed. With `--symbols`, each NAME is instead the share
of the samples (idle left out) in the kernel symbols that REGEX matches whole: what the
code behind one setting costs, an upper bound on what changing it could save.
"""
import re
import subprocess
import sys

IDLE = re.compile(r"(pv_native_safe_halt|default_idle|do_idle|call_cpuidle|cpuidle|"
                  r"cpu_startup_entry|arch_cpu_idle|native_safe_halt|acpi_idle|intel_idle|"
                  r"poll_idle|start_secondary|tick_nohz_idle|menu_)")
RULES = [
    ("io_uring", r"(__)?io_|io_uring|llist_reverse_order"),
    ("network stack", r"(__)?(tcp|ip_|ipv4|inet|skb|sk_|sock|net_|netif|dev_|loopback|"
     r"process_backlog|kfree_skb|consume_skb|napi|bbr|_copy_|copy_|validate_xmit|eth_|nf_|"
     r"raw_v4|raw_local|ip4|alloc_skb|build_skb|release_sock|lock_sock|dst_|__sys_sendto|"
     r"__sys_recvfrom|___?sys_sendmsg|____sys_sendmsg|__sys_sendmsg|import_ubuf|"
     r"__check_object_size|__virt_addr_valid|is_vmalloc_addr|handle_softirqs|do_softirq|"
     r"bpf_lsm_socket|bpf_skops|security_socket)"),
    ("syscalls, VFS, epoll", r"(entry_SYSCALL|do_syscall|syscall_|__x64_sys|x64_sys|__do_sys|"
     r"fdget|fput|__fget|fget|exit_to_user|arch_exit|__rseq|rseq|fpregs|restore_fpregs|"
     r"switch_fpu|ksys_|vfs_|rw_verify|__?fsnotify|security_|apparmor|aa_|__f_unlock|file_|"
     r"do_epoll|ep_|epoll|srso|__x86|__put_user|__get_user|get_timespec|_copy_to_user|"
     r"_copy_from_user|select_estimate)"),
    ("scheduler, wake-ups", r"(__)?(schedule|pick_|enqueue|dequeue|update_|try_to_wake|ttwu|"
     r"select_task|finish_task|__switch|switch_|psi_|set_next|put_prev|check_preempt|resched|"
     r"wake_up|__wake|autoremove|default_wake|prepare_to_wait|finish_wait|cpuacct|cgroup|"
     r"account|sched_|__sched|reweight|place_entity|avg_vruntime|__calc_delta|hrtick|"
     r"vruntime|wait_woken|woken_wake|task_|raw_spin_rq|newidle|nohz|__enqueue|__dequeue|"
     r"rb_|_find_|cpus_share)"),
    ("timers, clock", r"(__)?(hrtimer|_hrtimer|schedule_hrtimeout|ktime|read_tsc|clockevents|"
     r"lapic|timerqueue|run_hrtimer|tick_|__mod_timer|mod_timer|timer_|__usecs_to_jiffies|"
     r"native_write_msr|jiffies)"),
    ("slab, pages", r"(__)?(slab|_slab|kmem|kfree|kmalloc|___slab|memcg|obj_cgroup|"
     r"mod_objcg|refill_obj|page_frag|skb_page_frag|__page|free_|alloc_pages|__alloc|"
     r"get_page|put_page|folio|allocate_slab|xa_|xas_|damon)"),
    ("locks, softirq enable, RCU", r"(_raw_spin|raw_spin|native_queued|queued_spin|"
     r"__pv_queued|__raw_callee|__local_bh|local_bh|_raw_read|_raw_write|__rcu|rcu_)"),
]
RULES = [(name, re.compile(rx)) for name, rx in RULES]


def report(path):
    return subprocess.run(
        ["perf", "report", "-q", "-i", path, "--no-children", "--sort", "dso,sym",
         "--percent-limit", "0"],
        capture_output=True, text=True, check=True).stdout


def samples(path):
    """(share, kind, dso, symbol) of every symbol of the profile, idle left out, shares
    of what is left."""
    rows = []
    for line in report(path).splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m[1]), m[2], m[3], m[4]
        if kind == "k" and IDLE.match(sym):
            continue
        rows.append((pct, kind, dso, sym))
    busy = sum(r[0] for r in rows) or 1.0
    return [(100.0 * pct / busy, kind, dso, sym) for pct, kind, dso, sym in rows]


def categories(path):
    cats, other = {}, {}
    for pct, kind, dso, sym in samples(path):
        if kind != "k":
            name = "user: libc" if "libc" in dso else "user: the program"
        else:
            name = next((n for n, rx in RULES if rx.match(sym)), None)
        if name is None:
            other[sym] = other.get(sym, 0.0) + pct
            name = "other"
        cats[name] = cats.get(name, 0.0) + pct
    return cats, other


def symbols(spec, paths):
    groups = [(name, re.compile(rx)) for name, rx in (g.split("=", 1) for g in spec.split(","))]
    rows = [samples(p) for p in paths]
    heads = [p.rsplit("/", 1)[-1].removesuffix(".data") for p in paths]
    print("| symbols | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(paths))
    for name, rx in groups:
        cells = [sum(pct for pct, kind, _, sym in r if kind == "k" and rx.fullmatch(sym))
                 for r in rows]
        print(f"| {name} | " + " | ".join(f"{c:.2f}%" for c in cells) + " |")


def main():
    args = sys.argv[1:]
    if args[:1] == ["--symbols"] and len(args) > 2:
        symbols(args[1], args[2:])
        return
    per = None
    if args[:1] == ["--per-message"]:
        per = [float(x) for x in args[1].split(",")]
        args = args[2:]
    if not args or (per and len(per) != len(args)):
        sys.exit(__doc__)
    res = [categories(p) for p in args]
    names = sorted({k for c, _ in res for k in c}, key=lambda k: (k == "other", -max(c.get(k, 0) for c, _ in res)))
    heads = [p.rsplit("/", 1)[-1].removesuffix(".data") for p in args]
    print("| category | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(args))
    for k in names:
        cells = []
        for i, (c, _) in enumerate(res):
            v = c.get(k, 0.0)
            cells.append(f"{v:.1f}%" + (f" ({v * per[i] / 100:.0f} ns)" if per else ""))
        print(f"| {k} | " + " | ".join(cells) + " |")
    print()
    for h, (_, other) in zip(heads, res):
        top = sorted(other.items(), key=lambda kv: -kv[1])[:6]
        print(f"other in {h}: " + ", ".join(f"{s} {v:.2f}%" for s, v in top))


if __name__ == "__main__":
    main()
