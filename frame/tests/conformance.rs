//! Conformance table modelled on the Autobahn testsuite, case groups 1-7, run against the
//! in-memory [`Connection`] in both roles.
//!
//! Each case is a list of frames the test sends (masked when the test plays the client,
//! unmasked when it plays the server), optionally preceded by a close we start ourselves.
//! The harness behaves like the Autobahn echo server: it feeds the bytes to
//! `handle_bytes`, drains `poll_event`, echoes every message with `send`, and decodes what
//! the connection transmitted. Each (case, role) gives one line of outcome:
//!
//! ```text
//! 1.1.2 server: ev=[T:125#91d0c3a3] closed=Peer(1000) tx_close=1000 tx_pong=-
//! ```
//!
//! - `ev`: the events in order: `T:`/`B:` messages, `ping:`/`pong:` frames received.
//!   Short printable payloads are shown quoted, others as `length#fnv1a32`.
//! - `closed`: the `Closed` event (`Peer`, `Local`, `Error(code,error)`, ...), or `open` /
//!   `closing` if the case ended without one.
//! - `tx_close`: the close frame the connection sent: `code` or `code,reason` (an error's
//!   `ProtocolError::reason`), `-` if none, `empty` without code.
//! - `tx_pong`: the payload of the last pong it sent (`-` if none). Pongs are coalesced
//!   (RFC 6455 §5.5.3), so only the last one is independent of how input was chunked.
//!
//! The test asserts, for every case and role:
//! 1. the outcome is identical when the input is split at every byte offset (a sample for
//!    large inputs) and when it arrives one byte at a time (STYLE.md item 7);
//! 2. invariants that hold whatever the outcome: no event after `Closed`, no output for
//!    input after it, every frame sent is final, unreserved and masked exactly when the
//!    connection is a client (RFC 6455 §5.1), data frames sent are exactly the echoes that
//!    `send` accepted, pongs answer received pings in order, no data frame follows the close
//!    frame, and `send` fails with `SendError::Closed` exactly once a close is sent; events
//!    in arrival order: unless the case closes first, every message is echoed, also one
//!    that came in the same read as the peer's close or a bad frame, so its echo precedes
//!    the close frame, and `close_is_next()` is true right before `Closed` only;
//! 3. the outcomes equal `tests/conformance/expected.txt`. Run with `RINGWIRE_BLESS=1` to
//!    rewrite that file after an intended change, and review the diff.
//!
//! Unless a case says otherwise, the test ends it with a close frame (1000), as the
//! Autobahn client does, so `closed=Peer(1000)` shows that everything before it was
//! processed. See `docs/CONFORMANCE.md` for the mapping to Autobahn and known deviations.

// The table is a list of pushes, each with its comment: clearer than one huge `vec![]`.
#![allow(clippy::vec_init_then_push)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use ringwire_frame::{
    CloseCause, CloseCode, Closed, Config, Connection, Event, FixedMask, Message, Role, SendError,
};

/// The key the test masks with when it plays the client.
const TEST_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The key the connection masks with in the client role.
const CONN_KEY: [u8; 4] = [0x5a, 0x01, 0xc3, 0x7e];

/// Inputs longer than this are split at a sample of offsets rather than at all of them.
const FULL_SPLIT_MAX: usize = 2048;

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BIN: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;

// ---- the case language ---------------------------------------------------------------

/// Whether a frame is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mask {
    /// As the sender's role requires: masked when the test plays the client.
    Role,
    /// Always masked (a server sending this breaks §5.1).
    On,
    /// Never masked (a client sending this breaks §5.1).
    Off,
}

/// How the 7-bit length field is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LenForm {
    Minimal,
    /// Always the 16-bit extended length (126), even when 7 bits would do.
    Ext16,
    /// Always the 64-bit extended length (127).
    Ext64,
}

/// One frame the test sends.
#[derive(Debug, Clone)]
struct Frame {
    fin: bool,
    rsv: u8,
    op: u8,
    /// The payload bytes that are actually sent.
    payload: Vec<u8>,
    /// The length the header declares, if not `payload.len()`: the rest never arrives.
    declared: Option<u64>,
    mask: Mask,
    len_form: LenForm,
}

impl Frame {
    fn new(op: u8, payload: impl AsRef<[u8]>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            op,
            payload: payload.as_ref().to_vec(),
            declared: None,
            mask: Mask::Role,
            len_form: LenForm::Minimal,
        }
    }
    /// Clears FIN: more fragments follow.
    fn more(mut self) -> Self {
        self.fin = false;
        self
    }
    fn rsv(mut self, rsv: u8) -> Self {
        self.rsv = rsv;
        self
    }
    fn mask(mut self, m: Mask) -> Self {
        self.mask = m;
        self
    }
    fn len_form(mut self, f: LenForm) -> Self {
        self.len_form = f;
        self
    }
    /// Sends only the first `n` payload bytes; the header declares them all.
    fn cut(mut self, n: usize) -> Self {
        self.declared = Some(self.payload.len() as u64);
        self.payload.truncate(n);
        self
    }
    /// Declares `len` payload bytes in the header, whatever is sent.
    fn declare(mut self, len: u64) -> Self {
        self.declared = Some(len);
        self
    }

    /// The frame's bytes, masked with `key` if given. Written here rather than with the
    /// crate's encoder, so that the test does not trust the code it tests.
    fn encode(&self, key: Option<[u8; 4]>) -> Vec<u8> {
        let len = self.declared.unwrap_or(self.payload.len() as u64);
        let mut out = vec![(u8::from(self.fin) << 7) | ((self.rsv & 7) << 4) | (self.op & 0xf)];
        let mask_bit = if key.is_some() { 0x80 } else { 0 };
        let form = match self.len_form {
            LenForm::Minimal if len <= 125 => 0,
            LenForm::Minimal if len <= 0xffff => 16,
            LenForm::Minimal => 64,
            LenForm::Ext16 => 16,
            LenForm::Ext64 => 64,
        };
        match form {
            0 => out.push(mask_bit | len as u8),
            16 => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        let start = out.len() + key.map_or(0, |_| 4);
        if let Some(k) = key {
            out.extend_from_slice(&k);
        }
        out.extend_from_slice(&self.payload);
        if let Some(k) = key {
            for (i, b) in out[start..].iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        out
    }
}

fn text(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_TEXT, p)
}
fn bin(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_BIN, p)
}
fn cont(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_CONT, p)
}
fn ping(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_PING, p)
}
fn pong(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_PONG, p)
}
fn op(op: u8, p: impl AsRef<[u8]>) -> Frame {
    Frame::new(op, p)
}
/// A close frame with a code and a reason.
fn close(code: u16, reason: impl AsRef<[u8]>) -> Frame {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_ref());
    Frame::new(OP_CLOSE, p)
}
/// A close frame with an arbitrary payload.
fn close_raw(p: impl AsRef<[u8]>) -> Frame {
    Frame::new(OP_CLOSE, p)
}

