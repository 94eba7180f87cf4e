//! An in-memory duplex byte stream, for driving two WebSocket implementations against
//! each other without sockets.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::rc::Rc;

/// One direction of the duplex: bytes in flight and whether the writer has hung up.
#[derive(Default)]
struct Pipe {
    buf: VecDeque<u8>,
    eof: bool,
}

/// One end of an in-memory duplex stream. Reads return at most `max_read` bytes, and
/// `WouldBlock` when the pipe is empty and not at end of stream.
pub struct End {
    rx: Rc<RefCell<Pipe>>,
    tx: Rc<RefCell<Pipe>>,
    max_read: usize,
}

/// Two connected ends; each read returns at most `max_read` bytes.
pub fn duplex(max_read: usize) -> (End, End) {
    let a = Rc::new(RefCell::new(Pipe::default()));
    let b = Rc::new(RefCell::new(Pipe::default()));
    (End { rx: a.clone(), tx: b.clone(), max_read }, End { rx: b, tx: a, max_read })
}

impl End {
    /// Everything the peer has written so far.
    pub fn take_all(&self) -> Vec<u8> {
        self.rx.borrow_mut().buf.drain(..).collect()
    }

    /// Bytes written to the peer and not yet read by it.
    pub fn pending_out(&self) -> Vec<u8> {
        self.tx.borrow().buf.iter().copied().collect()
    }

    /// Writes bytes to the peer.
    pub fn put(&self, data: &[u8]) {
        self.tx.borrow_mut().buf.extend(data);
    }

    /// Signals end of stream to the peer (the TCP FIN).
    pub fn hang_up(&self) {
        self.tx.borrow_mut().eof = true;
    }
}

impl Read for End {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut p = self.rx.borrow_mut();
        if p.buf.is_empty() {
            return if p.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = out.len().min(p.buf.len()).min(self.max_read);
        for (o, b) in out[..n].iter_mut().zip(p.buf.drain(..n)) {
            *o = b;
        }
        Ok(n)
    }
}

impl Write for End {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.put(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
