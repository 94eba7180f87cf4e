use super::*;
use bytes::Bytes;
use ringwire_frame::RecvBuffer;

/// An io_uring to register rings with, if this kernel lets us make one; never under Miri,
/// which cannot make the syscalls. The tests of the bookkeeping use
/// [`BufRing::unregistered`] rings instead, in both modes whatever the kernel.
fn kernel() -> Option<io_uring::IoUring> {
    if cfg!(miri) {
        return None;
    }
    io_uring::IoUring::new(8).ok()
}

/// Both modes: buffers consumed whole, and incrementally (`IOU_PBUF_RING_INC`).
const MODES: [bool; 2] = [false, true];

#[test]
#[cfg_attr(miri, ignore = "registers rings with an io_uring: syscalls Miri cannot make")]
fn buffers_go_into_circulation_on_demand() {
    let Some(ring) = kernel() else { return }; // no io_uring here
    let mut b = BufRing::new(&ring.submitter(), 256, 4096, 3, 64).unwrap();
    let first = if b.incremental() { incremental_initial(4096) } else { 64 };
    assert_eq!((b.provided(), b.tail), (first, first));
    let mut n = first;
    while n < 256 {
        assert!(b.grow());
        n *= 2;
        assert_eq!((b.provided(), b.tail), (n, n));
    }
    assert!(!b.grow(), "all 256 in circulation");
    assert_eq!(b.tail, 256u16);
    let small = BufRing::new(&ring.submitter(), 2, 4096, 4, 64).unwrap();
    assert_eq!(small.provided(), 2);
    let all = BufRing::new(&ring.submitter(), 128, 4096, 5, 128).unwrap();
    assert_eq!(all.provided(), if all.incremental() { incremental_initial(4096) } else { 128 });
    let large = BufRing::new(&ring.submitter(), 128, 65536, 6, 128).unwrap();
    assert_eq!(large.provided(), if large.incremental() { 1 } else { 128 }, "64 KiB at first");
}

#[test]
fn without_incremental_consumption_buffers_are_cut_to_16_kib() {
    assert_eq!(whole_buffer_geometry(256, 65536), (1024, 16384));
    assert_eq!(whole_buffer_geometry(1024, 16384), (1024, 16384));
    assert_eq!(whole_buffer_geometry(16384, 65536), (32768, 32768), "at most 32768");
    assert_eq!(whole_buffer_geometry(8, 3 * 65536), (128, 12288));
    assert_eq!(whole_buffer_geometry(8, 17_001), (8, 17_001), "an odd size stays");
    let mut b = BufRing::unregistered(256, 65536, 4, false).unwrap();
    assert!(!b.incremental());
    assert_eq!((b.entries, b.buf_size, b.provided()), (1024, 16384, 4));
    while b.grow() {}
    assert_eq!(b.provided(), 1024);
    // The last buffer lies at the end of the same 16 MiB.
    let mut r = received(&mut b, 1023, 16384, 9);
    assert_eq!(r.bytes_from(0).len(), 16384);
    done(&mut b, 1023, 16384, false);
    let Some(ring) = kernel() else { return };
    let b = BufRing::with_mode(&ring.submitter(), 256, 65536, 12, 4, false).unwrap();
    assert!(!b.incremental(), "registered without incremental consumption when asked");
    assert_eq!((b.entries, b.buf_size, b.provided()), (1024, 16384, 4));
    if kernel_has_incremental(&ring.submitter(), 13) {
        let b = BufRing::new(&ring.submitter(), 256, 65536, 13, 4).unwrap();
        assert!(b.incremental());
        assert_eq!((b.entries, b.buf_size), (256, 65536));
    }
}

#[test]
fn a_burst_of_receives_without_buffers_grows_the_circulation_once() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(256, 4096, 2, incremental).unwrap();
        let first = b.provided();
        assert!(!b.grow_if_short(), "no receive was short");
        for _ in 0..100 {
            b.note_short();
        }
        assert!(b.grow_if_short());
        assert_eq!(b.provided(), first * 2, "doubled once for the whole burst");
        assert!(!b.grow_if_short(), "nothing short since");
        assert_eq!(b.provided(), first * 2);
    }
}