/// How the case's bytes are cut into reads (the split test tries many more).
#[derive(Debug, Clone, Copy)]
enum Reads {
    /// All in one read.
    Whole,
    /// Reads of this many bytes.
    Size(usize),
    /// One read per frame.
    PerFrame,
}

#[derive(Debug, Clone)]
struct Case {
    id: String,
    frames: Vec<Frame>,
    reads: Reads,
    /// A close we start before any input: (code, reason).
    local_close: Option<(u16, String)>,
    /// Whether the test ends the case with a close (1000).
    final_close: bool,
    roles: &'static [Role],
}

const BOTH: &[Role] = &[Role::Server, Role::Client];

fn case(id: &str, frames: Vec<Frame>) -> Case {
    Case {
        id: id.to_owned(),
        frames,
        reads: Reads::Whole,
        local_close: None,
        final_close: true,
        roles: BOTH,
    }
}

impl Case {
    fn reads(mut self, r: Reads) -> Self {
        self.reads = r;
        self
    }
    /// The case ends without a close from the test (e.g. a message that never ends).
    fn no_close(mut self) -> Self {
        self.final_close = false;
        self
    }
    fn local_close(mut self, code: u16, reason: &str) -> Self {
        self.local_close = Some((code, reason.to_owned()));
        self
    }

    /// The frames as sent, including the final close.
    fn all_frames(&self) -> Vec<Frame> {
        let mut f = self.frames.clone();
        if self.final_close {
            f.push(close(1000, ""));
        }
        f
    }

    /// The bytes the test sends to a connection in `role`, and the read sizes.
    fn input(&self, role: Role) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut frame_lens = Vec::new();
        for f in self.all_frames() {
            let masked = match f.mask {
                Mask::Role => role == Role::Server,
                Mask::On => true,
                Mask::Off => false,
            };
            let b = f.encode(masked.then_some(TEST_KEY));
            frame_lens.push(b.len());
            bytes.extend_from_slice(&b);
        }
        let reads = match self.reads {
            Reads::Whole => vec![bytes.len()],
            Reads::PerFrame => frame_lens,
            Reads::Size(n) => {
                let mut v = vec![n; bytes.len() / n];
                if bytes.len() % n != 0 {
                    v.push(bytes.len() % n);
                }
                v
            }
        };
        (bytes, reads)
    }
}

// ---- payloads ------------------------------------------------------------------------

/// `n` bytes of printable ASCII.
fn ascii(n: usize) -> Vec<u8> {
    b"Hello, ringwire! ".iter().copied().cycle().take(n).collect()
}

/// `n` bytes covering every byte value.
fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 + 7) as u8).collect()
}

/// "κόσμε", the Autobahn suite's Greek sample.
const KOSME: &[u8] = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
/// "Hello-µ@ßöäüàá-UTF-8!!", Autobahn's mixed sample.
const HELLO_UTF8: &str = "Hello-\u{b5}@\u{df}\u{f6}\u{e4}\u{fc}\u{e0}\u{e1}-UTF-8!!";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// `s` as one text frame per fragment of `sizes` bytes (cycled).
fn fragments(op: u8, s: &[u8], size: usize) -> Vec<Frame> {
    let chunks: Vec<&[u8]> = if s.is_empty() { vec![&[][..]] } else { s.chunks(size).collect() };
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = Frame::new(if i == 0 { op } else { OP_CONT }, c);
            if i + 1 < n {
                f.more()
            } else {
                f
            }
        })
        .collect()
}

/// Fragments of `s` split at its `char` boundaries.
fn fragments_on_chars(s: &str) -> Vec<Frame> {
    let mut frames: Vec<Frame> = s.chars().map(|c| cont(c.to_string().as_bytes()).more()).collect();
    frames[0].op = OP_TEXT;
    if let Some(last) = frames.last_mut() {
        last.fin = true;
    }
    frames
}

// ---- the table -----------------------------------------------------------------------

fn group1() -> Vec<Case> {
    let mut v = Vec::new();
    // 1.1 text / 1.2 binary of the boundary lengths of the 7-bit, 16-bit and 64-bit forms.
    let lens = [0usize, 125, 126, 127, 128, 65535, 65536];
    for (i, n) in lens.iter().enumerate() {
        v.push(case(&format!("1.1.{}", i + 1), vec![text(ascii(*n))]));
        v.push(case(&format!("1.2.{}", i + 1), vec![bin(bytes(*n))]));
    }
    v.push(case("1.1.8", vec![text(ascii(65536))]).reads(Reads::Size(997)));
    v.push(case("1.2.8", vec![bin(bytes(65536))]).reads(Reads::Size(997)));
    // 1.3: more framing, beyond Autobahn.
    v.push(case("1.3.1", vec![text("Hello")])); // RFC 6455 §5.7
    v.push(case("1.3.2", vec![text("one"), bin([1, 2, 3]), text("three")]));
    v.push(case("1.3.3", vec![text(ascii(125))]).reads(Reads::Size(1)));
    v.push(case("1.3.4", vec![bin(bytes(256))]).reads(Reads::Size(7))); // §5.7: 256 bytes
    v.push(case("1.3.5", vec![text("Hello").len_form(LenForm::Ext16)])); // non-minimal length
    v.push(case("1.3.6", vec![text("Hello").len_form(LenForm::Ext64)])); // non-minimal length
    v.push(case("1.3.7", vec![bin(bytes(300)).len_form(LenForm::Ext64)]));
    // §5.2: "the most significant bit MUST be 0".
    v.push(case("1.3.8", vec![text("ok"), bin([]).declare(1 << 63)]));
    // A declared length over max_frame_size (16 MiB): 1009 before any payload is buffered.
    v.push(case("1.3.9", vec![text("ok"), bin([0; 16]).declare(1 << 40)]).no_close());
    v.push(case("1.3.10", vec![bin([]).declare((16 << 20) + 1)]).no_close());
    v.push(case("1.3.11", vec![text("a"), text(""), bin([]), text("b")]));
    // 1.4: masking by role (§5.1). Each runs in both roles: one of them must fail.
    v.push(case("1.4.1", vec![text("unmasked").mask(Mask::Off)]));
    v.push(case("1.4.2", vec![text("masked").mask(Mask::On)]));
    v.push(case("1.4.3", vec![text("ok"), bin(bytes(130)).mask(Mask::Off), text("after")]));
    v.push(case("1.4.4", vec![text("ok"), bin(bytes(130)).mask(Mask::On), text("after")]));
    v.push(case("1.4.5", vec![ping("p").mask(Mask::Off)]));
    v.push(case("1.4.6", vec![ping("p").mask(Mask::On)]));
    v.push(case("1.4.7", vec![close(1000, "").mask(Mask::Off)]).no_close());
    v.push(case("1.4.8", vec![close(1000, "").mask(Mask::On)]).no_close());
    v.push(case("1.4.9", vec![text("frag").more(), cont("ment").mask(Mask::Off)]));
    v.push(case("1.4.10", vec![text("frag").more(), cont("ment").mask(Mask::On)]));
    v
}

