//! Hostile stores: links, FIFOs, sockets, devices and entries of the wrong kind where the store
//! keeps its own, and read-only media. Real files, public API only. The promises: nothing
//! outside the root is read through, written or removed; no call hangs; a refusal is
//! `Error::NotOurs` naming the path, what is there and what belongs there; and a look
//! (listings, replays, verify, every dry run) changes nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use annals::testing::support::{entry, TempStore};
use annals::{
    Access, AttachmentMeta, BlobId, Call, EntryKind, Error, Fault, FaultPlan, FsOptions, FsStore,
    ReplayOptions, SegmentId, SessionId, Store, StoreExt,
};
use serde_json::{json, Value};

use crate::media::Tmpfs;

/// An entry too long for a line, kept as a blob.
fn big(n: u64) -> Value {
    json!({ "i": n, "text": "x".repeat(9000) })
}

fn meta() -> AttachmentMeta {
    AttachmentMeta {
        media_type: "text/plain".into(),
        label: None,
        width: None,
        height: None,
    }
}

/// Every file and link below `dir`, with its contents (or its target), to compare before and
/// after: nothing outside the root may change.
fn tree_state(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(path, target.into_os_string().into_encoded_bytes());
            } else if meta.is_dir() {
                out.insert(path.clone(), b"<dir>".to_vec());
                stack.push(path);
            } else if meta.is_file() {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            } else {
                out.insert(path, b"<special>".to_vec());
            }
        }
    }
    out
}

/// Every call of the store that concerns one segment of one session, writes and dry runs
/// included, with what it returned.
fn every_call(
    store: &FsStore,
    session: SessionId,
    segment: SegmentId,
) -> Vec<(&'static str, annals::Result<()>)> {
    let raw = |v: &Value| annals::RawEntry::from_value(v).unwrap();
    let mut sink = |_: annals::Entry<'_>| Ok(std::ops::ControlFlow::Continue(()));
    vec![
        (
            "create",
            store
                .create_segment(session, SegmentId::new(), &[raw(&entry(0))])
                .map(|_| ()),
        ),
        (
            "create with a blob",
            store
                .create_segment(session, SegmentId::new(), &[raw(&big(0))])
                .map(|_| ()),
        ),
        (
            "append",
            store
                .append_raw(session, segment, &raw(&entry(9)))
                .map(|_| ()),
        ),
        (
            "append a blob",
            store
                .append_raw(session, segment, &raw(&big(9)))
                .map(|_| ()),
        ),
        (
            "append_if",
            store
                .append_if(
                    session,
                    segment,
                    store.tip(session, segment).unwrap_or_default(),
                    &[raw(&entry(9))],
                )
                .map(|_| ()),
        ),
        (
            "trace",
            store.append_trace_raw(session, segment, &[raw(&json!({"e": 1}))]),
        ),
        (
            "replay",
            store
                .replay_raw(session, segment, &ReplayOptions::tolerant(), &mut sink)
                .map(|_| ()),
        ),
        (
            "replay trace",
            store
                .replay_trace_raw(session, segment, &ReplayOptions::tolerant(), &mut sink)
                .map(|_| ()),
        ),
        ("verify", store.verify(session, segment).map(|_| ())),
        ("tip", store.tip(session, segment).map(|_| ())),
        ("sync", store.sync(session, segment)),
        ("truncate", store.truncate(session, segment, 0).map(|_| ())),
        (
            "fork",
            store
                .fork(session, segment, 0, SegmentId::new())
                .map(|_| ()),
        ),
        ("exists", store.exists(session, segment).map(|_| ())),
        ("list segments", store.list_segments(session).map(|_| ())),
        (
            "session modified",
            store.session_modified(session).map(|_| ()),
        ),
        (
            "attach",
            store
                .put_attachment(session, b"attached", &meta())
                .map(|_| ()),
        ),
        (
            "list attachments",
            store.list_attachments(session).map(|_| ()),
        ),
        (
            "get blob",
            store
                .get_blob(session, &BlobId::of(b"attached"))
                .map(|_| ()),
        ),
        ("gc dry run", store.gc_blobs(session, true).map(|_| ())),
        ("gc", store.gc_blobs(session, false).map(|_| ())),
        (
            "repair dry run",
            store.repair(session, segment, true).map(|_| ()),
        ),
        ("repair", store.repair(session, segment, false).map(|_| ())),
        ("list sessions", store.list_sessions().map(|_| ())),
        ("find session", store.find_session(segment).map(|_| ())),
    ]
}

