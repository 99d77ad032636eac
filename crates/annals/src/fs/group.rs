//! Group commit: the threads of one process that append durably to the same file share each
//! `fdatasync`.
//!
//! A handle's open file (`OpenFile`) carries the file's group. A `Sync` append writes its lines
//! under the handle and the file's lock, as every append does, records how many entries the
//! file holds after them (`written`), lets go of both, and then waits until an `fdatasync` that
//! *started* after its `write(2)` returned has returned (`synced` at or past its count). The
//! first waiter that finds no `fdatasync` in flight makes one (the leader) and covers every line
//! written before it started; the others (followers) sleep on the condition variable and wake
//! when it returns. While it runs, other threads write their lines, and the next leader covers
//! them all with one call. An explicit sync (`Store::sync`, a lease's) joins the group too, but
//! waits for an `fdatasync` that began after it was called: it covers whatever is in the file,
//! other processes' lines included.
//!
//! A failed `fdatasync` fails the group for good (the kernel may have dropped the dirty pages,
//! and another call could report success for lost data): it wakes every waiter with the error,
//! none of them is told its line is durable, nobody syncs the file again, and the handle counts
//! as poisoned from then on (`Handle::check_poison`).
//!
//! The group belongs to one open file: a handle that follows its name to a new file (a rewrite)
//! gets a new one, and the waiters of the old file finish on the old group.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::handle::Poison;
use super::lock;
use super::seam::FileSystem;
use crate::{Error, Result};

/// A file a handle has open, with its group commit.
#[derive(Debug)]
pub(crate) struct OpenFile<F: FileSystem> {
    file: F::File,
    path: PathBuf,
    group: Group,
}

#[derive(Debug, Default)]
struct Group {
    /// Entries the file holds after the last `write(2)` of this process that returned.
    written: AtomicU64,
    /// Entries covered by an `fdatasync` that returned.
    synced: AtomicU64,
    /// Set (for good) with `State::failed`; read without the lock on every append.
    failed: AtomicBool,
    state: Mutex<State>,
    turn: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A leader's `fdatasync` is in flight.
    syncing: bool,
    /// `fdatasync`s begun, and the last one that returned successfully (they run one at a
    /// time, in order).
    started: u64,
    finished: u64,
    failed: Option<Poison>,
}

impl<F: FileSystem> Deref for OpenFile<F> {
    type Target = F::File;

    fn deref(&self) -> &F::File {
        &self.file
    }
}

impl<F: FileSystem> OpenFile<F> {
    pub(crate) fn new(file: F::File, path: &Path) -> Arc<Self> {
        Arc::new(Self {
            file,
            path: path.to_path_buf(),
            group: Group::default(),
        })
    }

    /// After a `write(2)` of lines returned: the file holds `count` entries.
    pub(crate) fn wrote(&self, count: u64) {
        self.group.written.fetch_max(count, Ordering::Release);
    }

    /// Entries known durable through this file's group.
    pub(crate) fn synced(&self) -> u64 {
        self.group.synced.load(Ordering::Acquire)
    }

    /// Why the group's `fdatasync` failed, if one did.
    pub(crate) fn failure(&self) -> Option<Poison> {
        if !self.group.failed.load(Ordering::Acquire) {
            return None;
        }
        lock(&self.group.state).failed.clone()
    }