fn group2() -> Vec<Case> {
    let mut v = Vec::new();
    v.push(case("2.1", vec![ping("")]));
    v.push(case("2.2", vec![ping("Hello, world!")]));
    v.push(case("2.3", vec![ping([0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff])]));
    v.push(case("2.4", vec![ping(bytes(125))]));
    v.push(case("2.5", vec![ping(bytes(126))])); // §5.5: > 125 -> fail
    v.push(case("2.6", vec![ping(bytes(125))]).reads(Reads::Size(1)));
    v.push(case("2.7", vec![pong("")])); // unsolicited pong: ignored
    v.push(case("2.8", vec![pong("unsolicited pong payload")]));
    v.push(case("2.9", vec![pong("unsolicited"), ping("ping after pong")]));
    let ten: Vec<Frame> = (0..10).map(|i| ping(format!("payload-{i}"))).collect();
    v.push(case("2.10", ten.clone()));
    v.push(case("2.11", ten).reads(Reads::PerFrame));
    v.push(case("2.12", vec![text("a"), ping("1"), bin([2]), ping("3"), text("c")]));
    v.push(case("2.13", vec![pong(bytes(126))]));
    v.push(case("2.14", vec![ping(bytes(126)).len_form(LenForm::Ext64)]));
    v.push(case("2.15", vec![ping(bytes(125)).len_form(LenForm::Ext16)]));
    // Pongs between frames of large echoes (the server's zero-copy send path).
    v.push(case("2.17", vec![text(ascii(2000)), ping("between"), bin(bytes(3000)), ping("end")]));
    v.push(
        case("2.18", vec![bin(bytes(1024)), ping("a"), ping("b"), text(ascii(1500))])
            .reads(Reads::Size(100)),
    );
    v.push(case("2.16", vec![ping("binary \x00\x01\x02").len_form(LenForm::Minimal)]));
    v
}

fn group3() -> Vec<Case> {
    let mut v = Vec::new();
    // Autobahn 3.1-3.7: the RSV field (RSV1 = 4, RSV2 = 2, RSV3 = 1) set to 1..7.
    v.push(case("3.1", vec![text("Hello, world!").rsv(1)]));
    v.push(case("3.2", vec![text("Hello, world!"), text("Hello, world!").rsv(2), ping("")]));
    v.push(
        case("3.3", vec![text("Hello, world!"), text("Hello, world!").rsv(3), ping("")])
            .reads(Reads::PerFrame),
    );
    v.push(
        case("3.4", vec![text("Hello, world!"), text("Hello, world!").rsv(4), ping("")])
            .reads(Reads::Size(1)),
    );
    v.push(case("3.5", vec![bin(bytes(8)).rsv(5)]));
    v.push(case("3.6", vec![ping("Hello, world!").rsv(6)]));
    v.push(case("3.7", vec![close(1000, "").rsv(7)]).no_close());
    // 3.8.x: each bit on each opcode, after a valid message, followed by a ping that must
    // not be answered.
    let ops: [(u8, &str); 6] = [
        (OP_TEXT, "text"),
        (OP_BIN, "bin"),
        (OP_PING, "ping"),
        (OP_PONG, "pong"),
        (OP_CLOSE, "close"),
        (OP_CONT, "cont"),
    ];
    let mut n = 1;
    for rsv in [4u8, 2, 1] {
        for (o, _) in ops {
            let bad = if o == OP_CLOSE { close(1000, "").rsv(rsv) } else { op(o, "x").rsv(rsv) };
            let frames = if o == OP_CONT {
                vec![text("ok"), text("frag").more(), bad, ping("after")]
            } else {
                vec![text("ok"), bad, ping("after")]
            };
            v.push(case(&format!("3.8.{n}"), frames));
            n += 1;
        }
    }
    v
}

fn group4() -> Vec<Case> {
    let mut v = Vec::new();
    // 4.1: reserved non-control opcodes 3-7; 4.2: reserved control opcodes 0xB-0xF.
    for (group, ops) in [(1, [3u8, 4, 5, 6, 7]), (2, [0xb, 0xc, 0xd, 0xe, 0xf])] {
        let mut n = 1;
        for o in ops {
            v.push(case(&format!("4.{group}.{n}"), vec![op(o, "")]));
            n += 1;
            v.push(case(
                &format!("4.{group}.{n}"),
                vec![text("Hello, world!"), op(o, "reserved opcode payload"), ping("")],
            ));
            n += 1;
        }
    }
    // A reserved opcode between the fragments of a message.
    v.push(case("4.3.1", vec![text("frag").more(), op(3, "x"), cont("ment")]));
    v.push(case("4.3.2", vec![text("frag").more(), op(0xb, "x"), cont("ment")]));
    v
}

