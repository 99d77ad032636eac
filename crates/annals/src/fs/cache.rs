//! The cache of open handles: one per file a writer has used, bounded by
//! `FsOptions::max_open_files` (the least recently used unused one is closed beyond that).
//! Poisoned handles stay, so that their error stays sticky until the store is reopened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::handle::Handle;
use super::seam::FileSystem;
use super::{lock, FsStore};
use crate::codec::FileKind;
use crate::scan::Identity;
use crate::{Error, Result, SegmentId, SessionId};

pub(crate) type Key = (SessionId, SegmentId, FileKind);

/// A handle as the cache hands it out: its mutex serializes the threads of one store.
pub(crate) type Shared<F> = Arc<Mutex<Handle<F>>>;

#[derive(Debug)]
pub(crate) struct OpenFiles<F: FileSystem> {
    slots: HashMap<Key, (Shared<F>, u64)>,
    tick: u64,
}

impl<F: FileSystem> Default for OpenFiles<F> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            tick: 0,
        }
    }
}

impl<F: FileSystem> FsStore<F> {
    /// The cached open handle of a file, opening it if needed. `Ok(None)` if it does not exist.
    pub(crate) fn handle(&self, key: Key) -> Result<Option<Shared<F>>> {
        {
            let mut open = lock(&self.open);
            open.tick += 1;
            let tick = open.tick;
            if let Some((h, used)) = open.slots.get_mut(&key) {
                *used = tick;
                return Ok(Some(Arc::clone(h)));
            }
        }
        let (session, segment, kind) = key;
        let identity = Identity {
            kind,
            session,
            segment,
        };
        let Some(handle) = Handle::open(&self.tree, identity)? else {
            return Ok(None);
        };
        let mut open = lock(&self.open);
        if open.slots.len() >= self.options.max_open_files {
            let victim = open
                .slots
                .iter()
                .filter(|(_, (h, _))| Arc::strong_count(h) == 1 && lock(h).poisoned.is_none())
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                open.slots.remove(&victim);
            }
        }
        let tick = open.tick;
        let slot = open
            .slots
            .entry(key)
            .or_insert_with(|| (Arc::new(Mutex::new(handle)), tick));
        Ok(Some(Arc::clone(&slot.0)))
    }

    pub(crate) fn segment_handle(
        &self,
        session: SessionId,
        segment: SegmentId,
    ) -> Result<Shared<F>> {
        self.handle((session, segment, FileKind::Segment))?
            .ok_or(Error::SegmentNotFound { session, segment })
    }

    /// The cached handle, if there is one (never opens).
    pub(crate) fn cached(&self, key: Key) -> Option<Shared<F>> {
        lock(&self.open).slots.get(&key).map(|(h, _)| Arc::clone(h))
    }

    /// Drops `handle` from the cache if it is still the one cached for `key`.
    pub(crate) fn forget(&self, key: Key, handle: &Shared<F>) {
        let mut open = lock(&self.open);
        if open
            .slots
            .get(&key)
            .is_some_and(|(cached, _)| Arc::ptr_eq(cached, handle))
        {
            open.slots.remove(&key);
        }
    }

    /// Drops every cached handle of the session.
    pub(crate) fn forget_session(&self, session: SessionId) {
        lock(&self.open).slots.retain(|(s, _, _), _| *s != session);
    }
}