    /// Returns once an `fdatasync` that started after the file held `count` entries has
    /// returned (making one if none is in flight), with the count it covered. With `fresh`,
    /// the `fdatasync` must also have started after this call (an explicit `sync`, which covers
    /// whatever is in the file, other processes' lines too). A leader calls `first` between
    /// taking the count its round covers and its `fdatasync` (the blob pack's, which must be
    /// durable before the lines that refer to it are said to be); if it fails, so does the
    /// round, without touching this file's state.
    ///
    /// # Errors
    /// The `fdatasync`'s error for the leader whose call failed; [`Error::Poisoned`] for every
    /// other waiter, then and from then on. `first`'s error for its leader.
    pub(crate) fn sync_to(
        &self,
        fs: &F,
        count: u64,
        fresh: bool,
        first: &dyn Fn() -> Result<()>,
    ) -> Result<u64> {
        let group = &self.group;
        let mut state = lock(&group.state);
        let round = if fresh { state.started + 1 } else { 0 };
        loop {
            if let Some(poison) = &state.failed {
                return Err(poison.error(&self.path));
            }
            let synced = group.synced.load(Ordering::Acquire);
            if synced >= count && state.finished >= round {
                return Ok(synced);
            }
            if state.syncing {
                state = group
                    .turn
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            state.syncing = true;
            state.started += 1;
            // Every line whose write returned before this load is in the file now.
            let covers = group.written.load(Ordering::Acquire).max(count);
            drop(state);
            let before = first();
            let result = if before.is_ok() {
                fs.sync_data(&self.file)
            } else {
                Ok(())
            };
            state = lock(&group.state);
            state.syncing = false;
            let outcome = match before.and(Ok(result)) {
                Err(e) => Err(e),
                Ok(Ok(())) => {
                    group.synced.fetch_max(covers, Ordering::AcqRel);
                    state.finished = state.started;
                    Ok(())
                }
                Ok(Err(e)) => {
                    state.failed = Some(Poison::new("fsync", &e));
                    group.failed.store(true, Ordering::Release);
                    Err(Error::io("fsync", &self.path, e))
                }
            };
            group.turn.notify_all();
            outcome?;
        }
    }
}

/// A `Sync` append's lines, written, waiting for the group's `fdatasync` (after the handle and
/// the file's lock are let go).
#[derive(Debug)]
pub(crate) struct Commit<F: FileSystem> {
    pub(crate) file: Arc<OpenFile<F>>,
    pub(crate) count: u64,
}

impl<F: FileSystem> Commit<F> {
    /// Waits until the lines are durable.
    ///
    /// # Errors
    /// As [`OpenFile::sync_to`].
    pub(crate) fn wait(&self, fs: &F) -> Result<()> {
        self.file
            .sync_to(fs, self.count, false, &|| Ok(()))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::mpsc::Receiver;
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use super::OpenFile;
    use crate::fs::seam::FileSystem;
    use crate::fs::{Call, Fault, FaultFs, FaultPlan, Op, SimFs};

    type File = Arc<OpenFile<FaultFs<SimFs>>>;

    /// Holds every fdatasync at a gate until the test opens it; counts them; fails them all
    /// if `fail` is set.
    #[derive(Debug, Default)]
    struct Gate {
        open: Mutex<bool>,
        moved: Condvar,
        entered: AtomicU32,
        fail: AtomicBool,
    }

    impl Gate {
        fn release(&self) {
            *self.open.lock().unwrap() = true;
            self.moved.notify_all();
        }

        fn wait_entered(&self, n: u32) {
            for _ in 0..10_000 {
                if self.entered.load(Ordering::SeqCst) >= n {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            panic!("fdatasync {n} was never made");
        }

        fn entered(&self) -> u32 {
            self.entered.load(Ordering::SeqCst)
        }
    }

    impl FaultPlan for Gate {
        fn at(&self, call: &Call<'_>) -> Option<Fault> {
            if call.op != Op::SyncData {
                return None;
            }
            self.entered.fetch_add(1, Ordering::SeqCst);
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.moved.wait(open).unwrap();
            }
            self.fail.load(Ordering::SeqCst).then_some(Fault::Eio)
        }
    }

    fn file(gate: &Arc<Gate>) -> (FaultFs<SimFs>, File) {
        let fs = FaultFs::new(SimFs::new(), gate.clone());
        let root = fs.open_root("/group".as_ref(), true).unwrap();
        let file = fs.create_new(&root, "f").unwrap();
        (fs, OpenFile::new(file, "/group/f".as_ref()))
    }

    /// `sync_to` on another thread (a mutant that hangs it fails the test, never hangs it).
    fn waiter(
        fs: &FaultFs<SimFs>,
        file: &File,
        count: u64,
        fresh: bool,
    ) -> Receiver<crate::Result<u64>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (fs, file) = (fs.clone(), Arc::clone(file));
        std::thread::spawn(move || {
            tx.send(file.sync_to(&fs, count, fresh, &|| Ok(())))
                .unwrap()
        });
        rx
    }

    fn outcome(rx: &Receiver<crate::Result<u64>>) -> crate::Result<u64> {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("sync_to did not return")
    }

    fn synced(fs: &FaultFs<SimFs>, file: &File, count: u64, fresh: bool) -> crate::Result<u64> {
        outcome(&waiter(fs, file, count, fresh))
    }

    fn still_waiting(rx: &Receiver<crate::Result<u64>>) -> bool {
        rx.recv_timeout(Duration::from_millis(30)).is_err()
    }

    #[test]
    fn nobody_is_told_durable_before_the_fdatasync_that_covers_it_returns() {
        let gate = Arc::new(Gate::default());
        let (fs, file) = file(&gate);
        file.wrote(1);
        let leader = waiter(&fs, &file, 1, false);
        gate.wait_entered(1);
        // Written before the leader's sync began, so covered by it, but not durable until it
        // returns; written after it began: needs the next one.
        let covered = waiter(&fs, &file, 1, false);
        file.wrote(2);
        let next = waiter(&fs, &file, 2, false);
        assert!(still_waiting(&covered) && still_waiting(&next) && still_waiting(&leader));
        gate.release();
        assert_eq!(outcome(&leader).unwrap(), 1);
        assert!(outcome(&covered).unwrap() >= 1);
        assert_eq!(outcome(&next).unwrap(), 2);
        // One sync for the first line, one for the second: the follower of the first shared.
        assert_eq!(gate.entered(), 2);
        assert_eq!(file.synced(), 2);
        // Known durable: no call. An explicit sync makes one anyway.
        assert_eq!(synced(&fs, &file, 2, false).unwrap(), 2);
        assert_eq!(gate.entered(), 2);
        assert_eq!(synced(&fs, &file, 2, true).unwrap(), 2);
        assert_eq!(gate.entered(), 3);
        // A sync covers everything written before it began, not only what its caller wrote.
        file.wrote(5);
        assert_eq!(synced(&fs, &file, 3, false).unwrap(), 5);
        assert_eq!(file.synced(), 5);
        assert_eq!(synced(&fs, &file, 4, false).unwrap(), 5);
        assert_eq!(gate.entered(), 4);
    }

    #[test]
    fn an_explicit_sync_does_not_count_an_fdatasync_that_began_before_it() {
        let gate = Arc::new(Gate::default());
        let (fs, file) = file(&gate);
        file.wrote(1);
        let leader = waiter(&fs, &file, 1, false);
        gate.wait_entered(1);
        let explicit = waiter(&fs, &file, 1, true);
        gate.release();
        outcome(&leader).unwrap();
        outcome(&explicit).unwrap();
        assert_eq!(gate.entered(), 2);
    }

    #[test]
    fn a_failed_fdatasync_fails_its_followers_and_every_later_waiter_without_another_call() {
        let gate = Arc::new(Gate::default());
        gate.fail.store(true, Ordering::SeqCst);
        let (fs, file) = file(&gate);
        file.wrote(1);
        let leader = waiter(&fs, &file, 1, false);
        gate.wait_entered(1);
        let follower = waiter(&fs, &file, 1, false);
        assert!(still_waiting(&follower));
        assert!(
            file.failure().is_none(),
            "not failed before the call returns"
        );
        gate.release();
        assert!(matches!(outcome(&leader), Err(crate::Error::Io { .. })));
        assert!(matches!(
            outcome(&follower),
            Err(crate::Error::Poisoned { .. })
        ));
        assert!(file.failure().is_some());
        for fresh in [false, true] {
            assert!(matches!(
                synced(&fs, &file, 1, fresh),
                Err(crate::Error::Poisoned { .. })
            ));
        }
        assert_eq!(gate.entered(), 1);
        assert_eq!(file.synced(), 0);
    }
}