/// Runs `f` on a thread and fails the test if it has not returned after a minute: a call that
/// blocks on a FIFO would otherwise hang the suite instead of failing it.
fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hangs"))
}

fn is_not_ours(e: &Error, found: EntryKind) -> bool {
    matches!(e, Error::NotOurs { found: f, .. } if *f == found)
}

#[test]
fn a_session_directory_that_is_a_link_outside_is_followed_by_no_call() {
    let t = TempStore::new();
    let outside = tempfile::tempdir().unwrap();
    // A genuine session outside the root, under the linked name: following the link would work.
    let elsewhere = FsStore::open(outside.path()).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    elsewhere
        .create(session, segment, &[entry(0), big(1)])
        .unwrap();
    drop(elsewhere);
    let before = tree_state(outside.path());
    let link = t.root().join(session.to_string());
    symlink(outside.path().join(session.to_string()), &link).unwrap();

    for (call, outcome) in every_call(&t, session, segment) {
        match (call, &outcome) {
            ("list sessions" | "find session", Ok(()))
            | (_, Err(Error::SegmentNotFound { .. })) => {}
            ("exists", Ok(())) => {}
            (_, Err(e)) if is_not_ours(e, EntryKind::Symlink) => {
                assert!(e.to_string().contains("symbolic link"), "{call}: {e}");
            }
            (_, other) => panic!("{call}: {other:?}"),
        }
    }
    assert!(!t.list_sessions().unwrap().contains(&session));
    assert!(!t.exists(session, segment).unwrap());
    assert_eq!(
        tree_state(outside.path()),
        before,
        "something outside changed"
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(matches!(
        t.delete_session(session),
        Err(e) if is_not_ours(&e, EntryKind::Symlink)
    ));
    assert_eq!(tree_state(outside.path()), before);
}

#[test]
fn a_blobs_directory_pack_shard_or_blob_that_is_a_link_is_never_followed_and_gc_removes_nothing_outside(
) {
    for level in ["blobs", "pack", "shard", "blob"] {
        let t = TempStore::new();
        let (session, segment) = (SessionId::new(), SegmentId::new());
        let blobs = t.root().join(session.to_string()).join("blobs");
        if level == "shard" || level == "blob" {
            // Blob files of their own: as a format-2 segment's appends make them.
            let text = serde_json::to_string(&big(1)).unwrap();
            let hex = BlobId::of(text.as_bytes()).to_hex();
            std::fs::create_dir_all(blobs.join(&hex[..2])).unwrap();
            std::fs::write(blobs.join(&hex[..2]).join(&hex), text).unwrap();
            t.create(session, segment, &[entry(0)]).unwrap();
        } else {
            t.create(session, segment, &[entry(0), big(1)]).unwrap();
            t.truncate(session, segment, 1).unwrap(); // the blob is an orphan now
        }
        let outside = tempfile::tempdir().unwrap();
        // Move the real thing out and link to it, so that following the link finds blobs.
        let id = BlobId::of(serde_json::to_string(&big(1)).unwrap().as_bytes());
        let hex = id.to_hex();
        let (inside, moved) = match level {
            "blobs" => (blobs.clone(), outside.path().join("blobs")),
            "pack" => (blobs.join("pack"), outside.path().join("pack")),
            "shard" => (blobs.join(&hex[..2]), outside.path().join(&hex[..2])),
            _ => (blobs.join(&hex[..2]).join(&hex), outside.path().join(&hex)),
        };
        std::fs::rename(&inside, &moved).unwrap();
        symlink(&moved, &inside).unwrap();
        let before = tree_state(outside.path());

        for dry_run in [true, false] {
            match t.gc_blobs(session, dry_run) {
                Ok(report) => assert!(report.orphans.is_empty(), "{level}: {report:?}"),
                Err(e) => assert!(is_not_ours(&e, EntryKind::Symlink), "{level}: {e}"),
            }
        }
        for (call, outcome) in every_call(&t, session, segment) {
            if let Err(e) = outcome {
                assert!(is_not_ours(&e, EntryKind::Symlink), "{level} {call}: {e}");
            }
        }
        assert_eq!(
            tree_state(outside.path()),
            before,
            "{level}: something outside changed"
        );
        assert!(std::fs::symlink_metadata(&inside)
            .unwrap()
            .file_type()
            .is_symlink());
        // The log itself is untouched by all this and still reads.
        assert!(t.read::<Value>(session, segment).is_ok(), "{level}");
    }
}

#[test]
fn fifos_sockets_and_devices_where_files_belong_hang_no_call_and_are_left_alone() {
    let names = |segment: SegmentId| {
        [
            format!("{segment}.jsonl"),
            format!("{segment}.trace.jsonl"),
            "attachments.jsonl".to_string(),
        ]
    };
    for kind in ["fifo", "socket", "device"] {
        for which in 0..3 {
            let t = TempStore::new();
            let (session, segment) = (SessionId::new(), SegmentId::new());
            // A real segment first (for the trace and index cases), then the special file.
            if which > 0 {
                t.create(session, segment, &[entry(0)]).unwrap();
            } else {
                std::fs::create_dir(t.root().join(session.to_string())).unwrap();
            }
            let path = t
                .root()
                .join(session.to_string())
                .join(&names(segment)[which]);
            let _socket;
            let found = match kind {
                "fifo" => {
                    rustix::fs::mkfifoat(
                        rustix::fs::CWD,
                        &path,
                        rustix::fs::Mode::from_raw_mode(0o600),
                    )
                    .unwrap();
                    EntryKind::Fifo
                }
                "socket" => {
                    _socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
                    EntryKind::Socket
                }
                _ => {
                    let dev = rustix::fs::makedev(1, 3); // what /dev/null is
                    let mode = rustix::fs::Mode::from_raw_mode(0o600);
                    if rustix::fs::mknodat(
                        rustix::fs::CWD,
                        &path,
                        rustix::fs::FileType::CharacterDevice,
                        mode,
                        dev,
                    )
                    .is_err()
                    {
                        println!("mknod not permitted here: device files not tried");
                        continue;
                    }
                    EntryKind::CharDevice
                }
            };
            let root = t.root().to_path_buf();
            let outcomes = without_hanging(kind, move || {
                let store = FsStore::open(&root).unwrap();
                every_call(&store, session, segment)
            });
            let mut refused = 0;
            for (_, outcome) in outcomes {
                if let Err(e) = outcome {
                    if is_not_ours(&e, found) {
                        refused += 1;
                        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
                    }
                }
            }
            assert!(
                refused > 0,
                "{kind} at {}: nothing refused it",
                path.display()
            );
            let still = std::fs::symlink_metadata(&path).unwrap();
            assert!(
                !still.is_file() && !still.is_dir(),
                "{kind} was replaced or removed"
            );
        }
    }
}

#[test]
fn a_file_where_a_directory_belongs_or_a_directory_where_a_file_belongs_is_refused_and_left_alone()
{
    let t = TempStore::new();
    let session = SessionId::new();
    let as_file = t.root().join(session.to_string());
    std::fs::write(&as_file, b"a file named like a session").unwrap();
    let err = t
        .create::<Value>(session, SegmentId::new(), &[])
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotOurs {
                found: EntryKind::File,
                expected: EntryKind::Directory,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(t.list_sessions().unwrap().is_empty());
    assert_eq!(
        std::fs::read(&as_file).unwrap(),
        b"a file named like a session"
    );

    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(session, segment, &[entry(0)]).unwrap();
    let dir = t.root().join(session.to_string());
    std::fs::write(dir.join("blobs"), b"not a directory").unwrap();
    let err = t.append(session, segment, &big(1)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotOurs {
                found: EntryKind::File,
                ..
            }
        ),
        "{err:?}"
    );
    std::fs::create_dir(dir.join(format!("{segment}.trace.jsonl"))).unwrap();
    std::fs::write(
        dir.join(format!("{segment}.trace.jsonl")).join("inside"),
        b"mine",
    )
    .unwrap();
    let err = t
        .append_trace(session, segment, &json!({"e": 1}))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::NotOurs {
                found: EntryKind::Directory,
                expected: EntryKind::File,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        std::fs::read(dir.join(format!("{segment}.trace.jsonl")).join("inside")).unwrap(),
        b"mine"
    );
    assert_eq!(t.read::<Value>(session, segment).unwrap(), [entry(0)]);
}

#[test]
fn deleting_a_session_removes_links_in_it_as_links_and_touches_nothing_outside() {
    let t = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(session, segment, &[entry(0), big(1)]).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), b"keep me").unwrap();
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    std::fs::write(outside.path().join("dir").join("victim"), b"keep me too").unwrap();
    let before = tree_state(outside.path());
    let dir = t.root().join(session.to_string());
    symlink(outside.path().join("victim"), dir.join("link-to-file")).unwrap();
    symlink(outside.path().join("dir"), dir.join("link-to-dir")).unwrap();
    symlink(outside.path().join("dir"), dir.join("blobs").join("ff")).unwrap();

    t.delete_session(session).unwrap();
    assert!(!t.list_sessions().unwrap().contains(&session));
    assert_eq!(
        std::fs::read_dir(t.root()).unwrap().count(),
        0,
        "nothing of it is left"
    );
    assert_eq!(
        tree_state(outside.path()),
        before,
        "something outside changed"
    );
}