#[test]
fn incremental_consumption_reads_on_from_the_last_offset() {
    let mut b = BufRing::unregistered(8, 4096, 8, true).unwrap();
    let base = |b: &mut BufRing, bid: u16| received(b, bid, 1, 0).start;
    assert_eq!(base(&mut b, 3), 3 * 4096);
    done(&mut b, 3, 100, true); // the kernel goes on filling buffer 3
    assert_eq!(base(&mut b, 3), 3 * 4096 + 100);
    done(&mut b, 3, 50, true);
    assert_eq!(base(&mut b, 3), 3 * 4096 + 150);
    let tail = b.tail;
    done(&mut b, 3, 10, false); // done: back to the ring, from its start
    assert_eq!((base(&mut b, 3), b.tail), (3 * 4096, tail.wrapping_add(1)));
    assert_eq!(received(&mut b, 2, 10_000, 0).len(), 4096, "clamped to the buffer");
}

/// Fills `len` bytes of buffer `bid` as a receive would (no kernel op uses the group
/// in these tests) and returns the region.
fn received(b: &mut BufRing, bid: u16, len: usize, byte: u8) -> Region<'_> {
    // SAFETY: no operation selects from the group of any ring in these tests, so the
    // kernel never owns a buffer's bytes. Each call stands for one completion: the tests
    // release it (`done`) before the next region of the same buffer, or (the offset
    // checks) drop the region at once without lending anything out of it.
    let mut r = unsafe { b.region(bid, len) };
    r.bytes_from(0).fill(byte);
    r
}

/// Ends the pretend completion of buffer `bid` that the last `received` of it stood for.
fn done(b: &mut BufRing, bid: u16, len: usize, more: bool) {
    // SAFETY: no operation selects from the group of any ring in these tests, so the
    // kernel never owns a buffer; each test releases each pretend completion once, in
    // order, with `more` false only at the last one of a buffer, after its region is gone
    // (it borrowed `b`).
    unsafe { b.release(bid, len, more) };
}

#[test]
fn a_buffer_with_lent_messages_returns_to_the_ring_after_the_last_is_dropped() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 16, incremental).unwrap();
        let mut r = received(&mut b, 1, 10_000, 7);
        assert!(r.share(0..LEND_MIN - 1).is_none(), "small messages are copied");
        let m1 = r.share(0..4000).expect("lent");
        let m2 = r.share(5000..9000).expect("lent");
        assert!(r.share(4000..4100).is_none(), "only past what was shared");
        assert_eq!(r.bytes_from(0).len(), 1000, "no mutable access to lent bytes");
        assert_eq!((&m1[..4000], m1.len()), (&[7u8; 4000][..], 4000));
        assert_eq!(b.lent(), 1);
        let tail = b.tail;
        done(&mut b, 1, 10_000, false);
        b.collect();
        assert_eq!(b.tail, tail, "kept out of the ring while lent");
        drop(m1);
        b.collect();
        assert_eq!(b.tail, tail, "one lent message still alive");
        // Dropped on another thread: the buffer comes back through the queue.
        std::thread::spawn(move || drop(m2)).join().unwrap();
        b.collect();
        assert_eq!((b.tail, b.lent()), (tail.wrapping_add(1), 0), "back in the ring");
        b.collect();
        assert_eq!(b.tail, tail.wrapping_add(1), "pushed once");
    }
}

