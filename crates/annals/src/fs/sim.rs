//! [`SimFs`]: a file system in memory that can lose power.
//!
//! Every file keeps two contents: what the page cache holds (*live*) and what is on the device
//! as of its last `fdatasync` (*durable*). Every directory keeps two sets of names likewise:
//! live, and durable as of its last `fsync`. [`SimFs::after`] gives the medium as it comes back
//! after a crash of the chosen kind, as a new `SimFs`: a test opens a store on it and checks
//! what it finds, with no disk involved. Locks are `flock`'s: per open file, shared or
//! exclusive, released when the file is closed.
//!
//! Only with the `fault-injection` feature.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Component, Path};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use super::seam::{
    one_component, Access, DirEntry, EntryKind, FileSystem, LockKind, Lookup, Sealed, Stat,
};

/// What survives a crash, for [`SimFs::after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Crash {
    /// A power cut as POSIX promises it: durable names, durable contents.
    PowerCut,
    /// A power cut during write-back: durable names; durable contents plus the first two
    /// thirds of what was appended since (pages written back in the meantime, the last one cut
    /// mid-line).
    TornWriteBack,
    /// A power cut during write-back that wrote pages out of order: durable names; durable
    /// contents plus everything appended since, except the 4 KiB page the first unsynced byte
    /// lies in, which reads as zeros from there to its end (a hole, with later writes whole
    /// after it, or zeros where the only unsynced write was).
    OutOfOrderWriteBack,
    /// A power cut on a file system that commits names before data: every name as the page
    /// cache had it, contents only as durable.
    NamesFirst,
    /// The process died, the kernel did not: everything in the page cache survives.
    Process,
}

impl Crash {
    /// Every kind of crash.
    pub const ALL: [Crash; 5] = [
        Self::PowerCut,
        Self::TornWriteBack,
        Self::OutOfOrderWriteBack,
        Self::NamesFirst,
        Self::Process,
    ];
}

/// A simulated file system in memory. Cloning it gives another handle on the same medium (two
/// stores on one `SimFs` see each other's files, as two processes on one disk would).
#[derive(Debug, Clone)]
pub struct SimFs {
    shared: Arc<Shared>,
    /// What `unsafe_fs` answers: the medium posing as a network or FUSE file system.
    posing_as: Option<&'static str>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a lock is released.
    unlocked: Condvar,
}

#[derive(Debug, Clone)]
struct State {
    nodes: Vec<Node>,
    next_open: u64,
}

const ROOT: usize = 0;

#[derive(Debug, Clone)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

#[derive(Debug, Clone, Default)]
struct FileNode {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Live names of this file.
    links: u64,
    exclusive: Option<u64>,
    shared: BTreeSet<u64>,
    modified: Option<SystemTime>,
}

#[derive(Debug, Clone, Default)]
struct DirNode {
    live: BTreeMap<String, usize>,
    durable: BTreeMap<String, usize>,
    modified: Option<SystemTime>,
}

/// A directory of a [`SimFs`].
#[derive(Debug)]
pub struct SimDir {
    node: usize,
}

/// An open file of a [`SimFs`]; its lock goes when it is dropped.
#[derive(Debug)]
pub struct SimFile {
    node: usize,
    /// Which open file this is, for `flock`.
    open: u64,
    writable: bool,
    shared: Arc<Shared>,
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(Node::File(f)) = state.nodes.get_mut(self.node) {
            release(f, self.open);
        }
        drop(state);
        self.shared.unlocked.notify_all();
    }
}

