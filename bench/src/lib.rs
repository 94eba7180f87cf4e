//! Shared helpers for ringwire's benchmarks.
