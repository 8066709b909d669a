//! Hostile element counts are refused before anything is reserved.
//!
//! A counting allocator measures what decoding a 20-byte frame that declares 2^31-1 (or, in
//! a compact array, 2^32-2) elements allocates on this thread. The bound: nothing at all
//! beyond the frame itself, asserted as at most 64 bytes to leave room for the standard
//! library.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use iggy_kafka_core::protocol::{ApiKey, DecodeErrorKind, Reader, Request};
use iggy_kafka_core::{CloseReason, Config, Connection};

struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size()));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let out = f();
    (out, ALLOCATED.with(Cell::get) - before)
}

const BOUND: usize = 64;

#[test]
fn a_huge_declared_array_is_refused_without_allocating() {
    // Metadata v1 body: Topics count 0x7fffffff, then 16 bytes where 2^31-1 topics would be.
    let mut body = vec![0x7f, 0xff, 0xff, 0xff];
    body.extend_from_slice(&[0u8; 16]);
    assert_eq!(body.len(), 20);
    let body = Bytes::from(body);
    let (result, bytes) =
        allocated_by(|| Request::decode(ApiKey::Metadata, 1, &mut Reader::new(body, 0)));
    let err = result.expect_err("refused");
    assert!(
        matches!(
            err.kind,
            DecodeErrorKind::TooManyElements {
                count: 0x7fff_ffff,
                remaining: 16
            }
        ),
        "{err}"
    );
    assert_eq!(
        (err.api_key, err.version, err.field, err.offset),
        (3, 1, "MetadataRequest.Topics", 0)
    );
    assert!(bytes <= BOUND, "decoding allocated {bytes} bytes");
}

#[test]
fn a_huge_declared_compact_array_is_refused_without_allocating() {
    // Metadata v9 body: compact Topics count uvarint 0xffffffff (= 2^32-2 elements), then
    // 15 bytes.
    let mut body = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    body.extend_from_slice(&[1u8; 15]);
    assert_eq!(body.len(), 20);
    let body = Bytes::from(body);
    let (result, bytes) =
        allocated_by(|| Request::decode(ApiKey::Metadata, 9, &mut Reader::new(body, 0)));
    let err = result.expect_err("refused");
    assert!(
        matches!(
            err.kind,
            DecodeErrorKind::TooManyElements { remaining: 15, .. }
        ),
        "{err}"
    );
    assert!(bytes <= BOUND, "decoding allocated {bytes} bytes");
}

#[test]
fn a_huge_nested_array_inside_a_frame_closes_the_connection_cheaply() {
    // A whole ApiVersions v3 frame whose tagged-field count claims 2^32-1 fields.
    let frame: &[u8] = b"\x00\x00\x00\x14\x00\x12\x00\x03\x00\x00\x00\x01\xff\xff\x00\x02a\x02b\xff\xff\xff\xff\x0f\x00";
    let now = Instant::now();
    let mut conn = Connection::new(std::sync::Arc::new(Config::default()), now);
    let mut buf = BytesMut::from(frame);
    let ((), bytes) = allocated_by(|| conn.handle_input(now, &mut buf));
    assert!(
        matches!(conn.close_reason(), Some(CloseReason::Malformed(_))),
        "{:?}",
        conn.close_reason()
    );
    // The connection logs the reason; the frame itself is a slice of `buf`.
    assert!(bytes <= 1024, "handling the frame allocated {bytes} bytes");
}
