//! `dealport store copy --to <database>`: the data dir's sled store into PostgreSQL
//! (`dealport_node::store_copy`), with progress on stderr and the next step said.

use std::time::Instant;

use dealport_node::{
    config::is_postgres_url,
    store::{
        postgres::{PostgresOptions, PostgresStore},
        sled::SledStore,
        StoreError,
    },
    store_copy::{copy_to_postgres, CopyReport},
};

use crate::{files::locate, CmdResult, Fail, Location, Shell};

/// Progress is shown every this many deals read.
const SHOW_EVERY: u64 = 100_000;

pub(crate) async fn copy(shell: Shell, at: Location, to: String) -> CmdResult {
    if !is_postgres_url(&to) {
        return Err(Fail(
            "--to takes a PostgreSQL database (postgres://user@host:port/db or libpq's \
             key=value form)"
                .into(),
        ));
    }
    let (dir, path, _) = locate(&at)?;
    let source = SledStore::open(&dir, shell.runtime.clone()).map_err(|e| match e {
        StoreError::InUse(_) => Fail(format!(
            "{}: a node is running on this data dir; stop it first",
            dir.display()
        )),
        e => Fail(e.to_string()),
    })?;
    let target = PostgresStore::connect(&to, PostgresOptions::default()).await?;
    let started = Instant::now();
    let mut shown = 0;
    let report = copy_to_postgres(&source, &target, &mut |r: &CopyReport| {
        if r.deals_read >= shown + SHOW_EVERY {
            shown = r.deals_read;
            eprintln!(
                "{} deals read, {} written ({:.0}/s)",
                r.deals_read,
                r.deals_written,
                r.deals_read as f64 / started.elapsed().as_secs_f64()
            );
        }
    })
    .await?;
    println!(
        "copied in {:.1} s: identity {}, {} of {} deals written (the rest were there), {} \
         pieces with {} block entries, {} IPNI advertisements, {} intents",
        started.elapsed().as_secs_f64(),
        if report.identity_copied {
            "copied"
        } else {
            "already there"
        },
        report.deals_written,
        report.deals_read,
        report.pieces,
        report.blocks,
        report.advertisements,
        report.intents,
    );
    eprintln!(
        "next: set store to the database in {} (or run `dealport run --store <database>`); \
         the sled store in {} is left as it was",
        path.display(),
        SledStore::path_in(&dir).display()
    );
    Ok(())
}
