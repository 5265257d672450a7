//! HTTP through the host: requests reach only the plugin's endpoints
//! (`[capabilities.endpoints]` in keel.toml, bound by the operator), and
//! secrets go in headers as `{{secret:NAME}}` templates the host fills in
//! on the way out, so the plugin never holds them.
//!
//! ```no_run
//! # fn main() -> Result<(), keel_sdk::Error> {
//! let url = keel_sdk::http::endpoint("feed", "")?;
//! let response = keel_sdk::http::get(&url)
//!     .header("authorization", "Bearer {{secret:token}}")
//!     .send()?;
//! let text = response.text()?;
//! # let _ = text;
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::Error;

/// Most bytes one write to the request body stream may carry.
const CHUNK: usize = 4096;

/// A request being built; [`Request::send`] sends it.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
}

/// A response, its body read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code (`200`, `304`, `404`, ...).
    pub status: u16,
    /// Headers in the order received, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body's bytes.
    pub body: Vec<u8>,
}

/// A `GET` of `url`.
pub fn get(url: &str) -> Request {
    Request::new(Method::Get, url)
}

/// A `POST` of `body` to `url`.
pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
    Request::new(Method::Post, url).body(body)
}

/// The URL of endpoint `name` joined with `path` (`""` for the endpoint
/// itself): `endpoint("api", "/v1/items")`. `Denied` when the plugin has
/// no such endpoint.
pub fn endpoint(name: &str, path: &str) -> Result<String, Error> {
    let base = crate::config::endpoint(name).ok_or_else(|| {
        Error::Denied(format!(
            "this plugin has no endpoint `{name}`; add it under [capabilities.endpoints] in keel.toml"
        ))
    })?;
    if path.is_empty() {
        return Ok(base);
    }
    Ok(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    ))
}

impl Request {
    /// A request of `method` to `url`.
    pub fn new(method: Method, url: &str) -> Request {
        Request {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
        }
    }

    /// Adds a header; `{{secret:NAME}}` in its value is replaced by the
    /// host with the plugin's secret `NAME`.
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, with its content type.
    pub fn json<T: Serialize>(self, value: &T) -> Result<Request, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::Invalid(format!("cannot write the request as JSON: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// How long to wait for the connection, the first byte and each next
    /// bytes (the host also bounds it by the run's deadline).
    pub fn timeout(mut self, timeout: Duration) -> Request {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response.
    pub fn send(self) -> Result<Response, Error> {
        let request = self.outgoing()?;
        let body = request
            .body()
            .map_err(|()| Error::Internal("the request body was taken twice".into()))?;
        let options = self.options();
        let pending = outgoing_handler::handle(request, options).map_err(failed)?;
        write_body(&body, &self.body)?;
        OutgoingBody::finish(body, None).map_err(failed)?;
        let response = loop {
            match pending.get() {
                Some(got) => {
                    break got
                        .map_err(|()| Error::Internal("the response was taken twice".into()))?
                        .map_err(failed)?;
                }
                None => pending.subscribe().block(),
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| Error::Internal("the response body was taken twice".into()))?;
        let body = read_body(incoming)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn outgoing(&self) -> Result<OutgoingRequest, Error> {
        let (scheme, rest) = match self.url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            _ => {
                return Err(Error::Invalid(format!(
                    "`{}` is not an http:// or https:// URL",
                    self.url
                )));
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        let headers = Fields::new();
        for (name, value) in &self.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| Error::Invalid(format!("header `{name}`: {e:?}")))?;
        }
        let request = OutgoingRequest::new(headers);
        let bad = |what: &str| Error::Invalid(format!("`{}`: bad {what}", self.url));
        request
            .set_method(&self.method)
            .map_err(|()| bad("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| bad("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| bad("host"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| bad("path"))?;
        Ok(request)
    }

    fn options(&self) -> Option<RequestOptions> {
        let timeout = self.timeout?;
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let options = RequestOptions::new();
        let _ = options.set_connect_timeout(Some(ns));
        let _ = options.set_first_byte_timeout(Some(ns));
        let _ = options.set_between_bytes_timeout(Some(ns));
        Some(options)
    }
}

fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    let stream = body
        .write()
        .map_err(|()| Error::Internal("the request body stream was taken twice".into()))?;
    for chunk in bytes.chunks(CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(stream_failed)?;
    }
    Ok(())
}

fn read_body(incoming: IncomingBody) -> Result<Vec<u8>, Error> {
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| Error::Internal("the response body stream was taken twice".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(stream_failed(e)),
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(body)
}

fn stream_failed(e: StreamError) -> Error {
    match e {
        StreamError::Closed => Error::Unavailable("the connection closed".into()),
        StreamError::LastOperationFailed(e) => match wasip2::http::types::http_error_code(&e) {
            Some(code) => failed(code),
            // A body error can reach the guest without its code; its text
            // still says what happened.
            None => {
                let text = e.to_debug_string();
                if text.contains("body size") {
                    Error::Limit(format!("the response body is over the host's cap: {text}"))
                } else {
                    Error::Unavailable(format!("the response broke off: {text}"))
                }
            }
        },
    }
}

/// The host's answer as a keel error: a refusal of the grant is `Denied`
/// (with the host's reason, which names what to add to keel.toml), a body
/// over the cap is `Limit`, the rest is `Unavailable`.
fn failed(code: ErrorCode) -> Error {
    match code {
        ErrorCode::InternalError(Some(why)) if why.starts_with("denied by keel") => {
            Error::Denied(why)
        }
        ErrorCode::HttpResponseBodySize(size) => Error::Limit(format!(
            "the response body is over the host's cap ({} bytes seen)",
            size.unwrap_or(0)
        )),
        ErrorCode::TlsCertificateError => Error::Unavailable(
            "the server's TLS certificate was not accepted (untrusted, expired or for another name)"
                .into(),
        ),
        other => Error::Unavailable(format!("the request failed: {other:?}")),
    }
}

impl Response {
    /// The body as UTF-8 text (`Invalid` if it is not).
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::Invalid(format!("the response body is not UTF-8: {e}")))
    }

    /// The body as JSON of type `T` (`Invalid` if it does not fit).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Invalid(format!("the response body is not the JSON expected: {e}")))
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
