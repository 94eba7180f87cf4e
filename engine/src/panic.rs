//! Panic payloads, for the places that contain a panic: a handler callback (the worker),
//! a handler factory and a worker thread (start and shutdown).

use std::any::Any;

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}
