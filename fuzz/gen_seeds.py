#!/usr/bin/env python3
"""Writes the committed fuzz seeds under fuzz/seeds/<target>/.

Run from anywhere: python3 fuzz/gen_seeds.py. It rewrites only the files it names; the
seeds are committed, and frame/tests/fuzz_seeds.rs replays them on stable.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 §5.7's masking key


def frame(op, payload=b"", fin=True, rsv=0, mask=None, form=None):
    """One frame; `form` forces the 16-bit (126) or 64-bit (127) length field."""
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload)
    mbit = 0x80 if mask else 0
    if form is None:
        form = 0 if n <= 125 else (126 if n <= 0xFFFF else 127)
    if form == 0:
        head = bytes([b0, mbit | n])
    elif form == 126:
        head = bytes([b0, mbit | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, mbit | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def close(code, reason=b"", mask=None):
    return frame(0x8, struct.pack(">H", code) + reason, mask=mask)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# frame_header: RFC 6455 §5.7's examples and the length-field edges.
H = "frame_header"
write(H, "rfc-unmasked-hello", frame(0x1, b"Hello"))
write(H, "rfc-masked-hello", frame(0x1, b"Hello", mask=KEY))
write(H, "rfc-fragment-first", frame(0x1, b"Hel", fin=False))
write(H, "rfc-fragment-last", frame(0x0, b"lo"))
write(H, "rfc-unmasked-ping", frame(0x9, b"Hello"))
write(H, "rfc-masked-pong", frame(0xA, b"Hello", mask=KEY))
write(H, "rfc-256-binary", frame(0x2, bytes(256))[:4])
write(H, "rfc-64k-binary", bytes([0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]))
write(H, "len64-masked", bytes([0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]) + KEY)
write(H, "len64-msb-set", bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1]))
write(H, "len16-non-minimal", frame(0x1, b"Hi", form=126))
write(H, "truncated-len16", bytes([0x82, 0x7E, 0x01]))
write(H, "rsv-and-reserved-opcode", bytes([0xF3, 0x00]))
write(H, "close-masked", close(1000, b"bye", mask=KEY))

# handshake_request: RFC 6455 §1.2's request and variations.
RFC_REQ = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
R = "handshake_request"
write(R, "rfc-request", RFC_REQ)
write(R, "rfc-request-then-frame", RFC_REQ + frame(0x1, b"Hello", mask=KEY))
write(R, "rfc-request-partial", RFC_REQ[:60])
write(R, "version-8", RFC_REQ.replace(b"Version: 13", b"Version: 8"))
write(R, "post", RFC_REQ.replace(b"GET", b"POST"))
write(R, "http10", RFC_REQ.replace(b"HTTP/1.1", b"HTTP/1.0"))
write(R, "short-key", RFC_REQ.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"dGhlIHNhbXBsZQ=="))
write(R, "token-lists", RFC_REQ.replace(
    b"Upgrade: websocket\r\nConnection: Upgrade",
    b"upgrade: WebSocket\r\nconnection: keep-alive, UPGRADE"))
write(R, "no-host", RFC_REQ.replace(b"Host: server.example.com\r\n", b""))

# handshake_response: answers to ClientRequest::new("server.example.com", "/chat",
# *b"the sample nonce").protocol("chat") (see fuzz/checks.rs).
OK = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
)
S = "handshake_response"
write(S, "rfc-101", OK + b"\r\n")
write(S, "rfc-101-chat", OK + b"Sec-WebSocket-Protocol: chat\r\n\r\n")
write(S, "101-then-frame", OK + b"\r\n" + frame(0x1, b"Hello"))
write(S, "101-partial", OK)
write(S, "bad-accept", OK.replace(b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", b"AAAA") + b"\r\n")
write(S, "unoffered-protocol", OK + b"Sec-WebSocket-Protocol: superchat\r\n\r\n")
write(S, "extension", OK + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
write(S, "403", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")

# connection_*: the first byte picks the read sizes (see fuzz/checks.rs), the rest is
# the stream of frames. The server gets masked frames, the client unmasked ones.
for target, mask in (("connection_server", KEY), ("connection_client", None)):
    def f(op, payload=b"", **kw):
        return frame(op, payload, mask=kw.pop("mask", mask), **kw)

    def c(code, reason=b""):
        return close(code, reason, mask=mask)

    write(target, "hello-close", b"\xff" + f(0x1, b"Hello") + c(1000))
    write(target, "hello-bytewise", b"\x00" + f(0x1, b"Hello") + c(1000))
    write(target, "fragmented-with-ping", b"\x06" + f(0x1, b"Hel", fin=False)
          + f(0x9, b"ping") + f(0x0, b"lo") + c(1000, b"done"))
    write(target, "binary-300", b"\x20" + f(0x2, bytes(range(256)) + bytes(44)) + c(1001))
    write(target, "ten-pings", b"\x0d" + b"".join(f(0x9, b"p%d" % i) for i in range(10)))
    write(target, "invalid-utf8-fail-fast", b"\x03" + f(0x1, "κόσμε".encode(), fin=False)
          + f(0x0, b"\xf4\x90\x80\x80", fin=False))
    write(target, "rsv1-text", b"\xff" + f(0x1, b"x", rsv=4))
    write(target, "reserved-opcode", b"\xff" + f(0x1, b"ok") + f(0x3, b"x"))
    write(target, "close-then-garbage", b"\x01" + c(1000) + b"\xff\xff\xff\xff")
    write(target, "close-invalid-code", b"\xff" + c(1005))
    write(target, "close-one-byte", b"\xff" + f(0x8, b"\x03"))
    write(target, "ping-126", b"\xff" + f(0x9, bytes(126)))
    write(target, "over-max-frame", b"\x40" + f(0x2, bytes(5000)))
    write(target, "continuation-without-start", b"\xff" + f(0x0, b"x"))
    write(target, "wrong-masking", b"\xff" + f(0x1, b"x", mask=None if mask else KEY))
    # Events in arrival order: messages, then the end, in one read; each echo must go
    # out before the close frame (fuzz/checks.rs).
    write(target, "messages-then-close", b"\xff" + f(0x1, b"one") + f(0x2, bytes(150))
          + f(0x9, b"p") + c(1000) + f(0x1, b"after"))
    write(target, "message-then-rsv", b"\xff" + f(0x1, b"ok") + f(0x1, b"bad", rsv=2)
          + f(0x1, b"never"))
    write(target, "empty-fragments", b"\x02" + f(0x1, b"", fin=False) + f(0x0, b"", fin=False)
          + f(0x0, b""))


# ---- the outbox's receipts table and wire (fuzz/checks_outbox.rs) --------------------

def crc32c(data):
    """CRC32C (Castagnoli), bitwise: enough for a few seeds."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def receipts_half(stream, hwm, doubt, seq):
    body = struct.pack("<Q", stream) + hwm.to_bytes(16, "little") \
        + struct.pack("<I", (seq & 0x7FFFFFFF) | (0x80000000 if doubt else 0))
    return body + struct.pack("<I", crc32c(body))


