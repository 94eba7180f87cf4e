#!/usr/bin/env bash
# The protocol core and the codecs must stay free of I/O: no io-uring, libc, or async
# runtime among their normal dependencies.
set -euo pipefail
fail=0
for crate in ringwire-frame ringwire-codec; do
    tree=$(cargo tree -p "$crate" -e normal --prefix none --all-features --locked | awk '{print $1}' | sort -u)
    for banned in io-uring libc tokio async-std smol monoio glommio mio tokio-uring; do
        if grep -qx "$banned" <<<"$tree"; then
            echo "error: $crate depends on $banned (cargo tree -p $crate -e normal -i $banned)"
            fail=1
        fi
    done
    echo "$crate: $(wc -l <<<"$tree") crates in its normal dependency tree, none of them I/O"
done
exit $fail
