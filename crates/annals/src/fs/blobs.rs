//! The per-session blob directory: `{session}/blobs/ab/abcdef…` where the name is the SHA-256
//! of the bytes. Blobs are written crash-atomically (temp file, fsync, rename, directory fsync)
//! and checked against their name on every read.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::fault::Faults;
use super::{create_dir, is_regular_file, sync_dir, TempFile};
use crate::blob::BlobId;
use crate::{Error, Result};

pub(crate) use crate::error::BlobFault;

pub(crate) struct BlobDir<'a> {
    session_dir: &'a Path,
    faults: &'a Faults,
}

impl<'a> BlobDir<'a> {
    pub(crate) fn new(session_dir: &'a Path, faults: &'a Faults) -> Self {
        Self {
            session_dir,
            faults,
        }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.session_dir.join("blobs")
    }

    pub(crate) fn path(&self, id: &BlobId) -> PathBuf {
        let hex = id.to_hex();
        self.root().join(hex.get(..2).unwrap_or("00")).join(hex)
    }

    /// Stores `bytes` durably unless an intact copy is there already. Returns its id.
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<BlobId> {
        let id = BlobId::of(bytes);
        let path = self.path(&id);
        if is_regular_file(&path) && matches!(self.read(&id, Some(bytes.len() as u64)), Ok(Ok(_))) {
            return Ok(id);
        }
        // A damaged or missing copy is replaced: rename over it with the right bytes.
        let root = self.root();
        if create_dir(&root, self.faults)? {
            sync_dir(self.session_dir, self.faults)?;
        }
        let shard = path.parent().unwrap_or(&root).to_path_buf();
        if create_dir(&shard, self.faults)? {
            sync_dir(&root, self.faults)?;
        }
        let mut temp = TempFile::create(&shard, id, self.faults)?;
        temp.write(bytes)?;
        temp.sync()?;
        temp.replace(&path)?;
        sync_dir(&shard, self.faults)?;
        Ok(id)
    }

    /// Reads a blob and checks it against its name (and `len`, if given).
    pub(crate) fn read(
        &self,
        id: &BlobId,
        len: Option<u64>,
    ) -> Result<std::result::Result<Vec<u8>, BlobFault>> {
        let path = self.path(id);
        let mut file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(BlobFault::Missing)),
            Err(e) => return Err(Error::io("open blob", &path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        if let Some(expected) = len {
            if size != expected {
                return Ok(Err(BlobFault::Length {
                    expected,
                    found: size,
                }));
            }
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|e| Error::io("read blob", &path, e))?;
        let found = BlobId::of(&bytes);
        if found != *id {
            return Ok(Err(BlobFault::Hash { found }));
        }
        Ok(Ok(bytes))
    }

    /// Every blob file, with its size. Names that are not blob ids are not ours and skipped.
    pub(crate) fn list(&self) -> Result<Vec<(BlobId, u64)>> {
        let root = self.root();
        let shards = match fs::read_dir(&root) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &root, e)),
        };
        let mut out = Vec::new();
        for shard in shards.flatten() {
            if !shard.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = fs::read_dir(shard.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.parse::<BlobId>().ok()) else {
                    continue;
                };
                if let Ok(meta) = entry.metadata() {
                    if meta.is_file() {
                        out.push((id, meta.len()));
                    }
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    pub(crate) fn remove(&self, id: &BlobId) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove blob", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_once_by_content_and_checked_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let blobs = BlobDir::new(dir.path(), &faults);
        let data = vec![7u8; 100_000];
        let id = blobs.put(&data).unwrap();
        assert_eq!(blobs.put(&data).unwrap(), id, "same bytes, same blob");
        assert_eq!(blobs.list().unwrap(), vec![(id, 100_000)]);
        assert_eq!(blobs.read(&id, Some(100_000)).unwrap().unwrap(), data);
        let path = blobs.path(&id);
        assert!(path.ends_with(format!("{}/{id}", &id.to_hex()[..2])));

        // Damage it: the read refuses it, and the next put of the same bytes repairs it.
        let mut bad = data.clone();
        bad[500] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(
            blobs.read(&id, Some(100_000)).unwrap(),
            Err(BlobFault::Hash { .. })
        ));
        assert!(matches!(
            blobs.read(&id, Some(5)).unwrap(),
            Err(BlobFault::Length { expected: 5, .. })
        ));
        blobs.put(&data).unwrap();
        assert_eq!(blobs.read(&id, None).unwrap().unwrap(), data);

        blobs.remove(&id).unwrap();
        assert_eq!(blobs.read(&id, None).unwrap(), Err(BlobFault::Missing));
    }
}