/// A plan that answers every call a read-only mount refuses with `EROFS`: opening for writing,
/// and every call that changes the medium.
#[derive(Debug)]
struct ReadOnlyMount;

impl FaultPlan for ReadOnlyMount {
    fn at(&self, call: &Call<'_>) -> Option<Fault> {
        let writes = call.op.changes_media() || call.access == Some(Access::Append);
        writes.then_some(Fault::Errno(30))
    }
}

/// A store with something for every look to find: a segment with blobs (one an orphan), a
/// torn tail, a trace and an attachment, and no `blobs/lock` (a dry run must not create it).
fn store_to_look_at(root: &Path) -> (SessionId, SegmentId) {
    let t = FsStore::open(root).unwrap();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(session, segment, &[entry(0), big(1), big(2)])
        .unwrap();
    t.truncate(session, segment, 2).unwrap(); // big(2)'s blob is an orphan
    t.append_trace(session, segment, &json!({"e": 1})).unwrap();
    t.put_attachment(session, b"attached", &meta()).unwrap();
    let path = t.segment_path(session, segment);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"crc\":\"0a"); // a torn tail for the dry run to find
    std::fs::write(&path, &bytes).unwrap();
    std::fs::remove_file(root.join(session.to_string()).join("blobs").join("lock")).unwrap();
    (session, segment)
}

