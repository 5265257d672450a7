//! The host's sender for `wasi:http/outgoing-handler`: every request a
//! plugin makes is matched to one of its endpoints, its name resolved and
//! its addresses checked by the host, its secret templates filled in, its
//! time bounded by the run's deadline and its response capped, and it is
//! audited whatever becomes of it. Redirects are the guest's to follow, so
//! each hop is checked like a first request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

mod io;

use io::{Capped, respond};

use super::connect::{Failure, Stream, addresses, connect, refusal, tls};
use super::log::{Attempt, Kind, NetLog};
use crate::manifest::{Endpoint, Scheme};

/// Longest wait for a connection, a first byte or the next bytes, unless
/// the run's deadline comes sooner.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Most bytes of response headers read.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// What one run's requests are checked against.
pub struct Policy {
    /// `id@version`, for messages.
    pub label: String,
    pub endpoints: BTreeMap<String, Endpoint>,
    /// The plugin's secret names and their values (none when the stored
    /// secret is not set), for header templates.
    pub secrets: BTreeMap<String, Option<String>>,
    /// The TLS roots; none for a plugin with no endpoint.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub deadline: Instant,
    /// Most bytes of one response body.
    pub body_cap: u64,
    pub log: NetLog,
}

/// The send hook a run's `wasi:http` calls go through.
pub struct Sender(pub Arc<Policy>);

type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

impl WasiHttpHooks for Sender {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = Result<Sent, Error>> + Send> {
        let policy = self.0.clone();
        Box::new(async move { send(&policy, request, options).await })
    }
}

/// Where a request goes, as matched against endpoints.
struct Target {
    scheme: Scheme,
    host: String,
    port: u16,
    path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.path
        )
    }
}

fn target(uri: &http::Uri) -> Result<Target, Error> {
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(Error::HttpProtocolError),
    };
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?;
    let port = uri.port_u16().unwrap_or(match scheme {
        Scheme::Http => 80,
        Scheme::Https => 443,
    });
    Ok(Target {
        scheme,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        path: uri.path().to_string(),
    })
}