fn group5() -> Vec<Case> {
    let mut v = Vec::new();
    // §5.5: control frames MUST NOT be fragmented.
    v.push(case("5.1", vec![ping("fragment1").more(), cont("fragment2")]));
    v.push(case("5.2", vec![pong("fragment1").more(), cont("fragment2")]));
    let two = vec![text("fragment1").more(), cont("fragment2")];
    v.push(case("5.3", two.clone()));
    v.push(case("5.4", two.clone()).reads(Reads::PerFrame));
    v.push(case("5.5", two).reads(Reads::Size(1)));
    let with_ping = vec![text("fragment1").more(), ping("pongme!"), cont("fragment2")];
    v.push(case("5.6", with_ping.clone()));
    v.push(case("5.7", with_ping.clone()).reads(Reads::PerFrame));
    v.push(case("5.8", with_ping).reads(Reads::Size(1)));
    // §5.4: a continuation with no message to continue.
    v.push(case("5.9", vec![cont("non-continuation payload"), text("Hello, world!")]));
    v.push(
        case("5.10", vec![cont("non-continuation payload"), text("Hello, world!")])
            .reads(Reads::Size(1)),
    );
    v.push(case("5.11", vec![cont("non-continuation payload").more(), text("Hello, world!")]));
    v.push(
        case("5.12", vec![cont("non-continuation payload").more(), text("Hello, world!")])
            .reads(Reads::Size(1)),
    );
    v.push(case("5.13", vec![text("fragment1").more(), cont("fragment2"), cont("fragment3")]));
    v.push(case(
        "5.14",
        vec![text("fragment1").more(), cont("fragment2"), cont("fragment3").more()],
    ));
    v.push(case(
        "5.15",
        vec![
            text("fragment1").more(),
            cont("fragment2"),
            cont("fragment3").more(),
            text("fragment4"),
        ],
    ));
    // §5.4: no new data frame while a fragmented message is in progress.
    v.push(case("5.16", vec![text("fragment1").more(), text("fragment2")]));
    v.push(case("5.17", vec![text("fragment1").more(), bin([2]).more(), cont("x")]));
    v.push(case("5.18", vec![bin([1]).more(), text("new")]));
    let many = vec![
        text("fragment1").more(),
        ping("pongme 1!"),
        cont("fragment2").more(),
        ping("pongme 2!"),
        cont("fragment3").more(),
        ping("pongme 3!"),
        cont("fragment4").more(),
        ping("pongme 4!"),
        cont("fragment5"),
    ];
    v.push(case("5.19", many.clone()));
    v.push(case("5.20", many).reads(Reads::PerFrame));
    // Beyond Autobahn.
    v.push(case("5.21", vec![bin(bytes(10)).more(), cont(bytes(20))]));
    v.push(case("5.22", fragments(OP_BIN, &bytes(300), 3)));
    v.push(case("5.23", fragments(OP_TEXT, &ascii(1000), 7)).reads(Reads::Size(13)));
    v.push(case("5.24", vec![text("").more(), cont("").more(), cont("")]));
    v.push(case("5.25", vec![text("only").more(), cont("")]));
    v.push(case("5.26", vec![bin([]).more(), cont([9]).more(), cont([])]));
    // A close between fragments ends the connection; the message is never delivered.
    v.push(
        case("5.27", vec![text("frag").more(), close(1000, "mid-message"), cont("ment")])
            .no_close(),
    );
    v.push(case("5.28", vec![text("frag").more(), pong("unsolicited"), cont("ment")]));
    v.push(case("5.29", vec![close(1000, "").more()]).no_close());
    // A message that never ends: nothing is delivered, the connection stays open.
    v.push(case("5.30", vec![text("never").more(), cont("ending").more()]).no_close());
    // A fragmented message larger than one frame's 16-bit length, in 3 frames.
    v.push(case("5.31", fragments(OP_BIN, &bytes(70_000), 30_000)));
    v.push(case("5.32", vec![text("a").more(), ping(bytes(126)), cont("b")]));
    v
}

