//! Damage done behind the store's back (a row's text changed, a row deleted, a blob's bytes
//! changed or gone) is found: `verify` reports each problem with its entry, strict replay stops
//! with `Corrupt`, tolerant replay delivers everything else.

use std::ops::ControlFlow;

use annals::{
    CorruptReason, Error, RawEntry, ReplayOptions, SegmentId, SessionId, Store, StoreExt,
};
use annals_postgres::PgStore;

use crate::support;

struct Damaged {
    store: PgStore,
    _guard: support::SchemaGuard,
    admin: postgres::Client,
    session: SessionId,
    segment: SegmentId,
    key: i64,
}

impl Damaged {
    fn new(server: &annals_postgres::test_server::Server, initial: &[RawEntry]) -> Self {
        let (store, guard) = support::open(support::options(server));
        let (session, segment) = (SessionId::new(), SegmentId::new());
        store.create_segment(session, segment, initial).unwrap();
        let mut admin = support::admin(&server.url());
        let key = admin
            .query_one(
                &format!(
                    "SELECT key FROM \"{}\".segments WHERE id = $1",
                    store.schema()
                ),
                &[segment.as_uuid()],
            )
            .unwrap()
            .get(0);
        Self {
            store,
            _guard: guard,
            admin,
            session,
            segment,
            key,
        }
    }

    fn sql(&mut self, sql: &str) {
        let sql = sql
            .replace("{s}", &format!("\"{}\"", self.store.schema()))
            .replace("{key}", &self.key.to_string());
        self.admin.batch_execute(&sql).unwrap();
    }

    fn tolerant_seqs(&self) -> Vec<u64> {
        let mut seqs = Vec::new();
        self.store
            .replay_raw(
                self.session,
                self.segment,
                &ReplayOptions::tolerant(),
                &mut |e| {
                    seqs.push(e.seq);
                    Ok(ControlFlow::Continue(()))
                },
            )
            .unwrap();
        seqs
    }
}

fn raws(n: u64) -> Vec<RawEntry> {
    support::entries(0..n)
        .iter()
        .map(|v| RawEntry::from_value(v).unwrap())
        .collect()
}

