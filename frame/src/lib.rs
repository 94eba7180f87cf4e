//! ringwire-frame
#![forbid(unsafe_code)]
