//! Message codecs for ringwire (issue 4: not built yet).
#![forbid(unsafe_code)]
