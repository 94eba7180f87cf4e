//! The stdin thread of `ringwire connect`: reads lines into a bounded channel, so a fast
//! producer (a file piped in) waits while the connection is down or the session's flow
//! control holds the lines back, instead of filling memory.

use std::io::{self, BufRead};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use ringwire::frame::Message;

use super::session::Event;

/// Lines read and not yet taken by the main thread, at most.
pub(crate) const LINE_QUEUE: usize = 1024;

/// Starts the stdin thread. Each line (without its `\n`) goes into the returned channel,
/// followed by an [`Event::Input`] on `wake` so the main thread looks at it; at the end
/// of stdin the line channel is dropped (the main thread sees it disconnected once it
/// took every line) and [`Event::InputEnd`] is sent, with the read error if one ended it.
pub(crate) fn spawn(wake: Sender<Event>) -> io::Result<Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::sync_channel(LINE_QUEUE);
    thread::Builder::new().name("ringwire-stdin".into()).spawn(move || read(tx, &wake))?;
    Ok(rx)
}

fn read(lines: SyncSender<Vec<u8>>, wake: &Sender<Event>) {
    let mut stdin = io::stdin().lock();
    let error = loop {
        let mut line = Vec::new();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) => break None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                // Either end gone: the session is over.
                if lines.send(line).is_err() || wake.send(Event::Input).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Some(e.to_string()),
        }
    };
    drop(lines);
    let _ = wake.send(Event::InputEnd(error));
}

/// The message a line becomes: text, or binary with `binary`. A line that is not UTF-8
/// cannot be a text message: it is sent as binary, and `true` says so (for a warning).
pub(crate) fn message(line: Vec<u8>, binary: bool) -> (Message, bool) {
    if binary {
        return (Message::binary(line), false);
    }
    match String::from_utf8(line) {
        Ok(text) => (Message::text(text), false),
        Err(e) => (Message::binary(e.into_bytes()), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_messages() {
        assert_eq!(message(b"hi".to_vec(), false), (Message::text("hi".to_owned()), false));
        assert_eq!(message(b"hi".to_vec(), true), (Message::binary(b"hi".to_vec()), false));
        assert_eq!(message(vec![0xff, 0x00], false), (Message::binary(vec![0xff, 0x00]), true));
        assert_eq!(message(Vec::new(), false), (Message::text(String::new()), false));
    }
}
