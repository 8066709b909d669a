//! Deterministic sample values for the codec tests: every field a version has is set to a
//! non-default value, nullable fields are sometimes null, arrays are non-empty and flexible
//! structs carry unknown tagged fields.

use bytes::Bytes;

use super::codec::{KStr, UnknownTaggedFields, Uuid};

/// A small deterministic generator (xorshift64*).
#[derive(Debug)]
pub(crate) struct Gen(u64);

impl Gen {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub(crate) fn i8(&mut self) -> i8 {
        (self.below(120) + 2) as i8
    }
    pub(crate) fn i16(&mut self) -> i16 {
        (self.below(30_000) + 2) as i16
    }
    pub(crate) fn u16(&mut self) -> u16 {
        (self.below(60_000) + 2) as u16
    }
    pub(crate) fn i32(&mut self) -> i32 {
        (self.below(2_000_000_000) + 2) as i32
    }
    pub(crate) fn i64(&mut self) -> i64 {
        (self.below(1 << 62) + 2) as i64
    }
    pub(crate) fn f64(&mut self) -> f64 {
        (self.below(1_000_000) + 1) as f64 / 7.0
    }
    pub(crate) fn uuid(&mut self) -> Uuid {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&(self.next() | 1).to_be_bytes());
        Uuid(id)
    }
    pub(crate) fn string(&mut self) -> KStr {
        let len = 1 + self.below(12) as usize;
        let s: String = (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect();
        KStr::from(s)
    }
    pub(crate) fn bytes(&mut self) -> Bytes {
        let len = 1 + self.below(40) as usize;
        (0..len)
            .map(|_| self.next() as u8)
            .collect::<Vec<u8>>()
            .into()
    }
    /// How many elements an array gets: never zero.
    pub(crate) fn count(&mut self) -> usize {
        1 + self.below(3) as usize
    }
    /// Whether a nullable field is null this time.
    pub(crate) fn null(&mut self) -> bool {
        self.below(3) == 0
    }
    /// Unknown tagged fields with tags from `from` up.
    pub(crate) fn unknown_tags(&mut self, from: u32) -> UnknownTaggedFields {
        let mut fields = UnknownTaggedFields::default();
        for i in 0..self.below(3) {
            fields.insert(from + 1 + i as u32 * 3, self.bytes());
        }
        fields
    }
}
