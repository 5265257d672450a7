//! The `feed` connector: reads the RSS 2.0, Atom or JSON Feed at the
//! endpoint the operator bound to `feed` and keeps each item as a
//! `core/document` (title, url, published, summary, text), one record per
//! item forever: its identity is `(feed:feed, guid)`, or its link when it
//! has no guid. The cursor holds the feed's ETag and Last-Modified, so an
//! unchanged feed costs one `304 Not Modified`.

use keel_connector::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Identity source of the items.
const SOURCE: &str = "feed:feed";

/// What the next sync sends back to the server.
#[derive(Default, Serialize, Deserialize)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified: Option<String>,
}

/// The `core/document` body of one item.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
struct Item {
    title: String,
    url: String,
    published: String,
    summary: String,
    text: String,
    format: String,
    /// sha256 of the fields above, to tell whether the item changed.
    sha256: String,
}

struct Feed;

impl Connector for Feed {
    fn sync(cursor: Option<String>) -> Result<SyncResult, Error> {
        let url = http::endpoint("feed", "")?;
        let before: Cursor = cursor
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let response = fetch(&url, &before)?;
        if response.status == 304 {
            return Ok(SyncResult {
                cursor,
                created: 0,
                updated: 0,
                unchanged: 0,
            });
        }
        let items = parse(&url, &response.body)?;
        let mut result = SyncResult {
            cursor: None,
            created: 0,
            updated: 0,
            unchanged: 0,
        };
        for (id, item) in items {
            keep(&id, &item, &mut result)?;
        }
        let after = Cursor {
            etag: response.header("etag").map(str::to_string),
            modified: response.header("last-modified").map(str::to_string),
        };
        result.cursor = serde_json::to_string(&after).ok();
        log::info(&format!(
            "{url}: {} new, {} changed, {} unchanged",
            result.created, result.updated, result.unchanged
        ));
        Ok(result)
    }
}

/// GETs the feed, conditionally on what the last sync saw; a server error
/// is `Unavailable` (the next sync tries again), any other failure status
/// `Invalid` (the binding needs a look).
fn fetch(url: &str, before: &Cursor) -> Result<http::Response, Error> {
    let mut request = http::get(url).header(
        "accept",
        "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.5",
    );
    if let Some(etag) = &before.etag {
        request = request.header("if-none-match", etag);
    }
    if let Some(modified) = &before.modified {
        request = request.header("if-modified-since", modified);
    }
    if config::get("auth")?.as_deref() == Some("bearer") {
        request = request.header("authorization", "Bearer {{secret:feed_token}}");
    }
    let response = request.send()?;
    match response.status {
        200..=299 | 304 => Ok(response),
        status @ (429 | 500..=599) => Err(Error::Unavailable(format!(
            "the feed at {url} answered {status}; the next sync tries again"
        ))),
        status => Err(Error::Invalid(format!(
            "the feed at {url} answered {status}; check the address bound to `feed` (keel plugin update feed --endpoint feed=URL)"
        ))),
    }
}

/// The feed's items as (identity, body); `Invalid` when it is not a feed.
fn parse(url: &str, body: &[u8]) -> Result<Vec<(String, Item)>, Error> {
    let parser = feed_rs::parser::Builder::new()
        .base_uri(Some(url))
        .id_generator(stable_id)
        .build();
    let feed = parser.parse(body).map_err(|e| {
        Error::Invalid(format!(
            "the document at {url} is not an RSS, Atom or JSON feed: {e}"
        ))
    })?;
    Ok(feed.entries.into_iter().map(item).collect())
}

/// An item's identity when the feed gives it no id: its link, else a hash
/// of its title (never a random one, which would duplicate it each sync).
fn stable_id(
    links: &[feed_rs::model::Link],
    title: &Option<feed_rs::model::Text>,
    _base: Option<&str>,
) -> String {
    match (links.first(), title) {
        (Some(link), _) => link.href.clone(),
        (None, Some(t)) => format!("title:{}", hex(&Sha256::digest(t.content.as_bytes()))),
        (None, None) => "untitled".to_string(),
    }
}

