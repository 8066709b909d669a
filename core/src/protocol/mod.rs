//! The Kafka wire protocol: primitive types, framing, headers and every message, generated
//! from Kafka's JSON schemas.

pub mod api;
pub mod codec;
pub mod error_code;
pub mod frame;
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod generated;
#[cfg(test)]
pub(crate) mod sample;
#[cfg(test)]
mod tests;

use bytes::BytesMut;

pub use codec::{
    DecodeError, DecodeErrorKind, EncodeError, EncodeErrorKind, KStr, Out, Reader, Uuid,
    VersionRange,
};
pub use generated::{ApiKey, Request, Response};

/// A Kafka message (a request, a response or a header) that knows its versions.
pub trait Message: Sized {
    /// The schema's name, e.g. `ApiVersionsRequest`.
    const NAME: &'static str;
    /// The API key, or -1 for headers.
    const API_KEY: i16;
    /// The versions the schema defines.
    const VERSIONS: VersionRange;
    /// The first flexible version, if any.
    const FLEXIBLE_FROM: Option<i16>;

    /// Decodes one message of `version` from `r`, leaving what follows it.
    ///
    /// # Errors
    /// When the version is not one of [`Message::VERSIONS`] or the bytes are not a valid message.
    fn decode(r: &mut Reader, version: i16) -> Result<Self, DecodeError>;

    /// Appends the message, encoded at `version`, to `buf`.
    ///
    /// # Errors
    /// When the version is unknown or a field's value cannot be expressed in it.
    fn encode(&self, buf: &mut BytesMut, version: i16) -> Result<(), EncodeError> {
        let mut out = Out::new(std::mem::take(buf));
        let written = self.encode_out(&mut out, version);
        (*buf, _) = out.finish();
        written
    }

    /// Appends the message, encoded at `version`, to `out` (which may keep long `records`
    /// fields aside instead of copying them; see [`Out::splicing`]).
    ///
    /// # Errors
    /// When the version is unknown or a field's value cannot be expressed in it.
    fn encode_out(&self, out: &mut Out, version: i16) -> Result<(), EncodeError>;
}
