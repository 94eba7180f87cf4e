#!/usr/bin/env bash
# Miri and AddressSanitizer over the code that `unsafe` is in or leans on (the standard:
# "Miri or sanitizers where they can run"; docs/ARCHITECTURE.md, "Where `unsafe` lives").
#
# - Miri (undefined behaviour: out-of-bounds or dangling accesses, aliasing, data races):
#   ringwire-frame's unit tests and its connection tests (no `unsafe` of its own, but
#   `bytes`, `simdutf8`, `httparse` and zlib-rs under it, and the in-place unmasking and
#   zero-copy sharing of a `RecvBuffer`), and the engine's tests that make no syscall Miri
#   lacks: the provided-buffer ring's bookkeeping (`sys::bufring`) over a ring that is
#   mapped but registered with no io_uring (handing buffers out and back, lending
#   messages out of them, their drops on other threads: that test under several
#   schedules), the slab and the timer wheel. Isolation stays on: no test here reads the
#   host. A few tests too slow for Miri, or that read files, carry
#   `#[cfg_attr(miri, ignore = "why")]`. Miri cannot make io_uring or epoll syscalls.
# - AddressSanitizer, with LeakSanitizer (heap and stack overflows, use after free,
#   leaks): every unit test of the engine (the buffer ring registered with a real
#   io_uring, the outbox's mapped files, TLS, the worker under virtual time) and the
#   integration tests that drive the real io_uring and epoll drivers over loopback
#   sockets: accept, multishot receive into the buffer ring and lent messages, sends
#   (partial, vectored, backpressure), cancel and close, connect and direct
#   descriptors, several rings per worker, fsync through the ring, shutdown.
#   ASan does not see the kernel's writes into ring memory, nor overruns inside the
#   buffer pool's mapping (mmap memory is not instrumented).
#
# A pinned nightly runs both (Miri and -Zsanitizer need one); it is installed here if
# missing (RINGWIRE_NIGHTLY picks another), and the step fails if it cannot be. The
# builds go to a target dir of their own, ${CARGO_TARGET_DIR:-target}/sanitizers (.ci/run
# removes it after this step). Miri (one core) runs while the ASan tests build; the ASan
# tests run once both are done, so timeouts in them see an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

toolchain="${RINGWIRE_NIGHTLY:-nightly-2026-05-20}"
have_toolchain() {
    cargo "+$toolchain" miri --version >/dev/null 2>&1 &&
        [ -d "$(rustc "+$toolchain" --print sysroot)/lib/rustlib/src/rust/library" ]
}
if ! have_toolchain; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "error: no rustup to install $toolchain with miri and rust-src" >&2
        exit 1
    fi
    rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src
fi
if ! have_toolchain; then
    echo "error: $toolchain with miri and rust-src could not be installed" >&2
    exit 1
fi
cargo "+$toolchain" miri --version
host=$(rustc "+$toolchain" -vV | sed -n 's/^host: //p')

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/sanitizers"
mkdir -p "$CARGO_TARGET_DIR"
miri_log="$CARGO_TARGET_DIR/miri.log"

miri() {
    set -euo pipefail
    cargo "+$toolchain" miri setup
    cargo "+$toolchain" miri test --locked -p ringwire-frame --lib --test connection
    # The wheel's three slowest tests take minutes under Miri (safe code, like the rest
    # of the wheel and the slab).
    cargo "+$toolchain" miri test --locked -p ringwire --lib -- \
        sys::bufring:: slab:: wheel:: \
        --skip removals_and_refiling_through_cascades --skip random_schedule_matches \
        --skip jump_far_ahead_fires_everything_due
    MIRIFLAGS="${MIRIFLAGS:-} -Zmiri-many-seeds=0..8" cargo "+$toolchain" miri test --locked \
        -p ringwire --lib -- sys::bufring::tests::messages_dropped_on_other_threads
}

# The integration tests that drive real sockets through the drivers (both backends each).
asan_tests=(
    --test engine_smoke --test engine_messages --test engine_close --test engine_rings
    --test engine_limits --test engine_backpressure --test engine_lifecycle
    --test engine_failures --test engine_fd_leak --test client_connect --test outbox_client
)
asan() {
    RUSTFLAGS="-Zsanitizer=address" \
        cargo "+$toolchain" test --locked --target "$host" -p ringwire --lib \
        -p ringwire-tests "${asan_tests[@]}" "$@"
}

start=$SECONDS
echo "--- Miri (log: $miri_log), beside the ASan build"
# In a process group of its own (set -m), so that an interrupted run ends it whole.
set -m
miri >"$miri_log" 2>&1 &
miri_pid=$!
set +m
trap 'kill -- "-$miri_pid" 2>/dev/null || true' EXIT
build_ok=0
asan --no-run || build_ok=$?
miri_ok=0
wait "$miri_pid" || miri_ok=$?
grep -E '^(test result|     Running|error|warning: .*(leak|unsupported))' "$miri_log" || true
if [ "$miri_ok" != 0 ]; then
    tail -n 80 "$miri_log"
    echo "error: Miri failed (full log: $miri_log)" >&2
    exit 1
fi
[ "$build_ok" = 0 ] || exit "$build_ok"
echo "--- Miri and the ASan build done in $((SECONDS - start)) s"

echo "--- AddressSanitizer"
# A leak report fails the run (LeakSanitizer's exit code). These tests report none, so
# there is no suppressions file. The one intentional leak (a driver dropped with
# operations still in flight keeps the memory they use, docs/ARCHITECTURE.md) would show
# only as its boxed send ops: its buffer ring is mmap memory, which LeakSanitizer does
# not track.
t=$SECONDS
ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1" asan
echo "--- AddressSanitizer tests done in $((SECONDS - t)) s"