fn group6() -> Vec<Case> {
    let mut v = Vec::new();
    // 6.1: empty text messages.
    v.push(case("6.1.1", vec![text("")]));
    v.push(case("6.1.2", vec![text("").more(), cont("").more(), cont("")]));
    v.push(case("6.1.3", vec![text("").more(), cont("middle").more(), cont("")]));
    // 6.2: valid multi-byte text, fragmented on code points and on bytes.
    v.push(case("6.2.1", vec![text(HELLO_UTF8)]));
    v.push(case("6.2.2", fragments_on_chars(HELLO_UTF8)));
    v.push(case("6.2.3", fragments(OP_TEXT, HELLO_UTF8.as_bytes(), 1)));
    v.push(case("6.2.4", fragments(OP_TEXT, KOSME, 1)));
    // 6.3: invalid text (a surrogate inside), whole and fragmented per byte.
    let bad = cat(&[KOSME, b"\xed\xa0\x80", b"edited"]);
    v.push(case("6.3.1", vec![text(&bad)]));
    v.push(case("6.3.2", fragments(OP_TEXT, &bad, 1)));
    // 6.4: fail fast. The byte that makes the text invalid arrives; the rest of the
    // message never does. The connection must fail without waiting for it (§8.1).
    v.push(case("6.4.1", vec![text(KOSME).more(), cont(b"\xf4\x90\x80\x80").more()]).no_close());
    v.push(
        case("6.4.2", vec![text(cat(&[KOSME, b"\xf4"])).more(), cont(b"\x90").more()]).no_close(),
    );
    v.push(
        case("6.4.3", vec![text(cat(&[KOSME, b"\xf4\x90\x80\x80", b"edited"])).cut(15)])
            .no_close()
            .reads(Reads::Size(13)),
    );
    v.push(
        case("6.4.4", vec![text(cat(&[KOSME, b"\xf4\x90\x80\x80", b"edited"])).cut(13)]).no_close(),
    );
    v.push(case("6.4.5", vec![text(cat(&[b"ok", b"\xff", &ascii(1000)])).cut(3)]).no_close());
    v.push(case("6.4.6", vec![text(cat(&[b"ab", b"\xed\xa0", &ascii(500)])).cut(4)]).no_close());
    v.push(case("6.4.7", vec![text(cat(&[b"\xc0", &ascii(65535)])).cut(1)]).no_close());
    v.push(case("6.4.8", vec![text(b"\xe0\x80").more(), cont("never")]).no_close());
    v.push(case("6.4.9", vec![text(b"\xf0").more(), cont(b"\x80").more()]).no_close());
    v.push(case("6.4.10", vec![text(b"x").more(), ping("p"), cont(b"\xc3\x28").more()]).no_close());
    // A valid prefix that is still incomplete must NOT fail early.
    v.push(case("6.4.11", vec![text(b"\xf0\x9f\x98").more()]).no_close());
    v.push(case("6.4.12", vec![text(cat(&[b"ok", b"\xe2\x82"])).cut(3)]).no_close());
    // 6.5-6.23: single-frame texts, by the classes of Markus Kuhn's UTF-8 stress test.
    let texts: &[(&str, &[&[u8]])] = &[
        ("6.5", &[KOSME]),
        // First possible sequence of each length (valid), then 5/6-byte forms (invalid).
        ("6.6", &[b"\x00", b"\xc2\x80", b"\xe0\xa0\x80", b"\xf0\x90\x80\x80"]),
        ("6.7", &[b"\xf8\x88\x80\x80\x80", b"\xfc\x84\x80\x80\x80\x80"]),
        // Last possible sequence of each length.
        ("6.8", &[b"\x7f", b"\xdf\xbf", b"\xef\xbf\xbf", b"\xf4\x8f\xbf\xbf"]),
        // Beyond U+10FFFF.
        ("6.9", &[b"\xf4\x90\x80\x80", b"\xf7\xbf\xbf\xbf", b"\xfb\xbf\xbf\xbf\xbf"]),
        // Other boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF (valid).
        ("6.10", &[b"\xed\x9f\xbf", b"\xee\x80\x80", b"\xef\xbf\xbd", b"\xf4\x8f\xbf\xbf"]),
        // Unexpected continuation bytes.
        (
            "6.11",
            &[
                b"\x80",
                b"\xbf",
                b"\x80\xbf",
                b"\x80\xbf\x80",
                b"\x80\xbf\x80\xbf",
                b"\x80\xbf\x80\xbf\x80",
                b"\x80\xbf\x80\xbf\x80\xbf",
            ],
        ),
        // Lonely start bytes followed by a space.
        ("6.12", &[b"\xc0 ", b"\xdf ", b"\xe0 ", b"\xef ", b"\xf0 ", b"\xf4 ", b"\xf8 ", b"\xfc "]),
        // Sequences with the last continuation byte missing, at the end of the message.
        (
            "6.13",
            &[
                b"\xc0",
                b"\xe0\x80",
                b"\xf0\x80\x80",
                b"\xdf",
                b"\xef\xbf",
                b"\xf4\x8f\xbf",
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce",
            ],
        ),
        // Concatenated incomplete sequences.
        ("6.14", &[b"\xc0\xe0\x80\xf0\x80\x80\xdf\xef\xbf\xf7\xbf\xbf"]),
        // Impossible bytes.
        ("6.15", &[b"\xfe", b"\xff", b"\xfe\xfe\xff\xff", b"ok\xc1\x81"]),
        // Overlong "/" and maximum overlong sequences.
        (
            "6.16",
            &[
                b"\xc0\xaf",
                b"\xe0\x80\xaf",
                b"\xf0\x80\x80\xaf",
                b"\xf8\x80\x80\x80\xaf",
                b"\xfc\x80\x80\x80\x80\xaf",
            ],
        ),
        ("6.17", &[b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xf0\x8f\xbf\xbf"]),
        // Overlong NUL.
        ("6.18", &[b"\xc0\x80", b"\xe0\x80\x80", b"\xf0\x80\x80\x80"]),
        // Single UTF-16 surrogates U+D800-U+DFFF.
        (
            "6.19",
            &[
                b"\xed\xa0\x80",
                b"\xed\xad\xbf",
                b"\xed\xae\x80",
                b"\xed\xaf\xbf",
                b"\xed\xb0\x80",
                b"\xed\xbe\x80",
                b"\xed\xbf\xbf",
            ],
        ),
        // Paired surrogates (CESU-8), also invalid.
        (
            "6.20",
            &[
                b"\xed\xa0\x80\xed\xb0\x80",
                b"\xed\xa0\x80\xed\xbf\xbf",
                b"\xed\xaf\xbf\xed\xb0\x80",
                b"\xed\xaf\xbf\xed\xbf\xbf",
            ],
        ),
        // Noncharacters are valid UTF-8.
        ("6.21", &[b"\xef\xbf\xbe", b"\xef\xbf\xbf", b"\xf0\x9f\xbf\xbe", b"\xf4\x8f\xbf\xbe"]),
        // Valid text with an invalid byte at the very end.
        ("6.22", &[b"Hello, world!\x80", b"\xe2\x82\xac\xe2\x82", b"\xf0\x9f\x98\x80\xf0"]),
        // Mixed valid text: emoji, CJK, BOM, U+FFFD.
        (
            "6.23",
            &[
                "\u{1f600}\u{1f680}".as_bytes(),
                "\u{65e5}\u{672c}\u{8a9e}".as_bytes(),
                b"\xef\xbb\xbfBOM",
                b"\xef\xbf\xbd",
            ],
        ),
    ];
    for (group, items) in texts {
        for (i, t) in items.iter().enumerate() {
            v.push(case(&format!("{group}.{}", i + 1), vec![text(t)]));
        }
    }
    // 6.24: a multi-byte char split across fragments and reads, valid and invalid.
    v.push(case("6.24.1", vec![text(b"\xf0\x9f").more(), cont(b"\x98\x80")]));
    v.push(case("6.24.2", vec![text(b"\xf0").more(), ping("p"), cont(b"\x9f\x98\x80")]));
    v.push(case("6.24.3", vec![text(b"\xf0\x9f").more(), cont(b"\x98")]));
    v.push(case("6.24.4", vec![text(b"\xf0\x9f").more(), cont(b"\x98").more(), cont(b"")]));
    v.push(case("6.24.5", vec![text(b"\xe2\x82").more(), cont(b"\xac!")]).reads(Reads::Size(1)));
    // A binary message is never checked.
    v.push(case("6.25.1", vec![bin(b"\xff\xfe\xed\xa0\x80")]));
    v.push(case("6.25.2", vec![bin(b"\xf0").more(), cont(b"\x80")]));
    v
}

fn group7() -> Vec<Case> {
    let mut v = Vec::new();
    // 7.1: the close handshake, and what follows a close.
    v.push(case("7.1.1", vec![text("Hello World!"), close(1000, "")]).no_close());
    v.push(case("7.1.2", vec![close(1000, ""), close(1000, "")]).no_close());
    v.push(case("7.1.3", vec![close(1000, ""), ping("Hello World!")]).no_close());
    v.push(case("7.1.4", vec![close(1000, ""), text("Hello World!")]).no_close());
    v.push(
        case("7.1.5", vec![text("fragment1").more(), close(1000, ""), cont("fragment2")])
            .no_close(),
    );
    v.push(case("7.1.6", vec![text(ascii(10_240)), ping("ping"), close(1000, "")]).no_close());
    // Garbage after the close is not even parsed (§7.1.7, §5.5.1).
    v.push(case("7.1.7", vec![close(1000, ""), op(0xf, "junk").rsv(7).mask(Mask::On)]).no_close());
    v.push(case("7.1.8", vec![close(1000, "")]).no_close().reads(Reads::Size(1)));
    // 7.10 (own): events in arrival order. Messages and the end that follows them arrive
    // in ONE read; every echo must go out before the close frame (the harness checks it),
    // the close (or the failure's close) behind them.
    v.push(case("7.10.1", vec![text("first"), bin([1, 2]), close(1000, "")]).no_close());
    v.push(case("7.10.2", vec![text("a"), ping("p"), text("b"), close(1001, "bye")]).no_close());
    v.push(case("7.10.3", vec![text(ascii(5000)), close(1000, "")]).no_close()); // zero-copy echo
    v.push(case("7.10.4", vec![text("ok"), op(3, "x"), text("never")])); // reserved opcode
    v.push(case("7.10.5", vec![text("ok"), op(0xb, ""), text("never")]));
    v.push(case("7.10.6", vec![text("ok"), text("bad").rsv(4), text("never")]));
    v.push(case("7.10.7", vec![text("ok"), text("bad").mask(Mask::Off), text("never")]));
    v.push(case("7.10.8", vec![text("ok"), text("bad").mask(Mask::On), text("never")]));
    v.push(case("7.10.9", vec![text("a").more(), cont("b"), text(b"\xff")]));
    v.push(case("7.10.10", vec![bin(bytes(2000)), ping("p"), bin([]).declare((16 << 20) + 1)]));
    v.push(case("7.10.11", vec![text("ok"), close_raw("a")]).no_close());
    // 7.3: close payload sizes.
    v.push(case("7.3.1", vec![close_raw("")]).no_close());
    v.push(case("7.3.2", vec![close_raw("a")]).no_close());
    v.push(case("7.3.3", vec![close(1000, "")]).no_close());
    v.push(case("7.3.4", vec![close(1000, "Hello World!")]).no_close());
    v.push(case("7.3.5", vec![close(1000, ascii(123))]).no_close());
    v.push(case("7.3.6", vec![close(1000, ascii(124))]).no_close()); // 126 > 125
    v.push(case("7.3.7", vec![close(1000, "\u{3b1}".repeat(61))]).no_close()); // 122 bytes
    v.push(case("7.3.8", vec![close(1000, ascii(123)).len_form(LenForm::Ext16)]).no_close());
    // 7.5: the reason must be UTF-8 (§5.5.1) -> 1007.
    v.push(case("7.5.1", vec![close(1000, cat(&[KOSME, b"\xed\xa0\x80edited"]))]).no_close());
    v.push(case("7.5.2", vec![close(1000, b"\xce\xba\xce")]).no_close());
    v.push(case("7.5.3", vec![close(1000, b"\xc0\xaf")]).no_close());
    // 7.7: valid codes are echoed.
    let valid = [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999];
    for (i, code) in valid.iter().enumerate() {
        v.push(case(&format!("7.7.{}", i + 1), vec![close(*code, "")]).no_close());
    }
    // 7.9: codes that may not appear on the wire -> 1002; 7.9.6-7.9.8 (1012-1014) are
    // IANA-registered since the RFC and accepted (docs/CONFORMANCE.md, deviation 4).
    let invalid = [0u16, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999];
    for (i, code) in invalid.iter().enumerate() {
        v.push(case(&format!("7.9.{}", i + 1), vec![close(*code, "")]).no_close());
    }
    v.push(case("7.13.1", vec![close(5000, "")]).no_close());
    v.push(case("7.13.2", vec![close(65535, "")]).no_close());
    // 7.8: a close handshake we start.
    v.push(case("7.8.1", vec![close(1000, "")]).local_close(1000, "bye").no_close());
    v.push(case("7.8.2", vec![text("late"), close(1000, "")]).local_close(1000, "").no_close());
    v.push(
        case("7.8.3", vec![ping("late ping"), close(1000, "")])
            .local_close(1001, "going")
            .no_close(),
    );
    v.push(case("7.8.4", vec![close_raw("")]).local_close(1000, "").no_close());
    v.push(case("7.8.5", vec![close(1005, "")]).local_close(1000, "").no_close());
    v.push(case("7.8.6", vec![]).local_close(1000, "no answer").no_close());
    v.push(case("7.8.7", vec![text("x").rsv(4)]).local_close(1000, "").no_close());
    v.push(case("7.8.8", vec![close(1001, "answer")]).local_close(4000, "app").no_close());
    v.push(
        case("7.8.9", vec![close(1000, "")])
            .local_close(3000, &"r".repeat(123))
            .no_close()
            .reads(Reads::Size(1)),
    );
    v.push(
        case("7.8.10", vec![text("frag").more(), cont("ment"), close(1000, "")])
            .local_close(1000, "")
            .no_close(),
    );
    v
}

fn all_cases() -> Vec<Case> {
    let mut v = Vec::new();
    v.extend(group1());
    v.extend(group2());
    v.extend(group3());
    v.extend(group4());
    v.extend(group5());
    v.extend(group6());
    v.extend(group7());
    v
}

// ---- running a case ------------------------------------------------------------------

/// FNV-1a, 32 bits: a short fingerprint of a payload for the outcome line.
fn fnv(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, x| (h ^ u32::from(*x)).wrapping_mul(0x0100_0193))
}

fn render(b: &[u8]) -> String {
    if b.len() <= 24 && b.iter().all(|c| (0x20..0x7f).contains(c) && *c != b'"' && *c != b'\\') {
        format!("\"{}\"", String::from_utf8_lossy(b))
    } else {
        format!("{}#{:08x}", b.len(), fnv(b))
    }
}

fn render_closed(c: &Closed) -> String {
    let reason = if c.reason.is_empty() {
        String::new()
    } else {
        format!(",{}", render(c.reason.as_bytes()))
    };
    match &c.cause {
        CloseCause::Peer => format!("Peer({}{reason})", c.code),
        CloseCause::Local => format!("Local({}{reason})", c.code),
        CloseCause::Error(e) => format!("Error({},{e:?})", c.code),
        other => format!("{other:?}({})", c.code),
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Server => "server",
        Role::Client => "client",
    }
}

/// A frame the connection sent, unmasked.
struct Sent {
    op: u8,
    payload: Vec<u8>,
}

/// Decodes everything the connection sent, checking §5.1-§5.5 on the way.
fn decode_sent(mut wire: &[u8], role: Role) -> Result<Vec<Sent>, String> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        if wire.len() < 2 {
            return Err("sent a truncated frame header".into());
        }
        let (b0, b1) = (wire[0], wire[1]);
        if b0 & 0x70 != 0 || b0 & 0x80 == 0 {
            return Err(format!("sent a frame with RSV or without FIN: {b0:#04x}"));
        }
        let mut at = 2;
        let len = match b1 & 0x7f {
            126 => {
                at = 4;
                u64::from(u16::from_be_bytes(wire.get(2..4).ok_or("short")?.try_into().unwrap()))
            }
            127 => {
                at = 10;
                u64::from_be_bytes(wire.get(2..10).ok_or("short")?.try_into().unwrap())
            }
            n => u64::from(n),
        };
        let masked = b1 & 0x80 != 0;
        if masked != (role == Role::Client) {
            return Err(format!("{} sent a frame with mask bit {masked}", role_name(role)));
        }
        let key = if masked {
            let k: [u8; 4] = wire.get(at..at + 4).ok_or("short")?.try_into().unwrap();
            if k != CONN_KEY {
                return Err(format!("masked with {k:?}, not the MaskSource's key"));
            }
            at += 4;
            Some(k)
        } else {
            None
        };
        let end = at + usize::try_from(len).map_err(|_| "huge")?;
        let mut payload = wire.get(at..end).ok_or("sent a truncated payload")?.to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        let op = b0 & 0x0f;
        if ![OP_TEXT, OP_BIN, OP_CLOSE, OP_PONG].contains(&op) {
            return Err(format!("sent an unexpected opcode {op:#x}"));
        }
        if op & 8 != 0 && payload.len() > 125 {
            return Err("sent a control frame over 125 bytes".into());
        }
        out.push(Sent { op, payload });
        wire = &wire[end..];
    }
    Ok(out)
}

