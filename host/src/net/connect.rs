//! Reaching an endpoint: its name resolved by the host, each address
//! checked (public, or the literal address the operator bound), the
//! connection made to a checked address (never a second lookup), and TLS
//! verified against the roots of [`super::tls`].

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::manifest::Host;

/// A connection HTTP can be spoken over, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Why an endpoint could not be reached: `refused` is the host's policy
/// (audited as denied), the rest is the network's.
#[derive(Debug)]
pub enum Failure {
    /// The name resolves to no address the plugin may reach.
    Refused(String),
    /// The name does not resolve.
    Unresolved(String),
    /// No connection could be made.
    Unreachable(std::io::Error),
    /// The TLS handshake failed; certificate problems are named.
    Tls { certificate: bool, detail: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(why) => f.write_str(why),
            Failure::Unresolved(why) => f.write_str(why),
            Failure::Unreachable(e) => write!(f, "cannot connect: {e}"),
            Failure::Tls { detail, .. } => write!(f, "TLS failed: {detail}"),
        }
    }
}

/// A refusal as the guest gets it: `internal-error` is the only
/// `wasi:http` code that carries text, and the author needs the reason
/// (the Rust SDK reads the prefix back as `Denied`).
pub fn refusal(why: &str) -> wasmtime_wasi_http::Error {
    wasmtime_wasi_http::Error::InternalError(Some(format!("denied by keel: {why}")))
}

impl From<&Failure> for wasmtime_wasi_http::Error {
    fn from(f: &Failure) -> Self {
        use wasmtime_wasi_http::Error as E;
        match f {
            Failure::Refused(why) => refusal(why),
            Failure::Unresolved(_) => E::DnsError {
                rcode: None,
                info_code: None,
            },
            Failure::Unreachable(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                E::ConnectionRefused
            }
            Failure::Unreachable(_) => E::DestinationUnavailable,
            Failure::Tls {
                certificate: true, ..
            } => E::TlsCertificateError,
            Failure::Tls { .. } => E::TlsProtocolError,
        }
    }
}

/// The addresses of `host` a plugin may connect to, in resolver order:
/// the literal address bound, or the public addresses a name resolves to.
pub async fn addresses(host: &Host, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let name = match host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Name(name) => name,
    };
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
        .await
        .map_err(|e| Failure::Unresolved(format!("{name} does not resolve: {e}")))?
        .collect();
    let allowed: Vec<SocketAddr> = resolved
        .iter()
        .copied()
        .filter(|a| super::allowed(host, a.ip()))
        .collect();
    match (allowed.is_empty(), resolved.first()) {
        (false, _) => Ok(allowed),
        (true, None) => Err(Failure::Unresolved(format!(
            "{name} resolves to no address"
        ))),
        (true, Some(first)) => Err(Failure::Refused(format!(
            "{name} resolves to {}, which is not a public address; a plugin reaches a local or private address only when the operator binds that literal address (--endpoint NAME=http://{}:{port})",
            first.ip(),
            first.ip()
        ))),
    }
}

/// A TCP connection to the first of `addrs` that answers.
pub async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, Failure> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(Failure::Unreachable(last))
}

/// TLS over `stream` with `host` as the server name, verified.
pub async fn tls(
    config: &Arc<rustls::ClientConfig>,
    host: &Host,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failure> {
    let name = match host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(name) => ServerName::try_from(name.clone()).map_err(|e| Failure::Tls {
            certificate: false,
            detail: format!("{name} is not a TLS server name: {e}"),
        })?,
    };
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| {
            let rustls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            Failure::Tls {
                certificate: matches!(rustls_error, Some(rustls::Error::InvalidCertificate(_))),
                detail: e.to_string(),
            }
        })
}
