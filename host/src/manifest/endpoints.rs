//! Endpoints: what a manifest asks for under `[capabilities.endpoints]`
//! (`feed = "http"`, `imap = "tcp"`, or a fixed `"https://api.example.com"`
//! / `"smtp.example.com:587"`), what the operator binds a named one to
//! (`--endpoint feed=https://example.org/feed.xml`), and whether a request
//! falls within one.

use std::net::IpAddr;

/// What a manifest asks for under one endpoint name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// An HTTP(S) endpoint the operator binds at install.
    Http,
    /// A TCP endpoint (TLS optional) the operator binds at install.
    Tcp,
    /// An endpoint the manifest names itself; consent shows it.
    Fixed(Endpoint),
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A bound host: a name the host resolves, or a literal address (the only
/// way to reach a loopback or private address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// One place a plugin may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Requests to this origin whose path starts with `path`.
    Http {
        scheme: Scheme,
        host: Host,
        port: u16,
        path: String,
    },
    /// Connections to `host:port`, TLS from the first byte when `tls`.
    Tcp { host: Host, port: u16, tls: bool },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Http {
                scheme,
                host,
                port,
                path,
            } => write!(f, "{}://{host}:{port}{path}", scheme.as_str()),
            Endpoint::Tcp { host, port, tls } => {
                write!(f, "{}{host}:{port}", if *tls { "tls://" } else { "" })
            }
        }
    }
}

/// Reads what a manifest asks for under one name.
pub fn ask(text: &str) -> Result<Asked, String> {
    match text {
        "http" => Ok(Asked::Http),
        "tcp" => Ok(Asked::Tcp),
        _ if is_http(text) => http(text).map(Asked::Fixed),
        _ => tcp(text).map(Asked::Fixed).map_err(|e| {
            format!("{e}; ask for \"http\" or \"tcp\" (the operator binds it), or name an https:// URL or host:port")
        }),
    }
}

/// The endpoint the operator binds to a name the manifest `asked` for.
pub fn bind(asked: &Asked, text: &str) -> Result<Endpoint, String> {
    match asked {
        Asked::Http => http(text),
        Asked::Tcp => tcp(text),
        Asked::Fixed(_) => {
            Err("this endpoint is fixed by the manifest; it takes no binding".into())
        }
    }
}

impl Endpoint {
    /// Reads an endpoint as [`Display`](std::fmt::Display) writes it (and
    /// as a grant stores it): an http(s) URL, or a TCP address.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if is_http(text) { http(text) } else { tcp(text) }
    }

    /// `http`, `https`, `tcp` or `tls`: what consent shows beside the name.
    pub fn kind(&self) -> &'static str {
        match self {
            Endpoint::Http { scheme, .. } => scheme.as_str(),
            Endpoint::Tcp { tls: true, .. } => "tls",
            Endpoint::Tcp { tls: false, .. } => "tcp",
        }
    }

    /// The host to resolve or the literal address.
    pub fn host(&self) -> &Host {
        match self {
            Endpoint::Http { host, .. } | Endpoint::Tcp { host, .. } => host,
        }
    }

    /// The port connected to.
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Http { port, .. } | Endpoint::Tcp { port, .. } => *port,
        }
    }
}

/// Stored in a grant as its text, so `keel.lock` and `inspect` read as the
/// operator wrote it.
impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Endpoint, D::Error> {
        let text = String::deserialize(d)?;
        Endpoint::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether `text` starts with `http://` or `https://`.
fn is_http(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
    })
}

/// `http(s)://host[:port][/path]`, with no user, query or fragment.
fn http(text: &str) -> Result<Endpoint, String> {
    if !text.contains("://") {
        return Err(format!(
            "`{text}` is not a URL; an HTTP endpoint is written like https://example.org/path"
        ));
    }
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(format!(
                "`{text}` is a {other}:// address; an HTTP endpoint is an http:// or https:// URL"
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{text}` carries credentials; give them to the plugin as a secret, not in its endpoint"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` has a query or fragment; an endpoint is an origin and a path"
        ));
    }
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("`{text}` names no port"))?;
    Ok(Endpoint::Http {
        scheme,
        host: host_of(&url, text)?,
        port,
        path: url.path().to_string(),
    })
}