fn release(f: &mut FileNode, open: u64) {
    if f.exclusive == Some(open) {
        f.exclusive = None;
    }
    f.shared.remove(&open);
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EBADF: i32 = 9;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const ENOTEMPTY: i32 = 39;
const EPERM: i32 = 1;

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a test that did left consistent state behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn dir(&self, node: usize) -> io::Result<&DirNode> {
        match self.nodes.get(node) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(errno(ENOTDIR)),
        }
    }

    fn dir_mut(&mut self, node: usize) -> io::Result<&mut DirNode> {
        match self.nodes.get_mut(node) {
            Some(Node::Dir(d)) => Ok(d),
            _ => Err(errno(ENOTDIR)),
        }
    }

    fn file(&self, node: usize) -> io::Result<&FileNode> {
        match self.nodes.get(node) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(errno(EBADF)),
        }
    }

    fn file_mut(&mut self, node: usize) -> io::Result<&mut FileNode> {
        match self.nodes.get_mut(node) {
            Some(Node::File(f)) => Ok(f),
            _ => Err(errno(EBADF)),
        }
    }

    fn kind(&self, node: usize) -> EntryKind {
        match self.nodes.get(node) {
            Some(Node::File(_)) => EntryKind::File,
            Some(Node::Dir(_)) => EntryKind::Directory,
            None => EntryKind::Unknown,
        }
    }

    fn entry(&self, dir: usize, name: &str) -> io::Result<Option<usize>> {
        Ok(self.dir(dir)?.live.get(one_component(name)?).copied())
    }

    fn add(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn touch(&mut self, node: usize) {
        let now = Some(SystemTime::now());
        match self.nodes.get_mut(node) {
            Some(Node::File(f)) => f.modified = now,
            Some(Node::Dir(d)) => d.modified = now,
            None => {}
        }
    }

    /// Resolves a path of live names from the root (tests' access to the medium).
    fn resolve(&self, path: &Path) -> io::Result<usize> {
        let mut node = ROOT;
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => {
                    let name = name.to_str().ok_or_else(|| errno(EINVAL))?;
                    node = self.entry(node, name)?.ok_or_else(|| errno(ENOENT))?;
                }
                _ => return Err(errno(EINVAL)),
            }
        }
        Ok(node)
    }

    /// The medium after a crash: a new state holding what `crash` lets survive.
    fn after(&self, crash: Crash) -> State {
        let mut out = State {
            nodes: vec![Node::Dir(DirNode::default())],
            next_open: 0,
        };
        let mut copied = HashMap::from([(ROOT, ROOT)]);
        let mut on_path = BTreeSet::new();
        self.copy_dir(ROOT, ROOT, crash, &mut out, &mut copied, &mut on_path);
        for node in &mut out.nodes {
            if let Node::Dir(d) = node {
                d.durable = d.live.clone();
            }
        }
        out
    }

    fn copy_dir(
        &self,
        from: usize,
        to: usize,
        crash: Crash,
        out: &mut State,
        copied: &mut HashMap<usize, usize>,
        on_path: &mut BTreeSet<usize>,
    ) {
        let Ok(dir) = self.dir(from) else { return };
        on_path.insert(from);
        let names = match crash {
            Crash::PowerCut | Crash::TornWriteBack | Crash::OutOfOrderWriteBack => &dir.durable,
            Crash::NamesFirst | Crash::Process => &dir.live,
        };
        for (name, &node) in names {
            if on_path.contains(&node) {
                continue;
            }
            let target = match copied.get(&node) {
                Some(&t) => t,
                None => {
                    let t = match self.nodes.get(node) {
                        Some(Node::File(f)) => out.add(Node::File(FileNode {
                            live: survivor(f, crash),
                            durable: survivor(f, crash),
                            modified: f.modified,
                            ..FileNode::default()
                        })),
                        Some(Node::Dir(d)) => out.add(Node::Dir(DirNode {
                            modified: d.modified,
                            ..DirNode::default()
                        })),
                        None => continue,
                    };
                    copied.insert(node, t);
                    if matches!(self.nodes.get(node), Some(Node::Dir(_))) {
                        self.copy_dir(node, t, crash, out, copied, on_path);
                    }
                    t
                }
            };
            if let Some(Node::File(f)) = out.nodes.get_mut(target) {
                f.links += 1;
            }
            if let Ok(d) = out.dir_mut(to) {
                d.live.insert(name.clone(), target);
            }
        }
        on_path.remove(&from);
    }
}