async fn send(
    policy: &Policy,
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Sent, Error> {
    let to = target(request.uri())?;
    let what = format!("{} {to}", request.method());
    let Some((name, endpoint)) = policy
        .endpoints
        .iter()
        .find(|(_, e)| e.admits(to.scheme, &to.host, to.port, &to.path))
    else {
        let why = format!(
            "{to} is not one of {}'s endpoints; add it under [capabilities.endpoints] in keel.toml and bind it with --endpoint NAME=URL",
            policy.label
        );
        policy.log.denied(Kind::Request, what, &why);
        return Err(refusal(&why));
    };
    if let Err(why) = fill_secrets(request.headers_mut(), &policy.secrets) {
        policy.log.denied(Kind::Request, what, &why);
        return Err(refusal(&why));
    }
    let resolve_wait = within(policy.deadline, options.and_then(|o| o.connect_timeout));
    let addrs = match tokio::time::timeout(resolve_wait, addresses(endpoint.host(), to.port)).await
    {
        Err(_) => return Err(Error::DnsTimeout),
        Ok(Err(Failure::Refused(why))) => {
            policy.log.denied(Kind::Request, what, &why);
            return Err(refusal(&why));
        }
        Ok(Err(other)) => {
            let attempt = policy.log.allowed(Kind::Request, what, name);
            attempt.set_status(other.to_string());
            attempt.finish();
            return Err((&other).into());
        }
        Ok(Ok(addrs)) => addrs,
    };
    let attempt = policy.log.allowed(Kind::Request, what, name);
    let wanted = Wanted {
        endpoint,
        to: &to,
        addrs: &addrs,
        options,
    };
    match exchange(policy, wanted, request, &attempt).await {
        Ok(sent) => Ok(sent),
        Err((code, detail)) => {
            attempt.set_status(detail);
            attempt.finish();
            Err(code)
        }
    }
}

/// Replaces `{{secret:NAME}}` in header values with the secret's value.
fn fill_secrets(
    headers: &mut http::HeaderMap,
    secrets: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    for value in headers.values_mut() {
        let Ok(text) = value.to_str() else { continue };
        if !text.contains("{{secret:") {
            continue;
        }
        let filled = fill(text, secrets)?;
        let mut new = http::HeaderValue::from_str(&filled)
            .map_err(|_| "a secret's value cannot go in a header".to_string())?;
        new.set_sensitive(true);
        *value = new;
    }
    Ok(())
}

fn fill(text: &str, secrets: &BTreeMap<String, Option<String>>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{secret:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "{{secret:".len()..];
        let end = after
            .find("}}")
            .ok_or("a `{{secret:` template in a header is not closed with `}}`")?;
        let name = &after[..end];
        match secrets.get(name) {
            Some(Some(value)) => out.push_str(value),
            Some(None) => {
                return Err(format!(
                    "secret `{name}` is not set; the operator sets it with `keel secret set`"
                ));
            }
            None => {
                return Err(format!(
                    "secret `{name}` is not granted; add it to `secrets` under [capabilities] in keel.toml"
                ));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The guest's wait for `asked`, within `MAX_WAIT` and the run's deadline.
fn within(deadline: Instant, asked: Option<Duration>) -> Duration {
    let left = deadline.saturating_duration_since(Instant::now());
    asked.unwrap_or(MAX_WAIT).min(MAX_WAIT).min(left)
}

/// Where one request goes and how long it may wait.
struct Wanted<'a> {
    endpoint: &'a Endpoint,
    to: &'a Target,
    addrs: &'a [std::net::SocketAddr],
    options: Option<RequestOptions>,
}

/// What went wrong: the code the guest gets, and the detail the audit keeps.
type Failed = (Error, String);

fn failed(f: Failure) -> Failed {
    ((&f).into(), f.to_string())
}

fn timed_out(what: &str) -> Failed {
    (Error::ConnectionTimeout, format!("{what} timed out"))
}

/// Connects to a checked address of the endpoint, speaks TLS for https,
/// and sends the request on an HTTP/1.1 connection of its own.
async fn exchange(
    policy: &Policy,
    wanted: Wanted<'_>,
    mut request: http::Request<WasiBody>,
    attempt: &Arc<Attempt>,
) -> Result<Sent, Failed> {
    let options = wanted.options;
    let connect_wait = within(policy.deadline, options.and_then(|o| o.connect_timeout));
    let first_byte = within(policy.deadline, options.and_then(|o| o.first_byte_timeout));
    let between = within(
        policy.deadline,
        options.and_then(|o| o.between_bytes_timeout),
    );
    let stream = tokio::time::timeout(connect_wait, connect(wanted.addrs))
        .await
        .map_err(|_| timed_out("connecting"))?
        .map_err(failed)?;
    let stream: Box<dyn Stream> = match wanted.to.scheme {
        Scheme::Http => Box::new(stream),
        Scheme::Https => {
            let host = wanted.endpoint.host();
            let config = policy.tls.as_ref().ok_or_else(|| {
                (
                    Error::ConfigurationError,
                    "no TLS roots were loaded".to_string(),
                )
            })?;
            let tls = tokio::time::timeout(connect_wait, tls(config, host, stream));
            Box::new(
                tls.await
                    .map_err(|_| timed_out("the TLS handshake"))?
                    .map_err(failed)?,
            )
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEADER_BYTES)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| (Error::from(e), "the HTTP handshake failed".to_string()))?;
    // The request line carries the path only; the origin is the connection.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *request.uri_mut() = http::Uri::try_from(path)
        .map_err(|_| (Error::HttpRequestUriInvalid, "bad path".to_string()))?;
    let counted = attempt.clone();
    let request = request.map(|body| {
        body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                counted.add_out(data.len() as u64);
            }
            frame
        })
        .boxed_unsync()
    });
    let (response, io) = respond(sender.send_request(request), conn, first_byte).await?;
    let status = response.status().as_str().to_string();
    attempt.set_status(status.clone());
    let cap = policy.body_cap;
    if let Some(len) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .filter(|len| *len > cap)
    {
        return Err((
            Error::HttpResponseBodySize(Some(len)),
            format!("{status}, a body of {len} bytes refused (the most is {cap})"),
        ));
    }
    let (parts, body) = response.into_parts();
    let capped = Capped::new(body, attempt.clone(), cap, between, policy.deadline);
    Ok((http::Response::from_parts(parts, capped.boxed_unsync()), io))
}