#[test]
fn a_changed_entry_text_fails_its_crc_in_verify_and_strict_replay() {
    let Some(server) = support::server() else {
        return;
    };
    let mut d = Damaged::new(&server, &raws(5));
    // Same length, other text: only the checksum can tell.
    d.sql(r#"UPDATE {s}.entries SET body = '{"i":7}' WHERE segment = {key} AND seq = 2"#);
    let report = d.store.verify(d.session, d.segment).unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert_eq!(
        report.problems[0].line, 4,
        "entry 2 is line 4 of its JSONL form"
    );
    assert!(
        matches!(report.problems[0].reason, CorruptReason::CrcMismatch { .. }),
        "{report:?}"
    );
    assert_eq!(report.entries, 4);
    match d.store.read_raw(d.session, d.segment) {
        Err(Error::Corrupt { line: 4, path, .. }) => {
            let path = path.display().to_string();
            assert!(path.contains(&d.segment.to_string()), "{path}");
        }
        other => panic!("strict read of a damaged segment: {other:?}"),
    }
    assert_eq!(d.tolerant_seqs(), vec![0, 1, 3, 4]);
}

#[test]
fn a_deleted_entry_is_a_gap_in_the_sequence() {
    let Some(server) = support::server() else {
        return;
    };
    let mut d = Damaged::new(&server, &raws(6));
    d.sql("DELETE FROM {s}.entries WHERE segment = {key} AND seq = 3");
    let report = d.store.verify(d.session, d.segment).unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert_eq!(
        report.problems[0].reason,
        CorruptReason::SeqMismatch {
            expected: 3,
            found: 4
        }
    );
    // A missing last entry is found too: the tip says how many there are.
    d.sql("DELETE FROM {s}.entries WHERE segment = {key} AND seq = 5");
    let report = d.store.verify(d.session, d.segment).unwrap();
    assert_eq!(report.problem_count, 2, "{report:?}");
    assert_eq!(
        report.problems[1].reason,
        CorruptReason::SeqMismatch {
            expected: 5,
            found: 6
        }
    );
    assert!(matches!(
        d.store.read::<serde_json::Value>(d.session, d.segment),
        Err(Error::Corrupt { .. })
    ));
    assert_eq!(d.tolerant_seqs(), vec![0, 1, 2, 4]);
}

fn large(n: usize) -> RawEntry {
    RawEntry::from_json(&format!("\"{}\"", "x".repeat(n))).unwrap()
}

#[test]
fn damaged_or_missing_blobs_are_found_and_sha256_damage_by_verify_and_get_blob() {
    let Some(server) = support::server() else {
        return;
    };
    let big = large(annals::MAX_INLINE + 500);
    let bigger = large(annals::MAX_INLINE + 900);
    let mut d = Damaged::new(&server, &[raws(1).remove(0), big.clone(), bigger.clone()]);
    assert!(d.store.verify(d.session, d.segment).unwrap().is_clean());

    // Bytes changed and the blob's CRC made to match: replay's cheap check passes, the SHA-256
    // of verify and get_blob does not.
    let id = annals::BlobId::of(big.as_str().as_bytes());
    d.sql(&format!(
        "UPDATE {{s}}.blobs SET data = overlay(data placing 'y'::bytea from 100), \
         crc = {} WHERE sha256 = '\\x{id}'",
        {
            let mut bytes = big.as_str().as_bytes().to_vec();
            bytes[99] = b'y';
            i32::from_ne_bytes(crc32fast::hash(&bytes).to_ne_bytes())
        }
    ));
    let report = d.store.verify(d.session, d.segment).unwrap();
    assert_eq!(report.problem_count, 1, "{report:?}");
    assert!(
        matches!(&report.problems[0].reason, CorruptReason::Blob { id: i, .. } if *i == id),
        "{report:?}"
    );
    assert!(matches!(
        d.store.get_blob(d.session, &id),
        Err(Error::Corrupt { .. })
    ));

    // Bytes changed without the CRC: every replay sees it.
    d.sql(&format!(
        "UPDATE {{s}}.blobs SET data = overlay(data placing 'z'::bytea from 50) WHERE sha256 = '\\x{id}'"
    ));
    assert!(matches!(
        d.store.read_raw(d.session, d.segment),
        Err(Error::Corrupt { line: 3, .. })
    ));

    // A blob gone.
    let other = annals::BlobId::of(bigger.as_str().as_bytes());
    d.sql(&format!(
        "DELETE FROM {{s}}.blobs WHERE sha256 = '\\x{other}'"
    ));
    let report = d.store.verify(d.session, d.segment).unwrap();
    assert_eq!(report.problem_count, 2, "{report:?}");
    assert!(
        matches!(&report.problems[1].reason, CorruptReason::Blob { id, problem } if *id == other && *problem == annals::BlobFault::Missing),
        "{report:?}"
    );
    assert_eq!(d.tolerant_seqs(), vec![0]);
    // With blob references only, the entries come out as references (no blob is read).
    let mut refs = 0;
    d.store
        .replay_raw(
            d.session,
            d.segment,
            &ReplayOptions::strict().blob_refs(),
            &mut |e| {
                if matches!(e.body, annals::Body::Blob { json: None, .. }) {
                    refs += 1;
                }
                Ok(ControlFlow::Continue(()))
            },
        )
        .unwrap();
    assert_eq!(refs, 2);
}

#[test]
fn verify_of_a_clean_segment_with_blobs_traces_and_forks_is_clean() {
    let Some(server) = support::server() else {
        return;
    };
    let d = Damaged::new(&server, &[large(annals::MAX_INLINE + 1), raws(1).remove(0)]);
    d.store
        .append_trace(d.session, d.segment, &serde_json::json!("event"))
        .unwrap();
    let fork = SegmentId::new();
    d.store.fork(d.session, d.segment, 2, fork).unwrap();
    for segment in [d.segment, fork] {
        let report = d.store.verify(d.session, segment).unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert_eq!(report.entries, 2);
    }
}
