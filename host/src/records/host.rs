//! `keel:host/records`: reading canonical records under the read grant.

use crate::bindings::records::{Host, Page};
use crate::bindings::types::{self, Identity, Link, Version};
use crate::error::CallError;
use crate::limits;
use crate::records;
use crate::run::{RunCtx, RunData, reply};
use crate::store::Touched;

/// Record `id`, if the grant may read it; a refusal does not name its kind.
fn readable(
    conn: &rusqlite::Connection,
    grant: &crate::grant::Grant,
    id: &str,
) -> Result<records::Record, CallError> {
    let record = records::get(conn, id)?
        .ok_or_else(|| CallError::NotFound(format!("no record with id {id}")))?;
    grant
        .check_read_record(id, &record.kind)
        .map_err(CallError::Denied)?;
    Ok(record)
}

impl Host for RunCtx {
    #[tracing::instrument(level = "debug", name = "records.get", skip_all)]
    fn get(&mut self, id: String) -> wasmtime::Result<Result<types::Record, types::Error>> {
        let grant = &self.grant;
        let result = self.db.read(&self.actor, "records.get", |conn| {
            let touched = Touched {
                record_id: Some(id.clone()),
                ..Touched::default()
            };
            let found = (|| {
                limits::check_len("record id", &id, limits::MAX_NAME_BYTES)?;
                readable(conn, grant, &id)
            })();
            match found {
                Ok(r) => {
                    let t = Touched::record(&r.id, r.version, format!("kind {}", r.kind));
                    (Ok(r), t)
                }
                Err(e) => (Err(e), touched),
            }
        });
        reply(result)
    }

    #[tracing::instrument(level = "debug", name = "records.find", skip_all)]
    fn find(
        &mut self,
        identity: Identity,
    ) -> wasmtime::Result<Result<Option<types::Record>, types::Error>> {
        let grant = &self.grant;
        let result = self.db.read(&self.actor, "records.find", |conn| {
            let detail = format!("identity ({}, {})", identity.source, identity.external_id);
            let found = (|| {
                limits::check_len("identity source", &identity.source, limits::MAX_NAME_BYTES)?;
                limits::check_len(
                    "identity external id",
                    &identity.external_id,
                    limits::MAX_NAME_BYTES,
                )?;
                let record = records::find_identity(conn, &identity.source, &identity.external_id)?;
                // Writing a kind does not mean reading it: the body of a
                // record found by identity goes only to a reader.
                if let Some(r) = &record {
                    grant
                        .check_read_record(&r.id, &r.kind)
                        .map_err(CallError::Denied)?;
                }
                Ok(record)
            })();
            match found {
                Ok(Some(r)) => {
                    let t = Touched::record(&r.id, r.version, detail);
                    (Ok(Some(r)), t)
                }
                other => (other, Touched::detail(detail)),
            }
        });
        Ok(result
            .map(|r| r.map(types::Record::from))
            .map_err(types::Error::from))
    }

    #[tracing::instrument(level = "debug", name = "records.query", skip_all)]
    fn query(
        &mut self,
        kind: String,
        limit: u32,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<Page, types::Error>> {
        let grant = &self.grant;
        let result = self.db.read(&self.actor, "records.query", |conn| {
            let page = (|| {
                limits::check_len("kind", &kind, limits::MAX_NAME_BYTES)?;
                if let Some(c) = &cursor {
                    limits::check_len("cursor", c, limits::MAX_NAME_BYTES)?;
                }
                grant.check_read(&kind).map_err(CallError::Denied)?;
                let limit = limit.clamp(1, limits::MAX_PAGE);
                // A page is also cut by size: the rest is one cursor away.
                let (rows, cut) = records::query_within(
                    conn,
                    Some(&kind),
                    cursor.as_deref(),
                    limit,
                    limits::MAX_PAGE_BYTES,
                )?;
                let more = cut || rows.len() == limit as usize;
                let next = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
                Ok((rows, next))
            })();
            let detail = match &page {
                Ok((rows, _)) => format!("kind {kind}: {} records", rows.len()),
                Err(_) => format!("kind {kind}"),
            };
            (page, Touched::detail(detail))
        });
        Ok(result
            .map(|(rows, next)| Page {
                records: rows.into_iter().map(types::Record::from).collect(),
                next,
            })
            .map_err(types::Error::from))
    }

    #[tracing::instrument(level = "debug", name = "records.history", skip_all)]
    fn history(&mut self, id: String) -> wasmtime::Result<Result<Vec<Version>, types::Error>> {
        let grant = &self.grant;
        let result = self.db.read(&self.actor, "records.history", |conn| {
            let touched = Touched {
                record_id: Some(id.clone()),
                ..Touched::default()
            };
            let versions = (|| {
                limits::check_len("record id", &id, limits::MAX_NAME_BYTES)?;
                readable(conn, grant, &id)?;
                let mut versions = records::history_newest(
                    conn,
                    &id,
                    limits::MAX_HISTORY,
                    limits::MAX_PAGE_BYTES,
                )?;
                versions.reverse();
                Ok(versions)
            })();
            (versions, touched)
        });
        Ok(result
            .map(|vs| {
                vs.into_iter()
                    .map(|v| Version {
                        version: u64::try_from(v.version).unwrap_or(0),
                        body: v.body,
                        at: v.at,
                        actor: v.actor,
                        run: v.run,
                        sources: v.sources,
                        confidence: v.confidence,
                        note: v.note,
                    })
                    .collect()
            })
            .map_err(types::Error::from))
    }

    #[tracing::instrument(level = "debug", name = "records.links", skip_all)]
    fn links(
        &mut self,
        id: String,
        rel: Option<String>,
    ) -> wasmtime::Result<Result<Vec<Link>, types::Error>> {
        let grant = &self.grant;
        let result = self.db.read(&self.actor, "records.links", |conn| {
            let touched = Touched {
                record_id: Some(id.clone()),
                ..Touched::default()
            };
            let links = (|| {
                limits::check_len("record id", &id, limits::MAX_NAME_BYTES)?;
                readable(conn, grant, &id)?;
                // Edges to records the caller may not read are left out:
                // a link would otherwise reveal that they exist.
                Ok(records::links_where(
                    conn,
                    &id,
                    rel.as_deref(),
                    limits::MAX_LINKS,
                    |kind| grant.can_read(kind),
                )?)
            })();
            (links, touched)
        });
        Ok(result
            .map(|ls| {
                ls.into_iter()
                    .map(|l| Link {
                        from: l.from,
                        to: l.to,
                        rel: l.rel,
                        created_at: l.created_at,
                    })
                    .collect()
            })
            .map_err(types::Error::from))
    }
}

impl From<records::Record> for types::Record {
    fn from(r: records::Record) -> Self {
        types::Record {
            id: r.id,
            kind: r.kind,
            body: r.body,
            version: u64::try_from(r.version).unwrap_or(0),
            created_at: r.created_at,
            updated_at: r.updated_at,
            created_by: r.created_by,
            updated_by: r.updated_by,
        }
    }
}

/// Adds `keel:host/records` to `linker`, over each run's [`RunCtx`].
pub fn add_to_linker<T: 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    get: fn(&mut T) -> &mut RunCtx,
) -> wasmtime::Result<()> {
    crate::bindings::records::add_to_linker::<T, RunData>(linker, get)
}
