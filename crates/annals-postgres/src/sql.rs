//! Every statement the store sends, written once, with the store's schema spliced in at open
//! (the schema name is checked to be a plain identifier first). Statements are sent unnamed with
//! their parameter types (`query_typed`): one round trip each, no prepared-statement state on
//! the connection, so transaction-mode poolers work.

/// The server's clock, for times the store records: the start of the transaction, so every
/// entry of one append carries the same time.
const NOW_MS: &str = "floor(extract(epoch FROM now()) * 1000)::int8";
const NOW_US: &str = "floor(extract(epoch FROM now()) * 1000000)::int8";

/// Which log of a segment an append goes to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Log {
    Entries,
    Trace,
}

pub(crate) struct Sql {
    pub append: [String; 4],
    pub tip: String,
    pub exists: String,
    pub insert_session: String,
    pub insert_segment: String,
    pub lock_segment: String,
    pub touch_segment: String,
    pub share_segment: String,
    pub truncate: String,
    pub copy_prefix: String,
    pub delete_session: String,
    pub sessions: String,
    pub segments: String,
    pub find_session: String,
    pub modified: String,
    pub replay_head: [String; 2],
    pub replay_rows: [String; 2],
    pub blob: String,
    pub attach: String,
    pub attachments: String,
    pub lock_session: String,
    pub exists_session: String,
    pub blob_usage: String,
    pub delete_blobs: String,
}