/// `host:port`, or `SCHEME://host[:port]` for the mail protocols (`imaps`
/// and `smtps` are TLS from the first byte) and `tls://host:port`.
fn tcp(text: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("tcp".to_string(), text),
    };
    let (tls, default_port) = match scheme.as_str() {
        "tcp" => (false, None),
        "tls" => (true, None),
        "imap" => (false, Some(143)),
        "imaps" => (true, Some(993)),
        "smtp" => (false, Some(587)),
        "smtps" => (true, Some(465)),
        other => {
            return Err(format!(
                "`{text}`: {other}:// is not a TCP endpoint; write host:port, tls://host:port, or imap(s):// or smtp(s)://"
            ));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let url = url::Url::parse(&format!("tcp://{rest}"))
        .map_err(|e| format!("`{text}` is not host:port: {e}"))?;
    if url.path() != "" && url.path() != "/" || url.query().is_some() || !url.username().is_empty()
    {
        return Err(format!("`{text}` is not host:port"));
    }
    let port = url
        .port()
        .or(default_port)
        .ok_or_else(|| format!("`{text}` names no port; write host:port"))?;
    Ok(Endpoint::Tcp {
        host: host_of(&url, text)?,
        port,
        tls,
    })
}

fn host_of(url: &url::Url, text: &str) -> Result<Host, String> {
    match url.host() {
        // A non-http URL's host is opaque to the parser: an address
        // written in it is still an address.
        Some(url::Host::Domain(name)) if !name.is_empty() => Ok(match name.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(name.to_ascii_lowercase()),
        }),
        Some(url::Host::Ipv4(ip)) => Ok(Host::Ip(IpAddr::V4(ip))),
        Some(url::Host::Ipv6(ip)) => Ok(Host::Ip(IpAddr::V6(ip))),
        _ => Err(format!("`{text}` names no host")),
    }
}

impl Endpoint {
    /// Whether an HTTP request to `scheme://host:port` + `path` falls
    /// within this endpoint: the same origin, and a path at or under its
    /// path (`/feeds` admits `/feeds`, `/feeds/a` and `/feeds?x`, not
    /// `/feedsx`).
    pub fn admits(&self, scheme: Scheme, host: &str, port: u16, path: &str) -> bool {
        let Endpoint::Http {
            scheme: s,
            host: h,
            port: p,
            path: prefix,
        } = self
        else {
            return false;
        };
        *s == scheme && *p == port && same_host(h, host) && under(prefix, path)
    }

    /// Whether a connection to `host:port` is to this TCP endpoint.
    pub fn reaches(&self, host: &str, port: u16) -> bool {
        matches!(self, Endpoint::Tcp { host: h, port: p, .. } if *p == port && same_host(h, host))
    }
}

fn same_host(bound: &Host, host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match bound {
        Host::Name(name) => name.eq_ignore_ascii_case(host.trim_end_matches('.')),
        Host::Ip(ip) => host.parse::<IpAddr>().is_ok_and(|h| h == *ip),
    }
}

