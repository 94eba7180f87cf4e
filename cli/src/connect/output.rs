//! What `ringwire connect` prints: messages on stdout (text as is or pretty JSON, binary
//! as hex or raw), and notes on stderr (state changes, pongs, health).

use std::io::{self, Write};
use std::time::Duration;

use ringwire::client::{HealthSnapshot, StateChange};
use ringwire::frame::{Closed, Message};

/// JSON nested deeper than this is printed as it came (serde_json's own recursion
/// limit), so a hostile message cannot make the indentation explode.
const MAX_JSON_DEPTH: usize = 128;

/// How received messages are printed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Format {
    /// Pretty-print text messages that parse as JSON.
    pub json: bool,
    /// Binary messages as their bytes rather than hex.
    pub raw: bool,
}

/// Appends the stdout form of `msg` to `out`, with its newline.
pub(crate) fn render(msg: &Message, format: Format, out: &mut Vec<u8>) {
    match msg {
        Message::Text(t) => match format.json.then(|| pretty_json(t.as_str())).flatten() {
            Some(pretty) => out.extend_from_slice(pretty.as_bytes()),
            None => out.extend_from_slice(t.as_bytes()),
        },
        Message::Binary(b) if format.raw => out.extend_from_slice(b),
        Message::Binary(b) => hex(b, out),
    }
    out.push(b'\n');
}

/// Lowercase hex, two digits a byte, no separators (`xxd -r -p` reads it back).
fn hex(bytes: &[u8], out: &mut Vec<u8>) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// `text` re-indented as serde_json's pretty printer does (two spaces, `"key": value`,
/// `{}` and `[]` when empty), if it is JSON; `None` otherwise. Only the whitespace
/// between tokens changes: keys keep their order and numbers and strings their
/// spelling (parsing into a `serde_json::Value` would sort the keys and round big
/// numbers).
pub(crate) fn pretty_json(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                out.push(c);
                if chars.next_if(|&n| n == '}' || n == ']').is_some() {
                    out.push(if c == '{' { '}' } else { ']' });
                } else {
                    depth += 1;
                    if depth > MAX_JSON_DEPTH {
                        return None;
                    }
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// A note on stderr, prefixed `ringwire: `. Errors writing it are ignored: a closed
/// stderr must not end the session (nor panic, as `eprintln!` would).
pub(crate) fn note(text: std::fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "ringwire: {text}");
}

/// A state change as `connected: upgrade accepted`.
pub(crate) fn state_text(change: &StateChange) -> String {
    format!("{}: {}", change.to, change.cause)
}

/// A round trip in milliseconds with microsecond precision.
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// A heartbeat's round trip: `pong: rtt 0.123 ms`.
pub(crate) fn pong_text(rtt: Duration) -> String {
    format!("pong: rtt {}", ms(rtt))
}

/// A health alert: the level and the figures behind it.
pub(crate) fn health_text(h: &HealthSnapshot) -> String {
    let rtt = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), ms);
    format!(
        "health {:?}: rtt p50 {} p95 {} p99 {}, jitter {}, loss {:.0}% of {} heartbeats, {} \
         failed connects in a row",
        h.level,
        rtt(h.rtt_p50),
        rtt(h.rtt_p95),
        rtt(h.rtt_p99),
        ms(h.jitter),
        h.loss * 100.0,
        h.heartbeats,
        h.streak
    )
}

/// The end of a WebSocket connection: `1000 "bye" (Peer)`.
pub(crate) fn closed_text(c: &Closed) -> String {
    if c.reason.is_empty() {
        format!("{} ({:?})", c.code, c.cause)
    } else {
        format!("{} {:?} ({:?})", c.code, c.reason, c.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(msg: Message, format: Format) -> String {
        let mut out = Vec::new();
        render(&msg, format, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn messages_render_one_per_line() {
        let plain = Format::default();
        assert_eq!(rendered(Message::text("héllo".to_owned()), plain), "héllo\n");
        assert_eq!(rendered(Message::binary(vec![0, 0xab, 0x10]), plain), "00ab10\n");
        let raw = Format { raw: true, ..plain };
        assert_eq!(rendered(Message::binary(b"hi".to_vec()), raw), "hi\n");
        let json = Format { json: true, ..plain };
        assert_eq!(rendered(Message::text(r#"{"a":1}"#.to_owned()), json), "{\n  \"a\": 1\n}\n");
        assert_eq!(rendered(Message::text("{oops".to_owned()), json), "{oops\n");
        assert_eq!(rendered(Message::binary(b"{}".to_vec()), json), "7b7d\n", "text only");
    }

    #[test]
    fn pretty_json_matches_serde_json_and_keeps_spelling() {
        for text in [
            r#"{"b":[1,2,{"c":null}],"a":{},"e":[],"s":"x, y: {z} [w] \" \\"}"#,
            " [ true , false , -1.5e3 , \"\\u00e9\" ] ",
            "42",
            r#""just a string""#,
            r#"[[[]],{"k":[{}]}]"#,
        ] {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            let want = serde_json::to_string_pretty(&v).unwrap();
            let got = pretty_json(text).unwrap();
            // Same layout; serde_json sorts keys, so compare as values too.
            assert_eq!(got.lines().count(), want.lines().count(), "{got}\n{want}");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&got).unwrap(), v);
        }
        // Key order, big numbers and escapes stay as they came.
        let text = r#"{"z":12345678901234567890123,"a":1.0,"q":"\u00e9\n"}"#;
        let want =
            "{\n  \"z\": 12345678901234567890123,\n  \"a\": 1.0,\n  \"q\": \"\\u00e9\\n\"\n}";
        assert_eq!(pretty_json(text).unwrap(), want);
    }

    #[test]
    fn not_json_or_too_deep_is_left_alone() {
        for text in ["", "hello", "{\"a\":}", "[1,2", "{} {}", "[1] trailing"] {
            assert_eq!(pretty_json(text), None, "{text:?}");
        }
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(pretty_json(&nested(MAX_JSON_DEPTH + 50)), None);
        assert_eq!(pretty_json(&nested(100)).map(|p| p.lines().count()), Some(199));
    }

    #[test]
    fn notes_read_well() {
        use ringwire::client::{Cause, ClientState};
        let change = StateChange {
            from: ClientState::Connecting,
            to: ClientState::Reconnecting,
            cause: Cause::ConnectFailed { errno: 111 },
        };
        let text = state_text(&change);
        assert!(text.starts_with("reconnecting: connect failed: connection refused"), "{text}");
        assert_eq!(pong_text(Duration::from_micros(1500)), "pong: rtt 1.500 ms");
    }
}
