//! `keel audit`: list entries, `verify` the hash chain (against a signed
//! checkpoint too), or write a `checkpoint`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::print_json;
use crate::home::Home;
use crate::store::Store;
use crate::store::audit::{self, Filter};
use crate::terminal::{esay, say};

#[derive(Debug, Args)]
pub(super) struct AuditArgs {
    #[command(subcommand)]
    verify: Option<AuditCmd>,
    /// Only entries about this record.
    #[arg(long)]
    record: Option<String>,
    /// Only entries by this plugin (or `operator`).
    #[arg(long)]
    plugin: Option<String>,
    /// Only entries of this run.
    #[arg(long)]
    run: Option<String>,
    #[arg(long)]
    limit: Option<u32>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub(super) enum AuditCmd {
    /// Recompute the hash chain; names the first broken entry. With
    /// --checkpoint, also hold it against a signed head kept elsewhere.
    Verify {
        /// A file `keel audit checkpoint` wrote.
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<PathBuf>,
        /// The key the checkpoint must be signed by (default: any of this
        /// home's keys).
        #[arg(long, value_name = "ed25519:HEX")]
        public_key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Sign the chain's head (entry count and hash) with a key from `keel
    /// key generate` and write it outside the database; keep a copy away
    /// from this machine.
    Checkpoint {
        /// The signing key's name.
        #[arg(long)]
        key: String,
        /// Where to write it (default: HOME/audit-checkpoints/COUNT.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Also print it, to paste somewhere safe.
        #[arg(long)]
        print: bool,
    },
}

pub(super) fn run(root: &Path, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let home = Home::open(root)?;
    let db = home.store()?;
    match args.verify {
        Some(AuditCmd::Verify {
            checkpoint,
            public_key,
            json,
        }) => {
            return audit_verify(&home, &db, checkpoint, public_key, json);
        }
        Some(AuditCmd::Checkpoint { key, out, print }) => {
            let secret = crate::packages::load_key(&home, &key)?;
            let cp = audit::checkpoint(db.conn(), &secret)?;
            let path = out.unwrap_or_else(|| {
                home.root()
                    .join("audit-checkpoints")
                    .join(format!("{}.json", cp.count))
            });
            let text = serde_json::to_string(&cp)?;
            write_private(&path, text.as_bytes())?;
            say!(
                "audit checkpoint: {} entries, head {}, signed by {} -> {}",
                cp.count,
                cp.hash,
                cp.key,
                path.display()
            );
            if print {
                say!("{text}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    if args.json && args.limit.is_some_and(|l| l == 0) {
        bail!("--limit must be at least 1");
    }
    let entries = audit::list(
        db.conn(),
        &Filter {
            record: args.record,
            plugin: args.plugin,
            run: args.run,
            limit: args.limit,
        },
    )?;
    if args.json {
        print_json(&entries)?;
    } else {
        for e in entries {
            let who = match &e.plugin_version {
                Some(v) => format!("{}@{}", e.plugin, v),
                None => e.plugin.clone(),
            };
            say!(
                "{:>5} {} {:<18} {:<15} {:<9} {} {}",
                e.seq,
                e.at,
                who,
                e.action,
                e.outcome,
                e.record_id
                    .as_deref()
                    .map(|r| format!("{r} v{}", e.record_version.unwrap_or(0)))
                    .unwrap_or_default(),
                crate::terminal::field(&e.detail)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `keel audit verify [--checkpoint FILE]`.
fn audit_verify(
    home: &Home,
    db: &Store,
    checkpoint: Option<PathBuf>,
    public_key: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut report = audit::verify(db.conn())?;
    if report.broken.is_none()
        && let Some(file) = &checkpoint
    {
        let text = std::fs::read_to_string(file).with_context(|| {
            format!(
                "cannot read {}; give a file `keel audit checkpoint` wrote",
                file.display()
            )
        })?;
        let cp: audit::Checkpoint = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not an audit checkpoint ({e}); give a file `keel audit checkpoint` wrote",
                file.display()
            )
        })?;
        let trusted: Vec<keel_registry::keys::PublicKey> = match public_key {
            Some(k) => vec![
                k.parse()
                    .map_err(|e| anyhow::anyhow!("--public-key: {e}"))?,
            ],
            None => crate::packages::list_keys(home)?
                .into_iter()
                .map(|(_, k)| k)
                .collect(),
        };
        cp.check_signature(&trusted)?;
        report.broken = audit::check_checkpoint(db.conn(), &cp)?;
    }
    if json {
        print_json(&report)?;
    }
    Ok(match report.broken {
        None => {
            if !json {
                match &checkpoint {
                    Some(f) => say!(
                        "audit log intact: {} entries verified, consistent with {}",
                        report.entries,
                        f.display()
                    ),
                    None => say!("audit log intact: {} entries verified", report.entries),
                }
            }
            ExitCode::SUCCESS
        }
        Some(b) => {
            esay!(
                "error: audit entry {} does not verify: {}; keep a copy of {} for investigation before changing anything",
                b.seq,
                b.reason,
                home.db_path().display()
            );
            ExitCode::FAILURE
        }
    })
}

/// Writes `bytes` to `path` readable by the owner only, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}; pick another --out", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("cannot write in {}; pick another --out", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o600))?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