/// Every look and every dry run, on [`store_to_look_at`]'s store: each works.
fn every_look_works<F: annals::FileSystem>(
    store: &FsStore<F>,
    session: SessionId,
    segment: SegmentId,
) {
    assert_eq!(store.list_sessions().unwrap(), [session]);
    assert_eq!(store.list_segments(session).unwrap().len(), 1);
    assert_eq!(store.find_session(segment).unwrap(), Some(session));
    assert!(store.exists(session, segment).unwrap());
    assert_eq!(
        store.read::<Value>(session, segment).unwrap(),
        [entry(0), big(1)]
    );
    let mut traces = 0;
    store
        .replay_trace_raw(session, segment, &ReplayOptions::strict(), &mut |_| {
            traces += 1;
            Ok(std::ops::ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(traces, 1);
    let report = store.verify(session, segment).unwrap();
    assert!(
        report.is_clean() && report.torn_tail.is_some(),
        "{report:?}"
    );
    assert_eq!(store.tip(session, segment).unwrap().count, 2);
    assert!(store.session_modified(session).is_ok());
    assert_eq!(store.list_attachments(session).unwrap().len(), 1);
    assert_eq!(
        store.get_blob(session, &BlobId::of(b"attached")).unwrap(),
        b"attached"
    );
    let plan = store.repair(session, segment, true).unwrap();
    assert_eq!(plan.torn_tail.map(|t| t.len), Some(10));
    let gc = store.gc_blobs(session, true).unwrap();
    assert_eq!((gc.orphans.len(), gc.kept), (1, 2), "{gc:?}");
}

/// Every write on that store is refused with `errno` (the medium's own words), and none of
/// them changes anything.
fn every_write_refused<F: annals::FileSystem>(
    store: &FsStore<F>,
    session: SessionId,
    segment: SegmentId,
    errno: i32,
) {
    let refusals = [
        ("append", store.append(session, segment, &entry(9)).err()),
        (
            "append a blob",
            store.append(session, segment, &big(9)).err(),
        ),
        (
            "create",
            store.create(session, SegmentId::new(), &[entry(0)]).err(),
        ),
        (
            "create a session",
            store
                .create(SessionId::new(), SegmentId::new(), &[entry(0)])
                .err(),
        ),
        ("truncate", store.truncate(session, segment, 1).err()),
        (
            "fork",
            store.fork(session, segment, 1, SegmentId::new()).err(),
        ),
        (
            "trace",
            store.append_trace(session, segment, &json!({"e": 2})).err(),
        ),
        (
            "attach",
            store.put_attachment(session, b"more", &meta()).err(),
        ),
        ("repair", store.repair(session, segment, false).err()),
        ("gc", store.gc_blobs(session, false).err()),
        ("delete", store.delete_session(session).err()),
    ];
    for (what, refused) in refusals {
        let e = refused.unwrap_or_else(|| panic!("{what} worked on a read-only medium"));
        let os = match &e {
            Error::Io { source, .. } => source.raw_os_error(),
            other => panic!("{what}: {other:?}"),
        };
        assert_eq!(os, Some(errno), "{what}: {e}");
    }
}

#[test]
fn every_look_and_every_dry_run_works_on_a_read_only_medium_and_creates_nothing() {
    let t = TempStore::new();
    let (session, segment) = store_to_look_at(t.root());
    let before = tree_state(t.root());
    let store =
        FsStore::open_with_faults(t.root(), FsOptions::default(), Arc::new(ReadOnlyMount)).unwrap();
    every_look_works(&store, session, segment);
    assert_eq!(tree_state(t.root()), before, "a look changed the store");
    every_write_refused(&store, session, segment, 30);
    assert_eq!(
        tree_state(t.root()),
        before,
        "a refused write changed the store"
    );
}

#[test]
fn on_a_real_read_only_mount_every_look_and_dry_run_works_and_every_write_says_erofs() {
    let Some(mount) = Tmpfs::mount("16m", "hostile::on_a_real_read_only_mount") else {
        return;
    };
    let root = mount.path().join("store");
    let (session, segment) = store_to_look_at(&root);
    let before = tree_state(&root);
    mount.set_read_only(true);
    let store = FsStore::open(&root).unwrap();
    every_look_works(&store, session, segment);
    every_write_refused(&store, session, segment, 30);
    let e = store.append(session, segment, &entry(9)).unwrap_err();
    assert_eq!(e.io_kind(), Some(std::io::ErrorKind::ReadOnlyFilesystem));
    assert!(e.to_string().contains("Read-only file system"), "{e}");
    drop(store);
    mount.set_read_only(false);
    assert_eq!(tree_state(&root), before, "something changed on the mount");
}

#[test]
fn names_from_a_hostile_directory_are_never_used_as_paths() {
    // Entries named like ours but of the wrong kind, and names with odd bytes, in the root and
    // in a session: listings skip them, and nothing opens, follows or removes them.
    let t = TempStore::new();
    let (session, segment) = (SessionId::new(), SegmentId::new());
    t.create(session, segment, &[entry(0)]).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("victim"), b"keep me").unwrap();
    let before = tree_state(outside.path());
    let dir = t.root().join(session.to_string());
    let fake = SegmentId::new();
    symlink(
        outside.path().join("victim"),
        dir.join(format!("{fake}.jsonl")),
    )
    .unwrap();
    symlink(outside.path(), t.root().join(SessionId::new().to_string())).unwrap();
    let listed: Vec<_> = t
        .list_segments(session)
        .unwrap()
        .into_iter()
        .map(|i| i.segment)
        .collect();
    assert_eq!(listed, [segment]);
    assert_eq!(t.list_sessions().unwrap(), [session]);
    assert_eq!(t.find_session(fake).unwrap(), None);
    t.gc_blobs(session, false).unwrap();
    assert_eq!(tree_state(outside.path()), before);
}
