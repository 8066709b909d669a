use super::*;

fn written(c: &mut HttpConnection) -> String {
    let mut out = Vec::new();
    while let Some(b) = c.poll_transmit() {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn a_get_is_answered_byte_for_byte_and_the_connection_kept() {
    let now = Instant::now();
    let mut c = HttpConnection::new(now);
    c.handle_input(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", now);
    let req = c.poll_request().expect("a request");
    assert_eq!(req.path, "/metrics");
    assert_eq!(req.query, "x=1");
    assert!(!req.head_only);
    assert_eq!(c.poll_request(), None, "once");
    c.respond(&req, HttpResponse::text(200, "ok\n"), now);
    assert_eq!(
        written(&mut c),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\r\nok\n"
    );
    assert!(!c.is_closed());
}

#[test]
fn head_gets_no_body_and_close_is_honoured() {
    let now = Instant::now();
    let mut c = HttpConnection::new(now);
    c.handle_input(b"HEAD /health HTTP/1.1\r\nConnection: close\r\n\r\n", now);
    let req = c.poll_request().expect("a request");
    assert!(req.head_only);
    c.respond(&req, HttpResponse::text(200, "ok\n"), now);
    let out = written(&mut c);
    assert!(out.contains("Content-Length: 3\r\n"));
    assert!(out.contains("Connection: close\r\n"));
    assert!(out.ends_with("\r\n\r\n"), "no body");
    assert!(c.is_closed());
}

#[test]
fn pipelined_requests_are_answered_in_turn() {
    let now = Instant::now();
    let mut c = HttpConnection::new(now);
    c.handle_input(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", now);
    let a = c.poll_request().expect("a");
    assert_eq!(c.poll_request(), None, "one at a time");
    c.respond(&a, HttpResponse::text(200, "a"), now);
    let b = c.poll_request().expect("b");
    assert_eq!(b.path, "/b");
}

#[test]
fn requests_that_are_not_served_get_their_code_and_a_close() {
    for (input, code) in [
        (&b"POST /metrics HTTP/1.1\r\n\r\n"[..], "405"),
        (b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", "400"),
        (
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "400",
        ),
        (b"\x00\x01\x02 garbage\r\n\r\n", "400"),
    ] {
        let now = Instant::now();
        let mut c = HttpConnection::new(now);
        c.handle_input(input, now);
        assert_eq!(c.poll_request(), None);
        let out = written(&mut c);
        assert!(out.starts_with(&format!("HTTP/1.1 {code} ")), "{out}");
        assert!(c.is_closed());
    }
}

#[test]
fn heads_are_bounded() {
    let now = Instant::now();
    let mut c = HttpConnection::new(now);
    c.handle_input(b"GET / HTTP/1.1\r\n", now);
    for _ in 0..MAX_HEAD / 16 + 1 {
        c.handle_input(b"X-Filler: 12345\r\n", now);
    }
    assert!(written(&mut c).starts_with("HTTP/1.1 431 "));
    assert!(c.is_closed());

    let mut c = HttpConnection::new(now);
    let mut many = String::from("GET / HTTP/1.1\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    c.handle_input(many.as_bytes(), now);
    assert!(written(&mut c).starts_with("HTTP/1.1 431 "));
}

#[test]
fn a_slow_head_and_an_idle_connection_are_closed() {
    let now = Instant::now();
    let mut c = HttpConnection::new(now);
    c.handle_input(b"GET / HT", now);
    let later = c.poll_timeout().expect("a deadline");
    assert_eq!(later, now + HEAD_TIMEOUT);
    c.handle_timeout(later);
    assert!(written(&mut c).starts_with("HTTP/1.1 408 "));
    assert!(c.is_closed());

    let mut c = HttpConnection::new(now);
    c.handle_input(b"GET / HTTP/1.1\r\n\r\n", now);
    let req = c.poll_request().expect("a request");
    assert_eq!(c.poll_timeout(), None, "no deadline while answering");
    c.respond(&req, HttpResponse::text(200, ""), now);
    written(&mut c);
    let idle = c.poll_timeout().expect("idle deadline");
    c.handle_timeout(idle);
    assert!(c.is_closed());
}