/// Runs `case` against a fresh connection in `role`, feeding `input` in the given reads.
/// Returns the outcome line (without the id), or the invariant that broke.
fn run(case: &Case, role: Role, input: &[u8], reads: &[usize]) -> Result<String, String> {
    let now = Instant::now();
    let mut conn = match role {
        Role::Server => Connection::server(Config::default(), now),
        Role::Client => Connection::client(Config::default(), Box::new(FixedMask(CONN_KEY)), now),
    };
    let mut wire = Vec::new();
    if let Some((code, reason)) = &case.local_close {
        conn.close(now, CloseCode(*code), reason).map_err(|e| format!("close refused: {e}"))?;
        conn.poll_transmit_into(&mut wire);
    }
    let mut events = Vec::new();
    let mut closed: Option<Closed> = None;
    let mut echoed: Vec<Message> = Vec::new();
    let mut pings: Vec<Vec<u8>> = Vec::new();
    let mut received = 0;
    let mut rest = input;
    for &n in reads {
        let (chunk, r) = rest.split_at(n);
        rest = r;
        let was_closed = closed.is_some();
        let (events_before, wire_before) = (events.len(), wire.len());
        conn.handle_bytes(now, chunk);
        loop {
            // Every end here arrives with the input (no EOF, no timer): each is deferred
            // behind the events before it, and `close_is_next` announces it.
            let close_is_next = conn.close_is_next();
            let Some(ev) = conn.poll_event() else { break };
            if closed.is_some() {
                return Err(format!("event after Closed: {ev:?}"));
            }
            if close_is_next != matches!(ev, Event::Closed(_)) {
                return Err(format!("close_is_next() was {close_is_next} before {ev:?}"));
            }
            match ev {
                Event::Message(m) => {
                    received += 1;
                    events.push(match &m {
                        Message::Text(t) => format!("T:{}", render(t.as_bytes())),
                        Message::Binary(b) => format!("B:{}", render(b)),
                    });
                    let sending_allowed = !conn.is_closing() && !conn.is_closed();
                    match conn.send(m.clone()) {
                        Ok(()) if sending_allowed => echoed.push(m),
                        Err(SendError::Closed) if !sending_allowed => {}
                        other => return Err(format!("send after a message: {other:?}")),
                    }
                }
                Event::Ping(p) => {
                    events.push(format!("ping:{}", render(&p)));
                    pings.push(p.to_vec());
                }
                Event::Pong(p) => events.push(format!("pong:{}", render(&p.payload))),
                Event::Closed(c) => closed = Some(c),
                other => return Err(format!("unexpected event {other:?}")),
            }
        }
        conn.poll_transmit_into(&mut wire);
        if was_closed && (events.len() != events_before || wire.len() != wire_before) {
            return Err("input after Closed produced events or bytes".into());
        }
    }
    if conn.is_closed() != closed.is_some() {
        return Err("is_closed() disagrees with the Closed event".into());
    }
    if conn.has_transmit() {
        return Err("has_transmit() after poll_transmit drained".into());
    }

    let sent = decode_sent(&wire, role)?;
    let data: Vec<(u8, &[u8])> =
        sent.iter().filter(|f| f.op < 8).map(|f| (f.op, &f.payload[..])).collect();
    let want: Vec<(u8, &[u8])> =
        echoed.iter().map(|m| (if m.is_text() { OP_TEXT } else { OP_BIN }, m.as_bytes())).collect();
    if data != want {
        return Err(format!("sent {} data frames, echoed {} messages", data.len(), want.len()));
    }
    // Events in arrival order: unless we closed first, every message, also one that came
    // in the same read as the peer's close or a bad frame, was polled while the connection
    // was open, so its echo was accepted and (checked below) went out before the close.
    if case.local_close.is_none() && echoed.len() != received {
        return Err(format!("echoed {} of {received} messages", echoed.len()));
    }
    // Every pong answers a received ping, in order (some may be coalesced away).
    let mut pending = pings.iter();
    let mut last_pong = None;
    for p in sent.iter().filter(|f| f.op == OP_PONG) {
        if !pending.any(|x| *x == p.payload) {
            return Err(format!("pong {} answers no ping", render(&p.payload)));
        }
        last_pong = Some(&p.payload);
    }
    // §5.5.1: one close at most, and no data frame after it (a pong may follow).
    let closes: Vec<usize> = (0..sent.len()).filter(|i| sent[*i].op == OP_CLOSE).collect();
    let tx_close = match closes.as_slice() {
        [] => "-".to_owned(),
        [i] if sent[*i..].iter().all(|f| f.op >= 8) => match sent[*i].payload.as_slice() {
            [] => "empty".to_owned(),
            [a, b, reason @ ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                if reason.is_empty() {
                    code.to_string()
                } else {
                    format!("{code},{}", render(reason))
                }
            }
            [_] => return Err("sent a one-byte close payload".into()),
        },
        _ => return Err("sent a data frame after its close, or two closes".into()),
    };
    let closed = match &closed {
        Some(c) => render_closed(c),
        None if conn.is_closing() => "closing".to_owned(),
        None => "open".to_owned(),
    };
    Ok(format!(
        "ev=[{}] closed={closed} tx_close={tx_close} tx_pong={}",
        events.join(","),
        last_pong.map_or("-".to_owned(), |p| render(p))
    ))
}