fn item(entry: feed_rs::model::Entry) -> (String, Item) {
    let text_of = |t: &feed_rs::model::Text| as_text(&t.content, t.content_type.to_string());
    let summary = entry.summary.as_ref().map(text_of).unwrap_or_default();
    let text = entry
        .content
        .as_ref()
        .and_then(|c| {
            let body = c.body.as_deref()?;
            Some(as_text(body, c.content_type.to_string()))
        })
        .unwrap_or_else(|| summary.clone());
    let mut item = Item {
        title: entry
            .title
            .as_ref()
            .map(text_of)
            .unwrap_or_default()
            .trim()
            .to_string(),
        url: entry
            .links
            .first()
            .map(|l| l.href.clone())
            .unwrap_or_default(),
        published: entry
            .published
            .or(entry.updated)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default(),
        summary,
        text,
        format: "text".to_string(),
        sha256: String::new(),
    };
    item.sha256 = digest(&item);
    (entry.id, item)
}

/// Text from a feed field: HTML made plain, anything else as it is.
fn as_text(content: &str, media_type: String) -> String {
    let html = media_type.contains("html") || content.trim_start().starts_with('<');
    if html {
        mail_parser::decoders::html::html_to_text(content)
    } else {
        content.to_string()
    }
}

fn digest(item: &Item) -> String {
    let mut h = Sha256::new();
    for field in [
        &item.title,
        &item.url,
        &item.published,
        &item.summary,
        &item.text,
    ] {
        h.update(field.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the item's record, or a new version of it when it changed.
fn keep(id: &str, item: &Item, result: &mut SyncResult) -> Result<(), Error> {
    let identity = Identity::new(SOURCE, id);
    let options = WriteOptions::new().note("from the feed");
    let created = actions::create(core::DOCUMENT, item, Some(identity), options)?;
    if !created.existed {
        result.created += 1;
        return Ok(());
    }
    let stored: Item = created.record.body_as().unwrap_or_default();
    if stored.sha256 == item.sha256 {
        result.unchanged += 1;
        return Ok(());
    }
    let options = WriteOptions::new().note("the feed changed it");
    actions::update(&created.record.id, created.record.version, item, options)?;
    result.updated += 1;
    Ok(())
}

keel_connector::export_connector!(Feed);

#[cfg(test)]
mod tests {
    use super::*;

    const RSS: &str = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>
<item><title>First</title><link>https://example.org/1</link><guid>g-1</guid>
<description>&lt;p&gt;Hello &lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description>
<pubDate>Tue, 01 Dec 2026 10:00:00 GMT</pubDate></item>
<item><title>No guid</title><link>https://example.org/2</link></item>
<item><title>Nothing else</title></item>
</channel></rss>"#;

    #[test]
    fn items_have_stable_identities_and_plain_text() {
        let items = parse("https://example.org/feed.xml", RSS.as_bytes()).unwrap();
        let ids: Vec<&str> = items.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids[0], "g-1");
        assert_eq!(ids[1], "https://example.org/2");
        assert!(ids[2].starts_with("title:"), "{ids:?}");
        let again = parse("https://example.org/feed.xml", RSS.as_bytes()).unwrap();
        assert_eq!(items, again);
        let first = &items[0].1;
        assert_eq!(first.title, "First");
        assert_eq!(first.url, "https://example.org/1");
        assert_eq!(first.published, "2026-12-01T10:00:00+00:00");
        assert!(first.text.contains("Hello world"), "{first:?}");
        assert!(!first.text.contains('<'), "{first:?}");
    }

    #[test]
    fn atom_and_json_feeds_are_read_and_garbage_is_invalid() {
        let atom = r#"<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>A</title><id>urn:a</id><updated>2026-12-01T00:00:00Z</updated>
<entry><id>urn:a:1</id><title>One</title><updated>2026-12-01T00:00:00Z</updated><content type="text">Plain</content></entry></feed>"#;
        let items = parse("https://x.org/atom", atom.as_bytes()).unwrap();
        assert_eq!(items[0].0, "urn:a:1");
        assert_eq!(items[0].1.text, "Plain");
        let json = r#"{"version":"https://jsonfeed.org/version/1.1","title":"J","items":[{"id":"j1","content_text":"Hi","url":"https://x.org/j1"}]}"#;
        let items = parse("https://x.org/feed.json", json.as_bytes()).unwrap();
        assert_eq!(items[0].0, "j1");
        assert_eq!(items[0].1.url, "https://x.org/j1");
        let e = parse("https://x.org/", b"<html><body>not a feed</body></html>").unwrap_err();
        assert!(
            matches!(e, Error::Invalid(ref m) if m.contains("is not an RSS, Atom or JSON feed")),
            "{e:?}"
        );
    }
}