impl Sql {
    pub fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let t = |text: &str| {
            text.replace("{s}", &s)
                .replace("{now_ms}", NOW_MS)
                .replace("{now_us}", NOW_US)
        };
        Self {
            append: [
                t(&append(Log::Entries, false)),
                t(&append(Log::Entries, true)),
                t(&append(Log::Trace, false)),
                t(&append(Log::Trace, true)),
            ],
            tip: t("SELECT next_seq, generation FROM {s}.segments WHERE session = $1 AND id = $2"),
            exists: t("SELECT 1 FROM {s}.segments WHERE session = $1 AND id = $2"),
            insert_session: t("INSERT INTO {s}.sessions (id, created_ms, modified_us) \
                 VALUES ($1, {now_ms}, {now_us}) ON CONFLICT (id) DO NOTHING"),
            insert_segment: t(
                "INSERT INTO {s}.segments (session, id, created_ms, modified_us, fork_of, fork_at) \
                 VALUES ($1, $2, {now_ms}, {now_us}, $3, $4) \
                 ON CONFLICT (session, id) DO NOTHING RETURNING key",
            ),
            lock_segment: t("SELECT key, next_seq, generation FROM {s}.segments \
                 WHERE session = $1 AND id = $2 FOR UPDATE"),
            // A write that changes nothing: its synchronous commit flushes the WAL up to it,
            // and so every commit before it (Store::sync in Buffered mode).
            touch_segment: t("UPDATE {s}.segments SET modified_us = modified_us \
                 WHERE session = $1 AND id = $2 RETURNING key"),
            share_segment: t("SELECT key, next_seq, generation FROM {s}.segments \
                 WHERE session = $1 AND id = $2 FOR SHARE"),
            // After lock_segment, in the same transaction: a new snapshot sees every entry
            // committed before the lock was granted.
            truncate: t("WITH cut AS (
                     DELETE FROM {s}.entries WHERE segment = $1 AND seq >= $2 RETURNING len
                 )
                 UPDATE {s}.segments
                    SET next_seq = $2, generation = generation + 1,
                        bytes = bytes - (SELECT coalesce(sum(len + 1), 0) FROM cut)::int8,
                        modified_us = greatest(modified_us, {now_us})
                  WHERE key = $1
              RETURNING next_seq, generation"),
            copy_prefix: t("WITH copied AS (
                     INSERT INTO {s}.entries (segment, seq, appended_ms, crc, len, body, blob)
                     SELECT $2, seq, appended_ms, crc, len, body, blob
                       FROM {s}.entries WHERE segment = $1 AND seq < $3
                     RETURNING len
                 )
                 UPDATE {s}.segments
                    SET next_seq = $3,
                        bytes = (SELECT coalesce(sum(len + 1), 0) FROM copied)::int8
                  WHERE key = $2
              RETURNING next_seq, generation"),
            // One statement: the foreign keys are checked at its end, when all rows are gone.
            delete_session: t("WITH segs AS (
                     DELETE FROM {s}.segments WHERE session = $1 RETURNING key
                 ), e AS (
                     DELETE FROM {s}.entries WHERE segment IN (SELECT key FROM segs)
                 ), tr AS (
                     DELETE FROM {s}.trace_events WHERE segment IN (SELECT key FROM segs)
                 ), b AS (
                     DELETE FROM {s}.blobs WHERE session = $1
                 ), a AS (
                     DELETE FROM {s}.attachments WHERE session = $1
                 )
                 DELETE FROM {s}.sessions WHERE id = $1 RETURNING id"),
            sessions: t("SELECT id FROM {s}.sessions ORDER BY id DESC"),
            segments: t("SELECT g.id, g.next_seq, g.generation, g.bytes, g.modified_us,
                        g.created_ms, g.fork_of, g.fork_at
                   FROM {s}.sessions s LEFT JOIN {s}.segments g ON g.session = s.id
                  WHERE s.id = $1
               ORDER BY g.id DESC"),
            find_session: t("SELECT session FROM {s}.segments WHERE id = $1 \
                 ORDER BY session DESC LIMIT 1"),
            modified: t("SELECT greatest(s.modified_us, (SELECT max(g.modified_us) \
                 FROM {s}.segments g WHERE g.session = s.id)) FROM {s}.sessions s WHERE s.id = $1"),
            replay_head: [
                t("SELECT key, next_seq, bytes FROM {s}.segments WHERE session = $1 AND id = $2"),
                t("SELECT key, trace_next, 0::int8 FROM {s}.segments \
                   WHERE session = $1 AND id = $2"),
            ],
            replay_rows: [
                t("SELECT seq, crc, len, body, blob, appended_ms FROM {s}.entries \
                   WHERE segment = $1 AND seq >= $2 ORDER BY seq"),
                t("SELECT seq, crc, len, body, blob, appended_ms FROM {s}.trace_events \
                   WHERE segment = $1 AND seq >= $2 ORDER BY seq"),
            ],
            blob: t("SELECT len, crc, data FROM {s}.blobs WHERE session = $1 AND sha256 = $2"),
            attach: t("WITH held AS (
                     SELECT id FROM {s}.sessions WHERE id = $1 FOR SHARE
                 ), kept AS (
                     INSERT INTO {s}.blobs (session, sha256, len, crc, data, created_ms)
                     SELECT id, $2, $3, $4, $5, {now_ms} FROM held
                     ON CONFLICT (session, sha256) DO NOTHING
                 )
                 INSERT INTO {s}.attachments (session, blob, len, meta, created_ms)
                 SELECT id, $2, $3, $6, {now_ms} FROM held
                 RETURNING created_ms"),
            attachments: t("SELECT a.blob, a.len, a.meta, a.created_ms
                   FROM {s}.sessions s LEFT JOIN {s}.attachments a ON a.session = s.id
                  WHERE s.id = $1
               ORDER BY a.ord"),
            lock_session: t("SELECT id FROM {s}.sessions WHERE id = $1 FOR UPDATE"),
            exists_session: t("SELECT id FROM {s}.sessions WHERE id = $1"),
            blob_usage: t("SELECT b.sha256, b.len,
                        EXISTS (SELECT 1 FROM {s}.entries e JOIN {s}.segments g ON g.key = e.segment
                                 WHERE g.session = $1 AND e.blob = b.sha256)
                     OR EXISTS (SELECT 1 FROM {s}.trace_events e
                                  JOIN {s}.segments g ON g.key = e.segment
                                 WHERE g.session = $1 AND e.blob = b.sha256)
                     OR EXISTS (SELECT 1 FROM {s}.attachments a
                                 WHERE a.session = $1 AND a.blob = b.sha256)
                   FROM {s}.blobs b WHERE b.session = $1 ORDER BY b.sha256"),
            delete_blobs: t("DELETE FROM {s}.blobs WHERE session = $1 AND sha256 = ANY($2)"),
        }
    }

    /// The append statement for `log`, with or without blobs.
    pub fn append(&self, log: Log, with_blobs: bool) -> &str {
        let i = match log {
            Log::Entries => 0,
            Log::Trace => 2,
        } + usize::from(with_blobs);
        self.append.get(i).map_or("", String::as_str)
    }
}

/// The append: one statement that checks and advances the tip and inserts the entries (and
/// their blobs), so one round trip and one transaction.
///
/// Parameters: `$1` session, `$2` segment, `$3` whether to check the tip, `$4`/`$5` the expected
/// count and generation, `$6` the number of entries, `$7` the bytes they add, `$8..$11` the
/// entries (body, blob id, length, CRC); with blobs `$12..$15` (id, length, CRC, data).
///
/// Under READ COMMITTED the `UPDATE` waits for a concurrent append's row lock and then re-checks
/// its condition on the row that append committed: appends to one segment serialize on that row,
/// and a stale tip matches no row. Entries get their sequence numbers from the row as updated,
/// so they are right whatever the statement's snapshot saw. With blobs, the session's row is
/// held `FOR SHARE` until commit, which is what `gc_blobs` (holding it `FOR UPDATE`) waits for:
/// a blob is never collected between being stored and its entry being committed.
fn append(log: Log, with_blobs: bool) -> String {
    let (table, counter, bytes) = match log {
        Log::Entries => ("entries", "next_seq", "bytes = bytes + $7,"),
        // The trace has no byte count: $7 is only typed there.
        Log::Trace => ("trace_events", "trace_next", "bytes = bytes + 0 * $7,"),
    };
    let mut sql = format!(
        "WITH tip AS (
             UPDATE {{s}}.segments
                SET {counter} = {counter} + $6, {bytes}
                    modified_us = greatest(modified_us, {{now_us}})
              WHERE session = $1 AND id = $2
                AND (NOT $3 OR (next_seq = $4 AND generation = $5))
          RETURNING key, {counter} - $6 AS first, next_seq, generation
         )"
    );
    if with_blobs {
        sql.push_str(
            ", held AS (
                 SELECT id FROM {s}.sessions WHERE id = $1 AND EXISTS (SELECT 1 FROM tip) FOR SHARE
             ), kept AS (
                 INSERT INTO {s}.blobs (session, sha256, len, crc, data, created_ms)
                 SELECT held.id, b.sha256, b.len, b.crc, b.data, {now_ms}
                   FROM held, unnest($12::bytea[], $13::int8[], $14::int4[], $15::bytea[])
                        AS b(sha256, len, crc, data)
                 ON CONFLICT (session, sha256) DO NOTHING
             )",
        );
    }
    sql.push_str(&format!(
        ", rows AS (
             INSERT INTO {{s}}.{table} (segment, seq, appended_ms, crc, len, body, blob)
             SELECT tip.key, tip.first + e.n - 1, {{now_ms}}, e.crc, e.len, e.body, e.blob
               FROM tip, unnest($8::text[], $9::bytea[], $10::int8[], $11::int4[])
                    WITH ORDINALITY AS e(body, blob, len, crc, n)
         )
         SELECT next_seq, generation FROM tip"
    ));
    sql
}