/// Split points to try for an input of `len` bytes.
fn split_points(len: usize, frame_starts: &[usize]) -> Vec<usize> {
    if len <= FULL_SPLIT_MAX {
        return (0..=len).collect();
    }
    let mut v: Vec<usize> = (0..=32).chain(len - 32..=len).chain((0..len).step_by(997)).collect();
    for s in frame_starts {
        v.extend(s.saturating_sub(16)..(s + 16).min(len + 1));
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// Byte offsets where each frame of the case starts, to split around headers.
fn frame_starts(case: &Case, role: Role) -> Vec<usize> {
    let (_, reads) = case.clone().reads(Reads::PerFrame).input(role);
    reads.iter().scan(0, |at, n| Some(std::mem::replace(at, *at + n))).collect()
}

/// Numeric sort key of an id like "6.4.10".
fn id_key(id: &str) -> Vec<u32> {
    id.split('.').map(|p| p.parse().unwrap_or(u32::MAX)).collect()
}

fn expected_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/expected.txt")
}

const HEADER: &str = "\
# Outcomes of frame/tests/conformance.rs, one line per case and role, sorted by case id.
# Regenerate with RINGWIRE_BLESS=1 cargo test -p ringwire-frame --test conformance
# and review the diff; docs/CONFORMANCE.md explains the format and known deviations.
";

#[test]
fn conformance_table() {
    let mut cases = all_cases();
    cases.sort_by_key(|c| id_key(&c.id));
    let mut ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "duplicate case ids");

    let mut lines = Vec::new();
    let mut problems = Vec::new();
    for c in &cases {
        for &role in c.roles {
            let tag = format!("{} {}", c.id, role_name(role));
            let (input, reads) = c.input(role);
            let base = match run(c, role, &input, &reads) {
                Ok(o) => o,
                Err(e) => {
                    problems.push(format!("{tag}: {e}"));
                    continue;
                }
            };
            for k in split_points(input.len(), &frame_starts(c, role)) {
                let got = run(c, role, &input, &[k, input.len() - k]);
                if got.as_ref() != Ok(&base) {
                    problems.push(format!("{tag}: split at {k}: {got:?}\n    whole: {base}"));
                    break;
                }
            }
            let ones = vec![1; input.len()];
            let got = run(c, role, &input, &ones);
            if got.as_ref() != Ok(&base) {
                problems.push(format!("{tag}: byte at a time: {got:?}\n    whole: {base}"));
            }
            lines.push(format!("{tag}: {base}"));
        }
    }
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));

    let mut per_group: BTreeMap<u32, usize> = BTreeMap::new();
    for c in &cases {
        *per_group.entry(id_key(&c.id)[0]).or_default() += 1;
    }
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    assert_eq!(per_group.keys().copied().collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());

    let actual = format!("{HEADER}{}\n", lines.join("\n"));
    let path = expected_path();
    if std::env::var_os("RINGWIRE_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        eprintln!("conformance: wrote {} outcomes to {}", lines.len(), path.display());
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{}: {e}; run with RINGWIRE_BLESS=1 to create it", path.display())
    });
    let exp: BTreeMap<&str, &str> = outcome_map(&expected);
    let act: BTreeMap<&str, &str> = outcome_map(&actual);
    let mut diff = String::new();
    let mut matching = 0;
    for (k, a) in &act {
        match exp.get(k) {
            Some(e) if e == a => matching += 1,
            Some(e) => writeln!(diff, "{k}:\n  - expected: {e}\n  + actual:   {a}").unwrap(),
            None => writeln!(diff, "{k}: not in expected.txt\n  + actual:   {a}").unwrap(),
        }
    }
    for (k, e) in &exp {
        if !act.contains_key(k) {
            writeln!(diff, "{k}: no such case any more\n  - expected: {e}").unwrap();
        }
    }
    let groups: Vec<String> = per_group.iter().map(|(g, n)| format!("group {g}: {n}")).collect();
    eprintln!(
        "conformance: {} cases ({}), {} outcomes, {} match expected",
        cases.len(),
        groups.join(", "),
        lines.len(),
        matching
    );
    assert!(
        diff.is_empty(),
        "outcomes differ from {} (RINGWIRE_BLESS=1 rewrites it):\n{diff}",
        path.display()
    );
    // The file must also be exactly what a bless writes (sorted, no stray lines).
    assert_eq!(expected, actual, "expected.txt is not in canonical form; re-bless it");
}

