//! One admin HTTP/1.1 connection as a pure state machine: request heads parsed with
//! `httparse`, responses framed here, time as an argument.
//!
//! The adapter drives it in this order, until [`HttpConnection::is_closed`]:
//!
//! 1. Read what the socket has and pass it to [`HttpConnection::handle_input`].
//! 2. Take each [`HttpConnection::poll_request`] and answer it with
//!    [`HttpConnection::respond`] (one request at a time: the next is parsed once the last
//!    is answered).
//! 3. Write everything [`HttpConnection::poll_transmit`] gives.
//! 4. Sleep no later than [`HttpConnection::poll_timeout`] and then call
//!    [`HttpConnection::handle_timeout`]; report the end of the byte stream with
//!    [`HttpConnection::handle_closed`].
//!
//! Only `GET` and `HEAD` without a body are served; request heads are bounded
//! ([`MAX_HEAD`], [`MAX_HEADERS`]) and must arrive within [`HEAD_TIMEOUT`], and an idle
//! keep-alive connection is closed after [`IDLE_TIMEOUT`], so a slow or hostile client holds
//! little and not for long. Anything else gets its 4xx answer and the connection closes.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

/// The longest request head taken (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 32;
/// How long a request head may take to arrive once it started (or once the connection
/// opened).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may sit idle between requests.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a response may take to be written out.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request the connection took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET` or `HEAD`.
    pub head_only: bool,
    /// The path, without the query.
    pub path: String,
    /// The query, without the `?`.
    pub query: String,
}

/// An answer to an [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// A plain-text answer.
    #[must_use]
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head.
    Reading,
    /// A request was handed out and is not answered yet.
    Answering,
    /// Closes once what is queued has been written.
    Closing,
    Closed,
}

/// One admin connection (see the module documentation for the call order).
#[derive(Debug)]
pub struct HttpConnection {
    state: State,
    input: BytesMut,
    request: Option<HttpRequest>,
    keep_alive: bool,
    transmit: VecDeque<Bytes>,
    /// When the current wait ends: for a head, an idle connection, or a write.
    deadline: Instant,
}

impl HttpConnection {
    /// A connection accepted at `now`.
    #[must_use]
    pub fn new(now: Instant) -> Self {
        Self {
            state: State::Reading,
            input: BytesMut::new(),
            request: None,
            keep_alive: true,
            transmit: VecDeque::new(),
            deadline: now + HEAD_TIMEOUT,
        }
    }

    /// Bytes read from the client.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        if self.state != State::Reading {
            // Pipelined bytes wait for the answer in progress; a client sending more than a
            // head's worth meanwhile is cut off.
            if self.state == State::Answering && self.input.len() + data.len() <= MAX_HEAD {
                self.input.extend_from_slice(data);
            } else if self.state == State::Answering {
                self.keep_alive = false;
            }
            return;
        }
        if self.input.is_empty() && !data.is_empty() {
            // A new request head starts: it has this long to arrive whole.
            self.deadline = now + HEAD_TIMEOUT;
        }
        self.input.extend_from_slice(data);
        self.parse(now);
    }

    /// The byte stream ended (or failed).
    pub fn handle_closed(&mut self) {
        self.state = State::Closed;
        self.transmit.clear();
    }

    /// The request taken, once: answer it with [`Self::respond`].
    pub fn poll_request(&mut self) -> Option<HttpRequest> {
        self.request.take()
    }

    /// Answers the request handed out by [`Self::poll_request`].
    pub fn respond(&mut self, request: &HttpRequest, response: HttpResponse, now: Instant) {
        if self.state != State::Answering {
            return;
        }
        self.queue(response, request.head_only);
        if self.keep_alive {
            self.state = State::Reading;
            self.deadline = now + IDLE_TIMEOUT.max(WRITE_TIMEOUT);
            self.parse(now);
        } else {
            self.state = State::Closing;
            self.deadline = now + WRITE_TIMEOUT;
        }
    }

    /// The next bytes to write.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let t = self.transmit.pop_front();
        if t.is_none() && self.state == State::Closing {
            self.state = State::Closed;
        }
        t
    }

    /// When [`Self::handle_timeout`] is due.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed | State::Answering => None,
            State::Reading | State::Closing => Some(self.deadline),
        }
    }

    /// A timer fired: a head that did not arrive in time, an idle connection or a stalled
    /// write ends the connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.deadline {
            return;
        }
        match self.state {
            State::Reading if !self.input.is_empty() => {
                tracing::debug!("admin request head too slow; closing");
                self.refuse(408, "the request took too long to arrive");
                self.deadline = now + WRITE_TIMEOUT;
            }
            State::Reading | State::Closing => {
                self.state = State::Closed;
                self.transmit.clear();
            }
            State::Answering | State::Closed => {}
        }
    }

    /// Whether the connection is over: drop the socket.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the socket should be read now.
    #[must_use]
    pub fn wants_input(&self) -> bool {
        matches!(self.state, State::Reading | State::Answering)
    }

    fn parse(&mut self, now: Instant) {
        if self.state != State::Reading || self.input.is_empty() {
            return;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&self.input);
        let head_len = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.input.len() > MAX_HEAD => {
                return self.refuse(431, "request head too large");
            }
            Ok(httparse::Status::Partial) => return,
            Err(httparse::Error::TooManyHeaders) => {
                return self.refuse(431, "too many request headers");
            }
            Err(e) => {
                tracing::debug!(error = %e, "malformed admin request");
                return self.refuse(400, "malformed request");
            }
        };
        if head_len > MAX_HEAD {
            return self.refuse(431, "request head too large");
        }
        let method = req.method.unwrap_or_default();
        let target = req.path.unwrap_or_default();
        let http10 = req.version == Some(0);
        let mut keep_alive = !http10;
        let mut body = false;
        for h in req.headers.iter() {
            let value = String::from_utf8_lossy(h.value);
            if h.name.eq_ignore_ascii_case("connection") {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                || (h.name.eq_ignore_ascii_case("content-length") && value.trim() != "0")
            {
                body = true;
            }
        }
        let head_only = match method {
            "GET" => false,
            "HEAD" => true,
            _ => return self.refuse(405, "only GET and HEAD are served"),
        };
        if body {
            return self.refuse(400, "requests with a body are not served");
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let request = HttpRequest {
            head_only,
            path: path.to_owned(),
            query: query.to_owned(),
        };
        self.input.advance(head_len);
        self.keep_alive = keep_alive;
        self.state = State::Answering;
        self.deadline = now + HEAD_TIMEOUT;
        self.request = Some(request);
    }

    /// Answers a request that cannot be served, and closes.
    fn refuse(&mut self, status: u16, why: &str) {
        self.input.clear();
        self.keep_alive = false;
        self.queue(HttpResponse::text(status, format!("{why}\n")), false);
        self.state = State::Closing;
    }

    fn queue(&mut self, response: HttpResponse, head_only: bool) {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
            response.status,
            reason(response.status),
            response.content_type,
            response.body.len()
        );
        if !self.keep_alive {
            head.push_str("Connection: close\r\n");
        }
        if response.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        self.transmit.push_back(Bytes::from(head));
        if !head_only && !response.body.is_empty() {
            self.transmit.push_back(response.body);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