/// The last messages of a buffer dropped on two other threads at once, while the ring's
/// thread collects: every buffer goes back to the ring exactly once, whichever drop is
/// the last and however it interleaves with `collect` (the SeqCst pairing in
/// `Lent::drop` and `BufRing::collect`; Miri runs it under several schedules).
#[test]
fn messages_dropped_on_other_threads_while_collecting_return_each_buffer_once() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 16, incremental).unwrap();
        while b.grow() {}
        // Two messages out of each of four buffers (the most that may be lent of 16).
        let mut kept = Vec::new();
        for bid in 0..4 {
            let mut r = received(&mut b, bid, 8192, bid as u8);
            kept.push(r.share(0..4096).expect("lent"));
            kept.push(r.share(4096..8192).expect("lent"));
            done(&mut b, bid, 8192, false);
        }
        assert_eq!(b.lent(), 4);
        let tail = b.tail;
        let (even, odd): (Vec<_>, Vec<_>) =
            kept.into_iter().enumerate().partition(|m| m.0 % 2 == 0);
        let dropper = |ms: Vec<(usize, Bytes)>| {
            std::thread::spawn(move || {
                for (i, m) in ms {
                    let ends = (usize::from(m[0]), usize::from(m[m.len() - 1]));
                    assert_eq!(ends, (i / 2, i / 2), "intact until dropped");
                }
            })
        };
        let (t1, t2) = (dropper(even), dropper(odd));
        while !(t1.is_finished() && t2.is_finished()) {
            b.collect();
            std::thread::yield_now();
        }
        t1.join().unwrap();
        t2.join().unwrap();
        b.collect();
        assert_eq!((b.tail, b.lent()), (tail.wrapping_add(4), 0), "each pushed once");
        b.collect();
        assert_eq!(b.tail, tail.wrapping_add(4), "and only once");
    }
}

#[test]
fn a_lent_buffer_dropped_before_the_kernel_is_done_goes_back_once() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 16, incremental).unwrap();
        let m = received(&mut b, 2, 4096, 1).share(0..4096).expect("lent");
        done(&mut b, 2, 4096, incremental); // incremental: the kernel goes on
        drop(m);
        let tail = b.tail;
        b.collect();
        if incremental {
            assert_eq!((b.tail, b.lent()), (tail, 0), "not the ring's yet: the kernel fills it");
            let m = received(&mut b, 2, 4096, 2).share(0..4096).expect("lent again");
            assert_eq!(m[0], 2);
            done(&mut b, 2, 4096, false);
            assert_eq!(b.tail, tail, "kept while lent");
            drop(m);
            b.collect();
        }
        assert_eq!(
            (b.tail, b.lent()),
            (tail.wrapping_add(1), 0),
            "pushed once, when both were done"
        );
    }
}

#[test]
fn lending_stops_at_a_quarter_of_the_buffers_in_circulation() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 16, incremental).unwrap();
        while b.grow() {}
        let mut kept = Vec::new();
        for bid in 0..16 {
            if let Some(m) = received(&mut b, bid, 4096, 3).share(0..4096) {
                kept.push(m);
            }
            done(&mut b, bid, 4096, false);
        }
        assert_eq!((kept.len(), b.lent()), (4, 4));
        assert!(!b.grow_if_short(), "all 16 already in circulation");
        let tail = b.tail;
        drop(kept);
        b.collect();
        assert_eq!((b.tail, b.lent()), (tail.wrapping_add(4), 0));
    }
}

#[test]
fn lending_at_the_cap_grows_the_circulation() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 4, incremental).unwrap();
        assert_eq!(b.provided(), 4);
        let kept = received(&mut b, 0, 4096, 3).share(0..4096).expect("lent");
        done(&mut b, 0, 4096, false);
        assert!(!b.grow_if_short(), "below the cap");
        let copied = received(&mut b, 1, 4096, 4).share(0..4096);
        done(&mut b, 1, 4096, false);
        assert!(copied.is_none(), "one of four buffers is lent: the cap");
        assert!(b.grow_if_short());
        assert_eq!(b.provided(), 8);
        let lent = received(&mut b, 2, 4096, 5).share(0..4096);
        assert!(lent.is_some(), "two of eight may be lent");
        drop((kept, lent));
    }
}

#[test]
fn lent_messages_outlive_the_ring() {
    for incremental in MODES {
        let mut b = BufRing::unregistered(16, 16384, 16, incremental).unwrap();
        let m = received(&mut b, 0, 3000, 9).share(0..3000).expect("lent");
        drop(b);
        assert!(m.iter().all(|&x| x == 9), "the mapping lives while a message does");
    }
}