/// "id role" -> outcome, from the lines of an outcome file.
fn outcome_map(s: &str) -> BTreeMap<&str, &str> {
    s.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_once(": ").unwrap_or((l, "")))
        .collect()
}

/// The harness itself must notice when things go wrong, or its green means nothing.
#[test]
fn harness_detects_wrong_outcomes() {
    // The crate's own RFC 6455 §5.7 example, masked, reaches the harness as "Hello".
    let c = case("0.1", vec![text("Hello")]);
    let (input, reads) = c.input(Role::Server);
    assert_eq!(&input[..6], &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
    assert_eq!(&input[6..11], &[0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    let out = run(&c, Role::Server, &input, &reads).unwrap();
    assert_eq!(out, "ev=[T:\"Hello\"] closed=Peer(1000) tx_close=1000 tx_pong=-");
    // Decoding what a client sends: masked with the MaskSource's key, or an error.
    let mut wire = vec![0x81, 0x82];
    wire.extend_from_slice(&CONN_KEY);
    wire.extend_from_slice(&[b'o' ^ CONN_KEY[0], b'k' ^ CONN_KEY[1]]);
    let sent = decode_sent(&wire, Role::Client).unwrap();
    assert_eq!((sent[0].op, sent[0].payload.as_slice()), (OP_TEXT, &b"ok"[..]));
    assert!(decode_sent(&wire, Role::Server).is_err(), "a server must not mask");
    assert!(decode_sent(&[0x81, 0x05, b'a'], Role::Server).is_err(), "truncated");
    assert!(decode_sent(&[0xc1, 0x00], Role::Server).is_err(), "RSV1 set");
    // Outcome files are compared by line.
    let m = outcome_map("# c\n1.1 server: a\n1.1 client: b\n");
    assert_eq!(m.get("1.1 client"), Some(&"b"));
    assert_eq!(m.len(), 2);
}

/// A pong owed while a large zero-copy echo is half transmitted must wait for the end of
/// that frame (RFC 6455 §5.4: control frames may be injected between frames, never inside
/// one). The table drains everything after each read, so this drives it by hand.
#[test]
fn pong_waits_for_the_frame_in_flight() {
    let now = Instant::now();
    let mut conn = Connection::server(Config::default(), now);
    let (big, _) = case("0.2", vec![text(ascii(5000))]).no_close().input(Role::Server);
    conn.handle_bytes(now, &big);
    let Some(Event::Message(m)) = conn.poll_event() else { panic!("no message") };
    conn.send(m).unwrap();
    // Take only the first chunk of the echo, then a ping arrives.
    let mut wire = conn.poll_transmit().unwrap().to_vec();
    let (p, _) = case("0.3", vec![ping("mid")]).no_close().input(Role::Server);
    conn.handle_bytes(now, &p);
    assert!(matches!(conn.poll_event(), Some(Event::Ping(_))));
    conn.poll_transmit_into(&mut wire);
    let sent = decode_sent(&wire, Role::Server).unwrap();
    let ops: Vec<u8> = sent.iter().map(|f| f.op).collect();
    assert!(ops == [OP_TEXT, OP_PONG] || ops == [OP_PONG, OP_TEXT], "{ops:?}");
    assert_eq!(sent.iter().find(|f| f.op == OP_TEXT).unwrap().payload, ascii(5000));
    assert_eq!(sent.iter().find(|f| f.op == OP_PONG).unwrap().payload, b"mid");
}
