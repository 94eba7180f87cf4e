//! Integration and interop tests for ringwire; see `tests/`.
