//! ringwire: the thread-per-core engine (issue 3: not built yet).
pub use ringwire_frame as frame;
