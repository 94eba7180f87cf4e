//! Integration and interop tests for ringwire; see `tests/`. This library holds what
//! several test files share.

pub mod duplex;