def receipts_image(slots, halves):
    """A table of `slots` slots; `halves` maps (slot, 0 or 1) to a half's bytes."""
    head = b"RWRCPTS1" + struct.pack("<HH", 1, 0) + struct.pack("<I", slots) + bytes(44)
    img = bytearray(head + struct.pack("<I", crc32c(head)) + bytes(64 * slots))
    for (slot, h), data in halves.items():
        at = 64 + 64 * slot + 32 * h
        img[at:at + 32] = data
    return bytes(img)


target = "outbox_receipts"
write(target, "two-streams", receipts_image(4, {
    (0, 0): receipts_half(7, 9, False, 1), (0, 1): receipts_half(7, 12, True, 2),
    (2, 1): receipts_half(8, 1 << 100, False, 5)}))
write(target, "torn-newest-half", receipts_image(2, {
    (0, 0): receipts_half(7, 9, False, 3),
    (0, 1): receipts_half(7, 10, True, 4)[:20] + bytes(12)}))
write(target, "one-stream-in-two-slots", receipts_image(3, {
    (0, 0): receipts_half(5, 40, False, 1), (1, 0): receipts_half(5, 41, False, 1)}))
write(target, "wrapped-numbering", receipts_image(1, {
    (0, 0): receipts_half(3, 8, False, 0x7FFFFFFF), (0, 1): receipts_half(3, 9, False, 0)}))