fn under(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() || prefix == "/" || path == prefix {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => prefix.ends_with('/') || rest.starts_with(['/', '?']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(text: &str) -> Endpoint {
        match ask(text).unwrap() {
            Asked::Fixed(e) => e,
            other => panic!("{text} asked {other:?}"),
        }
    }

    #[test]
    fn a_manifest_asks_for_a_kind_or_a_fixed_endpoint() {
        assert_eq!(ask("http").unwrap(), Asked::Http);
        assert_eq!(ask("tcp").unwrap(), Asked::Tcp);
        assert_eq!(
            fixed("https://API.example.com"),
            Endpoint::Http {
                scheme: Scheme::Https,
                host: Host::Name("api.example.com".into()),
                port: 443,
                path: "/".into(),
            }
        );
        assert_eq!(
            fixed("smtp.example.com:587"),
            Endpoint::Tcp {
                host: Host::Name("smtp.example.com".into()),
                port: 587,
                tls: false,
            }
        );
        assert_eq!(
            fixed("imaps://mail.example.com").to_string(),
            "tls://mail.example.com:993"
        );
        for bad in [
            "ftp://x.org",
            "smtp.example.com",
            "udp://x:1",
            "",
            "http://",
        ] {
            assert!(ask(bad).is_err(), "{bad} was taken");
        }
    }

    #[test]
    fn a_binding_is_checked_against_the_kind_asked_for() {
        let feed = bind(&Asked::Http, "https://example.org/feed.xml").unwrap();
        assert_eq!(feed.to_string(), "https://example.org:443/feed.xml");
        let local = bind(&Asked::Http, "http://127.0.0.1:8080").unwrap();
        assert!(matches!(
            local,
            Endpoint::Http {
                host: Host::Ip(_),
                port: 8080,
                ..
            }
        ));
        let tcp_local = bind(&Asked::Tcp, "127.0.0.1:1143").unwrap();
        assert!(matches!(
            tcp_local,
            Endpoint::Tcp {
                host: Host::Ip(_),
                port: 1143,
                tls: false
            }
        ));
        let v6 = bind(&Asked::Tcp, "[::1]:1143").unwrap();
        assert_eq!(v6.to_string(), "[::1]:1143");
        let refused = [
            (Asked::Http, "imap.example.com:993", "not a URL"),
            (Asked::Http, "https://me:pw@example.org/", "credentials"),
            (Asked::Http, "https://example.org/?token=1", "query"),
            (Asked::Tcp, "https://example.org", "not a TCP endpoint"),
            (Asked::Tcp, "example.org", "names no port"),
            (Asked::Tcp, "example.org:99/path", "not host:port"),
        ];
        for (asked, text, why) in refused {
            let e = bind(&asked, text).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
        for e in [&feed, &local, &tcp_local, &v6] {
            assert_eq!(Endpoint::parse(&e.to_string()).as_ref(), Ok(e));
        }
        let tls = bind(&Asked::Tcp, "imaps://mail.example.com").unwrap();
        assert_eq!(Endpoint::parse(&tls.to_string()), Ok(tls));
        let fixed = Asked::Fixed(feed);
        assert!(
            bind(&fixed, "https://other.org")
                .unwrap_err()
                .contains("fixed")
        );
    }

    #[test]
    fn a_request_must_fall_within_the_origin_and_path() {
        let feeds = bind(&Asked::Http, "https://Example.org/feeds").unwrap();
        assert!(feeds.admits(Scheme::Https, "example.org", 443, "/feeds"));
        assert!(feeds.admits(Scheme::Https, "EXAMPLE.org.", 443, "/feeds/a.xml"));
        assert!(feeds.admits(Scheme::Https, "example.org", 443, "/feeds?page=2"));
        assert!(!feeds.admits(Scheme::Https, "example.org", 443, "/feedsx"));
        assert!(!feeds.admits(Scheme::Https, "example.org", 443, "/other"));
        assert!(!feeds.admits(Scheme::Http, "example.org", 80, "/feeds"));
        assert!(!feeds.admits(Scheme::Https, "example.org", 8443, "/feeds"));
        assert!(!feeds.admits(Scheme::Https, "evil.org", 443, "/feeds"));
        assert!(!feeds.admits(Scheme::Https, "example.org.evil.org", 443, "/feeds"));
        let origin = bind(&Asked::Http, "http://127.0.0.1:8080/").unwrap();
        assert!(origin.admits(Scheme::Http, "127.0.0.1", 8080, "/anything"));
        assert!(!origin.admits(Scheme::Http, "localhost", 8080, "/anything"));
        assert!(!origin.reaches("127.0.0.1", 8080));
        let imap = bind(&Asked::Tcp, "imaps://mail.example.com").unwrap();
        assert!(imap.reaches("mail.example.com", 993));
        assert!(!imap.reaches("mail.example.com", 143));
        assert!(!imap.admits(Scheme::Https, "mail.example.com", 993, "/"));
    }
}
