//! Where the log's segments live: files mapped into memory ([`DirStore`]), or, in tests,
//! memory that models what a crash keeps ([`MemStore`]: the bytes synced, plus any
//! subset of the pages written since, as a kernel's writeback may have left them).

use std::io;
use std::path::{Path, PathBuf};

use crate::sys::mmap::{lock_file, MappedFile};

/// One segment's bytes.
pub(crate) trait SegmentFile {
    /// Its size.
    fn len(&self) -> usize;
    /// Copies `bytes` in at `off` (inside the file: the log checks).
    fn write(&mut self, off: usize, bytes: &[u8]);
    /// Copies the bytes at `off` out into `out`.
    fn read(&self, off: usize, out: &mut [u8]);
    /// Makes everything written so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// A handle another thread can sync the file through (`None`: this store cannot).
    fn detached(&self) -> Option<std::fs::File> {
        None
    }
}

/// The set of segment files of one log.
pub(crate) trait Store {
    type File: SegmentFile;
    /// The indexes of the segment files there are.
    fn list(&self) -> io::Result<Vec<u32>>;
    /// Opens segment file `index`: an existing one at its own size, or a new one created
    /// zero-filled at `size` bytes.
    fn open(&mut self, index: u32, size: usize) -> io::Result<Self::File>;
}

/// Segment files `seg-<n>.log` in a directory, mapped; the directory is locked
/// (`LOCK`, exclusive `flock`) for as long as the store lives.
pub(crate) struct DirStore {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl DirStore {
    /// Creates `dir` if needed and locks it; refused if another outbox holds it.
    pub(crate) fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lock = lock_file(&dir.join("LOCK"))?;
        Ok(Self { dir: dir.to_owned(), _lock: lock })
    }

    fn path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("seg-{index}.log"))
    }
}

impl SegmentFile for MappedFile {
    fn len(&self) -> usize {
        MappedFile::len(self)
    }
    fn write(&mut self, off: usize, bytes: &[u8]) {
        MappedFile::write(self, off, bytes);
    }
    fn read(&self, off: usize, out: &mut [u8]) {
        MappedFile::read(self, off, out);
    }
    fn sync(&mut self) -> io::Result<()> {
        MappedFile::sync(self)
    }
    fn detached(&self) -> Option<std::fs::File> {
        self.try_clone_file().ok()
    }
}

impl Store for DirStore {
    type File = MappedFile;

    fn list(&self) -> io::Result<Vec<u32>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let n = name.to_str().and_then(|n| n.strip_prefix("seg-")?.strip_suffix(".log"));
            if let Some(i) = n.and_then(|n| n.parse::<u32>().ok()) {
                out.push(i);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn open(&mut self, index: u32, size: usize) -> io::Result<MappedFile> {
        MappedFile::open(&self.path(index), size)
    }
}

#[cfg(test)]
pub(crate) use self::mem::{Faults, MemStore};

#[cfg(test)]
mod mem {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::io;
    use std::rc::Rc;

    use super::{SegmentFile, Store};

    /// Pages of the crash model.
    const PAGE: usize = 4096;

    /// One file of the model: what the process sees, what a crash keeps for sure, and
    /// the pages written since the last sync.
    #[derive(Clone, Default)]
    struct Image {
        current: Vec<u8>,
        durable: Vec<u8>,
        dirty: std::collections::BTreeSet<usize>,
    }

    /// Failures to inject: the Nth sync (counting from 1) and every one after it fails.
    #[derive(Clone, Copy, Default, Debug)]
    pub(crate) struct Faults {
        pub(crate) fail_sync_from: Option<u64>,
        pub(crate) fail_create: bool,
    }

    #[derive(Default)]
    struct Disk {
        files: BTreeMap<u32, Image>,
        syncs: u64,
        faults: Faults,
    }

    /// A store in memory with a crash model. Clones share the disk.
    #[derive(Clone, Default)]
    pub(crate) struct MemStore(Rc<RefCell<Disk>>);

    impl MemStore {
        pub(crate) fn set_faults(&self, f: Faults) {
            self.0.borrow_mut().faults = f;
        }

        /// The disk after a crash: each file as last synced, plus, for each page
        /// written since, that page's current bytes where `keep(file, page)` says the
        /// kernel had written it back. `keep` always false is a power loss right after
        /// the last syncs; always true is a crash of the process alone.
        pub(crate) fn crash(&self, mut keep: impl FnMut(u32, usize) -> bool) -> MemStore {
            let d = self.0.borrow();
            let mut files = BTreeMap::new();
            for (&i, img) in &d.files {
                let mut bytes = img.durable.clone();
                for &p in &img.dirty {
                    if keep(i, p) {
                        let r = p * PAGE..((p + 1) * PAGE).min(bytes.len());
                        bytes[r.clone()].copy_from_slice(&img.current[r]);
                    }
                }
                let dirty = Default::default();
                files.insert(i, Image { current: bytes.clone(), durable: bytes, dirty });
            }
            MemStore(Rc::new(RefCell::new(Disk { files, syncs: 0, faults: Faults::default() })))
        }
    }

    /// A file of a [`MemStore`].
    pub(crate) struct MemFile {
        disk: Rc<RefCell<Disk>>,
        index: u32,
        len: usize,
    }

    impl SegmentFile for MemFile {
        fn len(&self) -> usize {
            self.len
        }
        fn write(&mut self, off: usize, bytes: &[u8]) {
            let mut d = self.disk.borrow_mut();
            let img = d.files.get_mut(&self.index).expect("open file");
            img.current[off..off + bytes.len()].copy_from_slice(bytes);
            for p in off / PAGE..=(off + bytes.len().max(1) - 1) / PAGE {
                img.dirty.insert(p);
            }
        }
        fn read(&self, off: usize, out: &mut [u8]) {
            let d = self.disk.borrow();
            out.copy_from_slice(&d.files[&self.index].current[off..off + out.len()]);
        }
        fn sync(&mut self) -> io::Result<()> {
            let mut d = self.disk.borrow_mut();
            d.syncs += 1;
            if d.faults.fail_sync_from.is_some_and(|n| d.syncs >= n) {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let img = d.files.get_mut(&self.index).expect("open file");
            img.durable.clone_from(&img.current);
            img.dirty.clear();
            Ok(())
        }
    }

    impl Store for MemStore {
        type File = MemFile;
        fn list(&self) -> io::Result<Vec<u32>> {
            Ok(self.0.borrow().files.keys().copied().collect())
        }
        fn open(&mut self, index: u32, size: usize) -> io::Result<MemFile> {
            let mut d = self.0.borrow_mut();
            if !d.files.contains_key(&index) {
                if d.faults.fail_create {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                // A new file: its zero-filled size is durable at once (as `fallocate`
                // then `fsync` of the directory would make it).
                let z = vec![0u8; size];
                let img = Image { current: z.clone(), durable: z, dirty: Default::default() };
                d.files.insert(index, img);
            }
            let len = d.files[&index].current.len();
            Ok(MemFile { disk: self.0.clone(), index, len })
        }
    }
}
