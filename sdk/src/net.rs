//! TCP to the plugin's `tcp` endpoints (`[capabilities.endpoints] imap =
//! "tcp"`, bound by the operator to `HOST:PORT`). The host checks every
//! connection against the endpoints and audits it; nothing else can be
//! reached.
//!
//! ```no_run
//! # fn main() -> Result<(), keel_sdk::Error> {
//! use std::io::{BufRead, BufReader};
//! let stream = keel_sdk::net::connect("imap")?;
//! let mut greeting = String::new();
//! BufReader::new(&stream).read_line(&mut greeting).ok();
//! # Ok(())
//! # }
//! ```

use std::net::TcpStream;
use std::time::Duration;

use crate::Error;

/// Longest wait for the connection.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Where endpoint `name` is: `(host, port, tls)`.
pub fn address(name: &str) -> Result<(String, u16, bool), Error> {
    let bound = crate::config::endpoint(name).ok_or_else(|| {
        Error::Denied(format!(
            "this plugin has no endpoint `{name}`; add it under [capabilities.endpoints] in keel.toml"
        ))
    })?;
    let (tls, rest) = match bound.strip_prefix("tls://") {
        Some(rest) => (true, rest),
        None => (false, bound.as_str()),
    };
    let not_tcp = || {
        Error::Invalid(format!(
            "endpoint `{name}` is `{bound}`, not a TCP endpoint"
        ))
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(not_tcp)?;
    let port = port.parse().map_err(|_| not_tcp())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port, tls))
}

/// A TCP connection to endpoint `name`. One bound for TLS from the first
/// byte (`imaps://`, `smtps://`, `tls://`) is refused here until the SDK
/// speaks TLS; plain protocols work as they are.
pub fn connect(name: &str) -> Result<TcpStream, Error> {
    let (host, port, tls) = address(name)?;
    if tls {
        return Err(Error::Unavailable(format!(
            "endpoint `{name}` needs TLS, which the Rust SDK does not speak yet"
        )));
    }
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .map_err(|e| Error::Unavailable(format!("{host} does not resolve: {e}")))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_WAIT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Error::Denied(format!(
            "keel refused the connection to {host}:{port}; it is not one of this plugin's endpoints"
        )),
        Some(e) => Error::Unavailable(format!("cannot connect to {host}:{port}: {e}")),
        None => Error::Unavailable(format!("{host} resolves to no address")),
    })
}
