//! Kafka error codes, as the protocol numbers them.

/// A Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub i16);

impl ErrorCode {
    /// No error.
    pub const NONE: Self = Self(0);
    /// The message failed its CRC check, or is otherwise corrupt.
    pub const CORRUPT_MESSAGE: Self = Self(2);
    /// The version of the API is not supported.
    pub const UNSUPPORTED_VERSION: Self = Self(35);
    /// The request is malformed or otherwise invalid.
    pub const INVALID_REQUEST: Self = Self(42);
    /// The compression codec is not supported.
    pub const UNSUPPORTED_COMPRESSION_TYPE: Self = Self(76);
    /// A record failed validation.
    pub const INVALID_RECORD: Self = Self(87);
}

impl From<ErrorCode> for i16 {
    fn from(code: ErrorCode) -> Self {
        code.0
    }
}
