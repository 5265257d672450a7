//! `wasi:sockets` under grants. The socket interfaces stay linked for
//! every plugin (language runtimes such as CPython import them), but a run
//! may open TCP connections only when its grant has endpoints, and then
//! only to them: every connect is checked against the endpoints' hosts and
//! ports (a name is resolved by the host and must give that public
//! address; a literal address bound is reached as it is), and audited as
//! `net.connect`. Listening, accepting, explicit binds and UDP are refused.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime_wasi::sockets::SocketAddrUse;

use super::log::{Kind, NetLog};
use crate::manifest::{Endpoint, Host};

/// What a run's sockets may reach: the host and port of each endpoint (an
/// HTTP endpoint's origin too, for runtimes whose HTTP client speaks over
/// sockets, like CPython's `urllib`).
#[derive(Debug, Clone)]
pub struct Reach {
    label: String,
    places: Vec<(String, Host, u16)>,
    log: NetLog,
}

impl Reach {
    /// The reach of `endpoints`, attempts recorded in `log`.
    pub fn new(
        label: &str,
        endpoints: &std::collections::BTreeMap<String, Endpoint>,
        log: NetLog,
    ) -> Reach {
        Reach {
            label: label.to_string(),
            places: endpoints
                .iter()
                .map(|(name, e)| (name.clone(), e.host().clone(), e.port()))
                .collect(),
            log,
        }
    }

    /// Whether the run may open sockets at all.
    pub fn any(&self) -> bool {
        !self.places.is_empty()
    }

    /// The check `wasmtime-wasi` calls before each socket use.
    pub fn check(
        self: Arc<Self>,
    ) -> impl Fn(SocketAddr, SocketAddrUse) -> Pin<Box<dyn Future<Output = bool> + Send + Sync>>
    + Send
    + Sync
    + 'static {
        move |addr, used| {
            let reach = self.clone();
            Box::pin(async move { reach.allows(addr, used).await })
        }
    }

    async fn allows(&self, addr: SocketAddr, used: SocketAddrUse) -> bool {
        match used {
            // The wildcard address is what an implicit bind before a
            // connect passes; nothing else may be bound.
            SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
            SocketAddrUse::TcpConnect => self.connect(addr).await,
            _ => {
                self.log.denied(
                    Kind::Connect,
                    format!("{used:?} {addr}"),
                    "plugins may only open TCP connections to their endpoints",
                );
                false
            }
        }
    }

    async fn connect(&self, addr: SocketAddr) -> bool {
        for (name, host, port) in &self.places {
            if *port != addr.port() {
                continue;
            }
            let reached = match host {
                Host::Ip(_) => super::allowed(host, addr.ip()),
                Host::Name(_) => super::connect::addresses(host, *port)
                    .await
                    .is_ok_and(|checked| checked.contains(&addr)),
            };
            if reached {
                let what = format!("connect {addr} ({host}:{port})");
                let attempt = self.log.allowed(Kind::Connect, what, name);
                attempt.set_status("opened");
                attempt.finish();
                return true;
            }
        }
        self.log.denied(
            Kind::Connect,
            format!("connect {addr}"),
            &format!(
                "{addr} is not one of {}'s endpoints; add it under [capabilities.endpoints] in keel.toml (e.g. imap = \"tcp\") and bind it with --endpoint NAME=HOST:PORT",
                self.label
            ),
        );
        false
    }
}
