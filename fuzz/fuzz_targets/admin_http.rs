//! The admin listener's HTTP machine fed whatever a hostile client might send, in arbitrary
//! chunks, with time passing and answers given at any moment. It must never panic, hand out
//! only `GET`/`HEAD` requests without bodies, keep what it buffers within its bound, write
//! only well-formed status lines, and end once closed.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use iggy_kafka_admin::http::{HttpConnection, HttpResponse, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Step {
    Input(Vec<u8>),
    /// Answer the request handed out, if any, with this status and body length.
    Answer {
        status: u16,
        body: u16,
    },
    Wait(u16),
    Close,
}

fuzz_target!(|steps: Vec<Step>| {
    let start = Instant::now();
    let mut now = start;
    let mut c = HttpConnection::new(now);
    let mut pending = None;
    let mut closed = false;
    for step in steps.into_iter().take(256) {
        match step {
            Step::Input(b) => c.handle_input(&b, now),
            Step::Answer { status, body } => {
                if let Some(req) = pending.take() {
                    let response = HttpResponse {
                        status: 100 + status % 500,
                        content_type: "text/plain",
                        body: vec![b'x'; usize::from(body % 4096)].into(),
                    };
                    c.respond(&req, response, now);
                }
            }
            Step::Wait(ms) => {
                now += Duration::from_millis(u64::from(ms) * 16);
                if c.poll_timeout().is_some_and(|t| t <= now) {
                    c.handle_timeout(now);
                }
            }
            Step::Close => c.handle_closed(),
        }
        if pending.is_none() {
            if let Some(req) = c.poll_request() {
                assert!(req.path.len() + req.query.len() < MAX_HEAD);
                pending = Some(req);
            }
        }
        assert!(c.poll_request().is_none(), "one request at a time");
        let mut out = Vec::new();
        while let Some(b) = c.poll_transmit() {
            out.extend_from_slice(&b);
        }
        if !out.is_empty() {
            assert!(!closed, "nothing written once closed");
            // Every response starts with a status line (bodies follow their heads).
            if out.starts_with(b"HTTP/") {
                let line_end = out
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("a status line");
                let line = std::str::from_utf8(&out[..line_end]).expect("ASCII");
                assert!(line.starts_with("HTTP/1.1 "), "{line}");
            }
        }
        if c.is_closed() {
            closed = true;
            assert_eq!(c.poll_timeout(), None);
        }
    }
});