write(target, "bad-header-crc", b"RWRCPTS1" + bytes(120))
write(target, "slot-count-too-large", receipts_image(1, {})[:12] + b"\xff\xff\xff\xff"
      + receipts_image(1, {})[16:])

target = "outbox_wire"
write(target, "offer", b"x-ringwire-ack; stream=42")
write(target, "offer-quoted", b"X-Ringwire-Ack;stream=\"18446744073709551615\"")
write(target, "offer-two-params", b"x-ringwire-ack; stream=1; stream=2")
write(target, "ack-tag", b"\xac" + (123456789).to_bytes(16, "little"))
write(target, "durable-tag", b"\xd5" + bytes(range(16)))
write(target, "heartbeat-payload", bytes(12))

# permessage-deflate (RFC 7692): offers for the negotiation, and streams with compressed
# frames for a server connection that agreed it. Compressed with Python's zlib (raw
# DEFLATE, sync flush, the 00 00 FF FF tail taken off), not the crate's zlib-rs.
import zlib  # noqa: E402

target = "deflate_offer"
for name, offer in {
    "plain": "permessage-deflate",
    "chrome": "permessage-deflate; client_max_window_bits",
    "firefox": "permessage-deflate",
    "full": "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=12",
    "fallbacks": "permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                 "client_max_window_bits, x-webkit-deflate-frame",
    "malformed-then-good": 'permessage-deflate; bogus, permessage-deflate; server_max_window_bits="9"',
    "duplicate": "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "quoted-unclosed": 'permessage-deflate; server_max_window_bits="1',
    "out-of-range": "permessage-deflate; server_max_window_bits=16; client_max_window_bits=07",
}.items():
    write(target, name, offer.encode())


def deflated(data, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


M = bytes([1, 2, 3, 4])
quote = b'{"id":1,"type":"quote","symbol":"ETH-EUR","bid":2000.5,"ask":2001.25}' * 4
zq = deflated(quote)
target = "connection_deflate"
for name, stream in {
    "compressed-text": frame(0x1, zq, rsv=4, mask=M),
    "compressed-binary-twice": frame(0x2, deflated(bytes(range(256)) * 2), rsv=4, mask=M) * 2,
    "compressed-fragmented": frame(0x1, zq[:10], fin=False, rsv=4, mask=M)
    + frame(0x0, zq[10:], mask=M),
    "rsv1-on-continuation": frame(0x1, zq[:10], fin=False, rsv=4, mask=M)
    + frame(0x0, zq[10:], rsv=4, mask=M),
    "rsv1-on-ping": frame(0x9, b"hi", rsv=4, mask=M),
    "bomb": frame(0x2, deflated(bytes(100000), 9), rsv=4, mask=M),
    "garbage-deflate": frame(0x2, b"\xff" * 20, rsv=4, mask=M),
    "bad-utf8-inside": frame(0x1, deflated(b"ab\xc3\x28cd" * 40), rsv=4, mask=M),
    "uncompressed-then-compressed": frame(0x1, quote, mask=M) + frame(0x1, zq, rsv=4, mask=M)
    + close(1000, mask=M),
}.items():
    # Byte 0 picks the parameters (0x03: no takeover either way, window 8; 0x20: takeover
    # both ways, dedicated contexts), byte 1 the read sizes.
    for pick in (0x03, 0x20):
        write(target, f"{name}-{pick:02x}", bytes([pick, 0x40]) + stream)
