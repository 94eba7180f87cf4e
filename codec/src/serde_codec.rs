//! The [`Codec`](crate::Codec) and [`BorrowCodec`](crate::BorrowCodec) impls
//! shared by the serde formats (JSON, CBOR).
//!
//! Both traits do the same thing for a serde format: encode by appending to
//! the caller's buffer, decode from bytes through one decode path that lends
//! strings to the target type (which decides whether to copy them). Only the
//! format and the two functions differ, so one macro writes both impls.

/// Implements `Codec<T>` for every `T: Serialize + DeserializeOwned` and
/// `BorrowCodec<'de, T>` for every `T: Serialize + Deserialize<'de>` on the
/// zero-sized codec `$codec`, speaking `$format`, through the module's own
/// `$encode` (`fn<T: Serialize>(&T, &mut Vec<u8>) -> Result<(), EncodeError>`)
/// and `$decode` (`fn<'de, T: Deserialize<'de>>(&'de [u8]) -> Result<T,
/// DecodeError>`).
///
/// The attributes before `impl BorrowCodec` (its doc comment) go on that
/// impl: what borrows from the message differs by format.
macro_rules! serde_codec_impls {
    (
        codec: $codec:ty,
        format: $format:expr,
        encode: $encode:path,
        decode: $decode:path,
        $(#[$borrow_attr:meta])*
        impl BorrowCodec
    ) => {
        impl<T: ::serde::Serialize + ::serde::de::DeserializeOwned> $crate::codec::Codec<T>
            for $codec
        {
            fn format(&self) -> $crate::format::Format {
                $format
            }

            fn encode(
                &self,
                value: &T,
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), $crate::error::EncodeError> {
                $encode(value, out)
            }

            fn decode(&self, bytes: &[u8]) -> ::std::result::Result<T, $crate::error::DecodeError> {
                $decode(bytes)
            }
        }

        $(#[$borrow_attr])*
        impl<'de, T: ::serde::Serialize + ::serde::Deserialize<'de>>
            $crate::borrow::BorrowCodec<'de, T> for $codec
        {
            fn wire_format(&self) -> $crate::format::Format {
                $format
            }

            fn encode_borrowed(
                &self,
                value: &T,
                out: &mut ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<(), $crate::error::EncodeError> {
                $encode(value, out)
            }

            fn decode_borrowed(
                &self,
                bytes: &'de [u8],
            ) -> ::std::result::Result<T, $crate::error::DecodeError> {
                $decode(bytes)
            }
        }
    };
}

pub(crate) use serde_codec_impls;
