//! The HTTP of the listener: one request head read whole and bounded,
//! a body of a known length, a one-line JSON reply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest wait for the next bytes from a client.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a whole request may take to arrive.
pub(super) const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// How long, and how many bytes, a connection is drained after its reply.
pub(super) const LINGER: Duration = Duration::from_secs(1);
pub(super) const LINGER_BYTES: usize = 256 * 1024;
/// Largest request line plus headers.
pub(super) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A reply: status and one-line JSON body.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: serde_json::Value,
}

pub(super) fn reply(status: u16, message: impl Into<String>) -> Reply {
    Reply {
        status,
        body: serde_json::json!({ "error": message.into() }),
    }
}

/// The request line and headers of one request.
pub(super) struct Head {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) headers: Vec<(String, String)>,
    /// Bytes read past the headers: the start of the body.
    pub(super) rest: Vec<u8>,
}

impl Head {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads into `buf` with the per-read timeout, never past `deadline`.
pub(super) fn read_some(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> std::io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left.min(READ_TIMEOUT)))?;
    stream.read(buf)
}

/// Reads the request line and headers. `Err(None)`: close without a reply.
pub(super) fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Head, Option<Reply>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(head) = parse_head(&buf)? {
            return Ok(head);
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Some(reply(431, "the request headers are too large")));
        }
        match read_some(stream, &mut chunk, deadline) {
            Ok(0) => return Err(None),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(Some(reply(
                    408,
                    "the request headers did not arrive in time",
                )));
            }
            Err(_) => return Err(None),
        }
    }
}

/// Most headers one request may carry.
pub(super) const MAX_HEADERS: usize = 64;

/// The request head in `buf`, once it is whole (httparse reads it).
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, Option<Reply>> {
    let bad = || Some(reply(400, "the request is not HTTP/1.1"));
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let end = match req.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Some(reply(431, "the request has too many headers")));
        }
        Err(_) => return Err(bad()),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(bad());
    };
    let mut pairs = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| bad())?;
        pairs.push((h.name.to_string(), value.trim().to_string()));
    }
    let head = Head {
        method: method.to_string(),
        path: target.split('?').next().unwrap_or("").to_string(),
        headers: pairs,
        rest: buf[end..].to_vec(),
    };
    if head.header("Transfer-Encoding").is_some() {
        return Err(Some(reply(
            411,
            "send the body with a Content-Length header, not chunked",
        )));
    }
    let lengths = head
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"))
        .count();
    if lengths > 1 {
        return Err(Some(reply(400, "send one Content-Length header")));
    }
    Ok(Some(head))
}

/// Reads exactly `length` body bytes (some may have come with the head).
pub(super) fn read_body(
    stream: &mut TcpStream,
    mut body: Vec<u8>,
    length: u64,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let length = usize::try_from(length).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    body.truncate(length);
    let mut chunk = [0u8; 8192];
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        match read_some(stream, &mut chunk[..want], deadline)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(body)
}

pub(super) fn respond(stream: &mut TcpStream, reply: &Reply) {
    let reason = match reply.status {
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let body = reply.body.to_string();
    let text = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reply.status,
        body.len()
    );
    if let Err(e) = stream.write_all(text.as_bytes()) {
        tracing::warn!("webhook reply not sent: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Closing with unread bytes (a body refused before it was read) makes
    // the kernel reset the connection, which can destroy the reply before
    // the client reads it; so read a bounded amount until the client
    // closes.
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match read_some(stream, &mut sink, until) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}
