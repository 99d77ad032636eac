//! The store's schema: created on first open, versioned in its `schema_version` table, migrated
//! by the plain SQL files in `migrations/` (applied in order, each in the transaction that
//! records it). A schema whose version is newer than this build knows is refused, so an old
//! binary never writes into tables it does not understand.

use postgres::Client;

use crate::error::{Failure, FailureKind};
use crate::{AtCommit, Fail};

/// The migrations, in order: `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

/// The schema version this build writes and reads.
#[expect(
    clippy::cast_possible_truncation,
    reason = "a handful of migrations, far below u32::MAX"
)]
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings `schema` up to [`SCHEMA_VERSION`], or refuses it if it is newer, or (unless `create`)
/// if it holds no store at all.
///
/// Opens from several processes at once are serialized by a transaction-scoped advisory lock
/// keyed on the schema's name: taken only here, never on the hot path, and released with the
/// transaction.
pub(crate) fn migrate(
    client: &mut Client,
    schema: &str,
    server: &str,
    create: bool,
) -> Result<(), Fail> {
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('annals-postgres schema ' || $1, 0))",
        &[&schema],
    )?;
    let encoding: String = tx.query_one("SHOW server_encoding", &[])?.try_get(0)?;
    let target = format!("{server} schema {schema}");
    if encoding != "UTF8" {
        return Err(Fail::Store(
            Failure::new(
                FailureKind::SchemaTooNew,
                format!("the database's encoding is {encoding}; annals keeps entries' JSON text exactly and needs UTF8"),
            )
            .into_error("open", target),
        ));
    }
    let exists = tx
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = $1 AND tablename = 'schema_version'",
            &[&schema],
        )?
        .is_some();
    let current: u32 = if exists {
        let v: Option<i32> = tx
            .query_one(
                &format!("SELECT max(version) FROM \"{schema}\".schema_version"),
                &[],
            )?
            .try_get(0)?;
        v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
    } else {
        0
    };
    if !exists && !create {
        return Err(Fail::Store(
            Failure::new(
                FailureKind::DatabaseMissing,
                format!("no annals store in schema {schema} (nothing was created)"),
            )
            .into_error("open", target),
        ));
    }
    if current > SCHEMA_VERSION {
        return Err(Fail::Store(
            Failure::new(
                FailureKind::SchemaTooNew,
                format!("the schema is at version {current}, written by a newer annals-postgres; this build knows versions up to {SCHEMA_VERSION}: upgrade it (nothing was changed)"),
            )
            .into_error("open", target),
        ));
    }
    if current == SCHEMA_VERSION {
        return tx.commit().at_commit();
    }
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path TO \"{schema}\""
    ))?;
    let by = format!("annals-postgres {}", env!("CARGO_PKG_VERSION"));
    for (version, sql) in (1u32..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(current).unwrap_or(usize::MAX))
    {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_ms, applied_by) \
             VALUES ($1, floor(extract(epoch FROM now()) * 1000)::int8, $2)",
            &[&i32::try_from(version).unwrap_or(i32::MAX), &by],
        )?;
    }
    tx.commit().at_commit()
}