/// What of a file's contents a crash leaves.
fn survivor(f: &FileNode, crash: Crash) -> Vec<u8> {
    match crash {
        Crash::PowerCut | Crash::NamesFirst => f.durable.clone(),
        Crash::Process => f.live.clone(),
        Crash::TornWriteBack => {
            let mut bytes = f.durable.clone();
            if let Some(extra) = f.live.strip_prefix(f.durable.as_slice()) {
                bytes.extend_from_slice(extra.get(..extra.len() * 2 / 3).unwrap_or_default());
            }
            bytes
        }
        Crash::OutOfOrderWriteBack => {
            const PAGE: usize = 4096;
            let start = f.durable.len();
            if !f.live.starts_with(f.durable.as_slice()) || f.live.len() == start {
                return f.durable.clone();
            }
            let mut bytes = f.live.clone();
            let end = (start / PAGE + 1) * PAGE;
            if let Some(hole) = bytes.get_mut(start..end.min(f.live.len())) {
                hole.fill(0);
            }
            bytes
        }
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty medium: a root directory and nothing else.
    #[must_use]
    pub fn new() -> Self {
        Self::from_state(State {
            nodes: vec![Node::Dir(DirNode::default())],
            next_open: 0,
        })
    }

    fn from_state(state: State) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                unlocked: Condvar::new(),
            }),
            posing_as: None,
        }
    }

    /// This medium, telling the store it is a file system of the kind `name` (`"nfs"`,
    /// `"fuse"`...) where appends of several writers are not safe, as the root's `statfs` would.
    #[must_use]
    pub fn posing_as(mut self, name: &'static str) -> SimFs {
        self.posing_as = Some(name);
        self
    }

    /// The medium as it comes back after `crash` happened now: a new `SimFs` (this one goes on
    /// unchanged), on which everything is durable.
    #[must_use]
    pub fn after(&self, crash: Crash) -> SimFs {
        Self::from_state(self.shared.lock().after(crash))
    }

    /// The live contents of the file at `path` (names from the medium's root).
    ///
    /// # Errors
    /// `ENOENT` if there is no such file.
    pub fn read(&self, path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
        let state = self.shared.lock();
        let node = state.resolve(path.as_ref())?;
        Ok(state.file(node)?.live.clone())
    }

    /// The live names in the directory at `path`.
    ///
    /// # Errors
    /// `ENOENT` or `ENOTDIR` if there is no such directory.
    pub fn names(&self, path: impl AsRef<Path>) -> io::Result<Vec<String>> {
        let state = self.shared.lock();
        let node = state.resolve(path.as_ref())?;
        Ok(state.dir(node)?.live.keys().cloned().collect())
    }

    /// Writes `bytes` at `offset` of the file at `path`, live and durable at once, as a bad
    /// sector or a program that ignores annals' locks would (the file grows if needed).
    ///
    /// # Errors
    /// `ENOENT` if there is no such file.
    pub fn overwrite(&self, path: impl AsRef<Path>, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.shared.lock();
        let node = state.resolve(path.as_ref())?;
        let file = state.file_mut(node)?;
        let at = usize::try_from(offset).map_err(|_| errno(EINVAL))?;
        for contents in [&mut file.live, &mut file.durable] {
            if contents.len() < at + bytes.len() {
                contents.resize(at + bytes.len(), 0);
            }
            if let Some(slot) = contents.get_mut(at..at + bytes.len()) {
                slot.copy_from_slice(bytes);
            }
        }
        Ok(())
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Sealed for SimFs {}

impl FileSystem for SimFs {
    type Dir = SimDir;
    type File = SimFile;

    fn open_root(&self, path: &Path, create: bool) -> io::Result<SimDir> {
        let mut state = self.lock_state();
        let mut node = ROOT;
        for component in path.components() {
            let name = match component {
                Component::RootDir | Component::CurDir => continue,
                Component::Normal(name) => name.to_str().ok_or_else(|| errno(EINVAL))?,
                _ => return Err(errno(EINVAL)),
            };
            node = match state.entry(node, name)? {
                Some(next) => next,
                None if create => {
                    // The root is the caller's: made durable at once, as a test's setup would be.
                    let next = state.add(Node::Dir(DirNode::default()));
                    let dir = state.dir_mut(node)?;
                    dir.live.insert(name.to_string(), next);
                    dir.durable.insert(name.to_string(), next);
                    next
                }
                None => return Err(errno(ENOENT)),
            };
        }
        state.dir(node)?;
        Ok(SimDir { node })
    }

    fn unsafe_fs(&self, _root: &SimDir) -> Option<&'static str> {
        self.posing_as
    }

    fn open_dir(&self, dir: &SimDir, name: &str) -> io::Result<Lookup<SimDir>> {
        let state = self.lock_state();
        Ok(match state.entry(dir.node, name)? {
            None => Lookup::Missing,
            Some(node) => match state.kind(node) {
                EntryKind::Directory => Lookup::Found(SimDir { node }),
                kind => Lookup::NotOurs(kind),
            },
        })
    }

    fn create_dir(&self, dir: &SimDir, name: &str) -> io::Result<bool> {
        let mut state = self.lock_state();
        if state.entry(dir.node, name)?.is_some() {
            return Ok(false);
        }
        let node = state.add(Node::Dir(DirNode::default()));
        state.dir_mut(dir.node)?.live.insert(name.to_string(), node);
        state.touch(dir.node);
        Ok(true)
    }

    fn open_file(&self, dir: &SimDir, name: &str, access: Access) -> io::Result<Lookup<SimFile>> {
        let mut state = self.lock_state();
        let Some(node) = state.entry(dir.node, name)? else {
            return Ok(Lookup::Missing);
        };
        match state.kind(node) {
            EntryKind::File => {}
            kind => return Ok(Lookup::NotOurs(kind)),
        }
        state.next_open += 1;
        Ok(Lookup::Found(SimFile {
            node,
            open: state.next_open,
            writable: access == Access::Append,
            shared: Arc::clone(&self.shared),
        }))
    }

    fn create_new(&self, dir: &SimDir, name: &str) -> io::Result<SimFile> {
        let mut state = self.lock_state();
        if state.entry(dir.node, name)?.is_some() {
            return Err(errno(EEXIST));
        }
        let node = state.add(Node::File(FileNode {
            links: 1,
            modified: Some(SystemTime::now()),
            ..FileNode::default()
        }));
        state.dir_mut(dir.node)?.live.insert(name.to_string(), node);
        state.touch(dir.node);
        state.next_open += 1;
        Ok(SimFile {
            node,
            open: state.next_open,
            writable: true,
            shared: Arc::clone(&self.shared),
        })
    }

    fn read_at(&self, file: &SimFile, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let state = self.lock_state();
        let live = &state.file(file.node)?.live;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(live.len());
        let n = buf.len().min(live.len() - start);
        if let (Some(to), Some(from)) = (buf.get_mut(..n), live.get(start..start + n)) {
            to.copy_from_slice(from);
        }
        Ok(n)
    }

    fn append(&self, file: &SimFile, bytes: &[u8]) -> io::Result<usize> {
        if !file.writable {
            return Err(errno(EBADF));
        }
        let mut state = self.lock_state();
        state.file_mut(file.node)?.live.extend_from_slice(bytes);
        state.touch(file.node);
        Ok(bytes.len())
    }

    fn set_len(&self, file: &SimFile, len: u64) -> io::Result<()> {
        if !file.writable {
            return Err(errno(EINVAL));
        }
        let mut state = self.lock_state();
        let len = usize::try_from(len).map_err(|_| errno(EINVAL))?;
        state.file_mut(file.node)?.live.resize(len, 0);
        state.touch(file.node);
        Ok(())
    }

    fn sync_data(&self, file: &SimFile) -> io::Result<()> {
        let mut state = self.lock_state();
        let f = state.file_mut(file.node)?;
        f.durable = f.live.clone();
        Ok(())
    }

    fn size_and_links(&self, file: &SimFile) -> io::Result<(u64, u64)> {
        let state = self.lock_state();
        let f = state.file(file.node)?;
        Ok((f.live.len() as u64, f.links))
    }

    fn lock(&self, file: &SimFile, kind: LockKind) -> io::Result<()> {
        let mut state = self.lock_state();
        loop {
            if try_take(state.file_mut(file.node)?, file.open, kind) {
                return Ok(());
            }
            state = self
                .shared
                .unlocked
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    fn try_lock(&self, file: &SimFile, kind: LockKind) -> io::Result<bool> {
        let mut state = self.lock_state();
        Ok(try_take(state.file_mut(file.node)?, file.open, kind))
    }

    fn unlock(&self, file: &SimFile) -> io::Result<()> {
        let mut state = self.lock_state();
        release(state.file_mut(file.node)?, file.open);
        drop(state);
        self.shared.unlocked.notify_all();
        Ok(())
    }

    fn sync_dir(&self, dir: &SimDir) -> io::Result<()> {
        let mut state = self.lock_state();
        let d = state.dir_mut(dir.node)?;
        d.durable = d.live.clone();
        Ok(())
    }

    fn link(&self, from_dir: &SimDir, from: &str, to_dir: &SimDir, to: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        let node = state
            .entry(from_dir.node, from)?
            .ok_or_else(|| errno(ENOENT))?;
        if state.kind(node) != EntryKind::File {
            return Err(errno(EPERM));
        }
        if state.entry(to_dir.node, to)?.is_some() {
            return Err(errno(EEXIST));
        }
        state
            .dir_mut(to_dir.node)?
            .live
            .insert(to.to_string(), node);
        state.file_mut(node)?.links += 1;
        state.touch(to_dir.node);
        Ok(())
    }

    fn rename(&self, from_dir: &SimDir, from: &str, to_dir: &SimDir, to: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        let node = state
            .entry(from_dir.node, from)?
            .ok_or_else(|| errno(ENOENT))?;
        if let Some(old) = state.entry(to_dir.node, to)? {
            if old == node {
                return Ok(());
            }
            match (state.kind(node), state.kind(old)) {
                (EntryKind::File, EntryKind::Directory) => return Err(errno(EISDIR)),
                (EntryKind::Directory, EntryKind::File) => return Err(errno(ENOTDIR)),
                (EntryKind::Directory, _) if !state.dir(old)?.live.is_empty() => {
                    return Err(errno(ENOTEMPTY))
                }
                _ => {}
            }
            if let Ok(f) = state.file_mut(old) {
                f.links -= 1;
            }
        }
        state.dir_mut(from_dir.node)?.live.remove(from);
        state
            .dir_mut(to_dir.node)?
            .live
            .insert(to.to_string(), node);
        state.touch(from_dir.node);
        state.touch(to_dir.node);
        Ok(())
    }

    fn remove_file(&self, dir: &SimDir, name: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        let node = state.entry(dir.node, name)?.ok_or_else(|| errno(ENOENT))?;
        if state.kind(node) == EntryKind::Directory {
            return Err(errno(EISDIR));
        }
        state.dir_mut(dir.node)?.live.remove(name);
        state.file_mut(node)?.links -= 1;
        state.touch(dir.node);
        Ok(())
    }

    fn remove_dir(&self, dir: &SimDir, name: &str) -> io::Result<()> {
        let mut state = self.lock_state();
        let node = state.entry(dir.node, name)?.ok_or_else(|| errno(ENOENT))?;
        if !state.dir(node)?.live.is_empty() {
            return Err(errno(ENOTEMPTY));
        }
        state.dir_mut(dir.node)?.live.remove(name);
        state.touch(dir.node);
        Ok(())
    }

    fn list(&self, dir: &SimDir) -> io::Result<Vec<DirEntry>> {
        let state = self.lock_state();
        Ok(state
            .dir(dir.node)?
            .live
            .iter()
            .map(|(name, &node)| DirEntry {
                name: name.clone(),
                kind: state.kind(node),
            })
            .collect())
    }

    fn stat(&self, dir: &SimDir, name: &str) -> io::Result<Option<Stat>> {
        let state = self.lock_state();
        let Some(node) = state.entry(dir.node, name)? else {
            return Ok(None);
        };
        let (len, modified) = match state.nodes.get(node) {
            Some(Node::File(f)) => (f.live.len() as u64, f.modified),
            Some(Node::Dir(d)) => (0, d.modified),
            None => return Err(errno(EIO)),
        };
        Ok(Some(Stat {
            kind: state.kind(node),
            len,
            modified: modified.unwrap_or(SystemTime::UNIX_EPOCH),
        }))
    }
}

/// Takes `kind` of lock for open file `open` if nobody else holds a conflicting one (a holder
/// converts its own lock, as `flock` does).
fn try_take(f: &mut FileNode, open: u64, kind: LockKind) -> bool {
    let others_exclusive = f.exclusive.is_some_and(|holder| holder != open);
    match kind {
        LockKind::Shared if !others_exclusive => {
            f.exclusive = None;
            f.shared.insert(open);
            true
        }
        LockKind::Exclusive if !others_exclusive && f.shared.iter().all(|&s| s == open) => {
            f.shared.remove(&open);
            f.exclusive = Some(open);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(fs: &SimFs, dir: &SimDir, name: &str) -> SimFile {
        match fs.open_file(dir, name, Access::Append).unwrap() {
            Lookup::Found(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_power_cut_keeps_only_what_was_synced_names_and_contents_apart() {
        let fs = SimFs::new();
        let root = fs.open_root(Path::new("/store"), true).unwrap();
        assert!(fs.create_dir(&root, "s").unwrap());
        let Lookup::Found(s) = fs.open_dir(&root, "s").unwrap() else {
            panic!()
        };
        let f = fs.create_new(&s, "f").unwrap();
        fs.append(&f, b"one\n").unwrap();
        fs.sync_data(&f).unwrap();
        fs.append(&f, b"two\nthree\n").unwrap();

        // Neither the directory nor its file's name was synced.
        assert_eq!(
            fs.after(Crash::PowerCut).names("/store").unwrap(),
            Vec::<String>::new()
        );
        let process = fs.after(Crash::Process);
        assert_eq!(process.read("/store/s/f").unwrap(), b"one\ntwo\nthree\n");
        let names_first = fs.after(Crash::NamesFirst);
        assert_eq!(names_first.read("/store/s/f").unwrap(), b"one\n");

        fs.sync_dir(&root).unwrap();
        fs.sync_dir(&s).unwrap();
        assert_eq!(
            fs.after(Crash::PowerCut).read("/store/s/f").unwrap(),
            b"one\n"
        );
        // Two thirds of the ten unsynced bytes.
        assert_eq!(
            fs.after(Crash::TornWriteBack).read("/store/s/f").unwrap(),
            b"one\ntwo\nth"
        );
        // The page of the first unsynced byte never written: zeros to its end (here, the end
        // of the file); pages after it written back.
        assert_eq!(
            fs.after(Crash::OutOfOrderWriteBack)
                .read("/store/s/f")
                .unwrap(),
            b"one\n\0\0\0\0\0\0\0\0\0\0"
        );
        let later = vec![b'x'; 5000];
        fs.append(&f, &later).unwrap();
        let holed = fs
            .after(Crash::OutOfOrderWriteBack)
            .read("/store/s/f")
            .unwrap();
        assert_eq!(holed.len(), 4 + 10 + 5000);
        assert!(holed[4..4096].iter().all(|&b| b == 0));
        assert!(holed[4096..].iter().all(|&b| b == b'x'));

        // A rename over a synced name is undone by a power cut until the directory is synced.
        let g = fs.create_new(&s, "g").unwrap();
        fs.append(&g, b"new\n").unwrap();
        fs.sync_data(&g).unwrap();
        fs.rename(&s, "g", &s, "f").unwrap();
        assert_eq!(
            fs.size_and_links(&f).unwrap().1,
            0,
            "the old file lost its name"
        );
        assert_eq!(
            fs.after(Crash::PowerCut).read("/store/s/f").unwrap(),
            b"one\n"
        );
        fs.sync_dir(&s).unwrap();
        let after = fs.after(Crash::PowerCut);
        assert_eq!(after.read("/store/s/f").unwrap(), b"new\n");
        assert_eq!(after.names("/store/s").unwrap(), ["f"]);
    }

    #[test]
    fn names_links_and_removal_behave_as_on_disk() {
        let fs = SimFs::new();
        let root = fs.open_root(Path::new("/"), false).unwrap();
        let a = fs.create_new(&root, "a").unwrap();
        assert_eq!(
            fs.create_new(&root, "a").unwrap_err().raw_os_error(),
            Some(EEXIST)
        );
        fs.link(&root, "a", &root, "b").unwrap();
        assert_eq!(fs.size_and_links(&a).unwrap().1, 2);
        assert_eq!(
            fs.link(&root, "a", &root, "b").unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(fs.create_dir(&root, "d").unwrap());
        assert!(matches!(
            fs.open_file(&root, "d", Access::Read).unwrap(),
            Lookup::NotOurs(EntryKind::Directory)
        ));
        assert!(matches!(
            fs.open_dir(&root, "a").unwrap(),
            Lookup::NotOurs(EntryKind::File)
        ));
        assert!(fs.remove_file(&root, "d").is_err());
        fs.remove_file(&root, "b").unwrap();
        fs.remove_dir(&root, "d").unwrap();
        assert!(fs.open_dir(&root, "..").is_err());
        let read_only = match fs.open_file(&root, "a", Access::Read).unwrap() {
            Lookup::Found(f) => f,
            other => panic!("{other:?}"),
        };
        assert!(fs.append(&read_only, b"x").is_err());
        assert_eq!(
            fs.list(&root).unwrap(),
            [DirEntry {
                name: "a".into(),
                kind: EntryKind::File
            }]
        );
    }

    #[test]
    fn locks_are_per_open_file_and_released_on_close() {
        let fs = SimFs::new();
        let root = fs.open_root(Path::new("/"), false).unwrap();
        drop(fs.create_new(&root, "f").unwrap());
        let (a, b) = (file(&fs, &root, "f"), file(&fs, &root, "f"));
        fs.lock(&a, LockKind::Exclusive).unwrap();
        assert!(!fs.try_lock(&b, LockKind::Shared).unwrap());
        drop(a);
        assert!(fs.try_lock(&b, LockKind::Shared).unwrap());
        let c = file(&fs, &root, "f");
        assert!(fs.try_lock(&c, LockKind::Shared).unwrap());
        assert!(!fs.try_lock(&c, LockKind::Exclusive).unwrap());

        // A blocked locker wakes when the holder unlocks.
        let waiter = {
            let fs = fs.clone();
            let d = file(&fs, &root, "f");
            std::thread::spawn(move || {
                fs.lock(&d, LockKind::Exclusive).unwrap();
                fs.unlock(&d).unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs.unlock(&b).unwrap();
        fs.unlock(&c).unwrap();
        waiter.join().unwrap();
    }
}
