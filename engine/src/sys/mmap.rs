//! A file of fixed size mapped read-write and shared: the outbox log's segments.
//!
//! Soundness argument (docs/outbox-format.md, "What is assumed"): the mapping is never
//! turned into a Rust reference (`&[u8]` or `&mut [u8]`). Bytes go in and out only by
//! copies through raw pointers, bounds-checked against the mapping's length on every
//! call, so memory that another process might change under us is never aliased by a
//! reference whose contents the compiler may assume stable. The file is created at its
//! full size with its blocks allocated (`fallocate`, so a store into the mapping can never
//! meet a full disk and fault) and is never truncated while mapped; the log that owns it
//! holds an exclusive lock on its directory, so no cooperating process writes it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use memmap2::MmapRaw;

/// A mapped file.
pub(crate) struct MappedFile {
    file: File,
    map: MmapRaw,
    len: usize,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile").field("len", &self.len).finish()
    }
}

impl MappedFile {
    /// Opens `path` and maps it whole: an existing file at its own size, a new one (or an
    /// empty one) created at `len` bytes, zero-filled, its blocks allocated and synced.
    pub(crate) fn open(path: &Path, len: usize) -> io::Result<Self> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let have = file.metadata()?.len();
        let len = if have == 0 {
            // Zero-filled, blocks reserved: stores into the mapping cannot hit ENOSPC.
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, len as u64)?;
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                // The new name survives a power loss too.
                File::open(dir)?.sync_all()?;
            }
            len
        } else {
            usize::try_from(have).map_err(|_| io::Error::other("file too large to map"))?
        };
        let map = MmapRaw::map_raw(&file)?;
        if map.len() != len {
            return Err(io::Error::other("mapping of an unexpected length"));
        }
        Ok(Self { file, map, len })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The start of `[off, off + n)` in the mapping, after checking it is inside.
    fn at(&self, off: usize, n: usize) -> *mut u8 {
        let end = off.checked_add(n).expect("range overflows");
        assert!(end <= self.len, "range {off}..{end} outside a mapping of {}", self.len);
        // SAFETY: `off <= end <= len`, the mapping's length, so the pointer stays within
        // (or one past the end of) the mapped region, which lives as long as `self.map`.
        unsafe { self.map.as_mut_ptr().add(off) }
    }

    /// Copies `bytes` into the file at `off`.
    pub(crate) fn write(&self, off: usize, bytes: &[u8]) {
        let dst = self.at(off, bytes.len());
        // SAFETY: `dst..dst + len` is inside the mapping (checked by `at`), which is
        // writable (mapped read-write); `bytes` is a separate allocation of ours, so the
        // two ranges do not overlap. No reference to the mapping is made.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) }
    }

    /// Copies the file's bytes at `off` into `out`.
    pub(crate) fn read(&self, off: usize, out: &mut [u8]) {
        let src = self.at(off, out.len());
        // SAFETY: `src..src + len` is inside the mapping (checked by `at`), readable;
        // `out` is our own buffer, not part of the mapping, so they do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }

    /// Writes back the file's data (`fdatasync`): the pages stored into through the
    /// mapping included (the kernel tracks them per page).
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Another handle to the file, for a sync on another thread (`fdatasync` on it
    /// writes back the pages stored into through this mapping too).
    pub(crate) fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

/// An exclusive, non-blocking `flock` on `path` (created if absent), held while the
/// returned file is open.
pub(crate) fn lock_file(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(|e| {
        if e == rustix::io::Errno::WOULDBLOCK {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is locked by another outbox", path.display()),
            )
        } else {
            e.into()
        }
    })?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_written_are_read_back_and_survive_a_remap() {
        let dir = std::env::temp_dir().join(format!("rw-mmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        let _ = std::fs::remove_file(&path);
        {
            let m = MappedFile::open(&path, 8192).unwrap();
            m.write(4000, b"across a page boundary, some bytes");
            m.sync().unwrap();
        }
        let m = MappedFile::open(&path, 8192).unwrap();
        let mut out = [0u8; 34];
        m.read(4000, &mut out);
        assert_eq!(&out, b"across a page boundary, some bytes");
        let mut zero = [1u8; 8];
        m.read(8184, &mut zero);
        assert_eq!(zero, [0; 8], "created zero-filled");
        assert_eq!(MappedFile::open(&path, 4096).unwrap().len(), 8192, "its own size");
        let r = std::panic::catch_unwind(|| m.read(8190, &mut [0u8; 4]));
        assert!(r.is_err(), "a range past the end is refused, not read");
        drop(m);
        let l = lock_file(&dir.join("LOCK")).unwrap();
        let again = lock_file(&dir.join("LOCK")).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
        drop(l);
        assert!(lock_file(&dir.join("LOCK")).is_ok(), "released with the file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
