//! Blobs: content-addressed byte strings kept per session, for entries too large for one line and
//! for attachments. A blob's id is the SHA-256 of its bytes, so `sha256sum` checks one by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::Error;

/// The SHA-256 of a blob's bytes; its name in the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The id of `bytes`.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The id whose digest is `digest` (a SHA-256 computed in pieces).
    #[must_use]
    pub(crate) fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The raw digest.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

impl FromStr for BlobId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| Error::InvalidId {
            what: "blob id",
            input: s.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        if s.len() != 64 {
            return Err(invalid("a blob id is 64 hex digits (SHA-256)"));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            let pair = s
                .get(2 * i..2 * i + 2)
                .ok_or_else(|| invalid("not ASCII"))?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid("not lower-case hex"))?;
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("not lower-case hex"));
        }
        Ok(Self(out))
    }
}

impl Serialize for BlobId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlobId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How an entry line points at an entry kept as a blob (docs/FORMAT.md): the `"blob"` object of
/// the line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// The blob: SHA-256 of the entry's JSON text.
    pub sha256: BlobId,
    /// Length of the entry's JSON text in bytes.
    pub len: u64,
    /// The first bytes of the entry's JSON text, for people reading the log with `grep`/`jq`.
    #[serde(default)]
    pub head: String,
}

impl BlobRef {
    /// Bytes of the entry kept in `head`.
    pub const HEAD_BYTES: usize = 200;

    /// The reference for an entry's JSON text.
    #[must_use]
    pub fn for_entry(json: &str) -> Self {
        Self {
            sha256: BlobId::of(json.as_bytes()),
            len: json.len() as u64,
            head: crate::codec::decode::prefix_of(json, Self::HEAD_BYTES).to_string(),
        }
    }
}

/// What an attachment is, given when it is put.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttachmentMeta {
    /// Media type, e.g. `image/png`.
    #[serde(rename = "type")]
    pub media_type: String,
    /// A label for people (a file name, a caption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Width in pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// An attachment as listed: its blob and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The blob holding its bytes.
    pub id: BlobId,
    /// Its size in bytes.
    pub len: u64,
    /// What it is.
    #[serde(flatten)]
    pub meta: AttachmentMeta,
    /// When it was put, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// What a blob garbage collection found or removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Blobs that no segment line and no attachment refers to (removed unless a dry run).
    pub orphans: Vec<BlobId>,
    /// Their total size.
    pub orphan_bytes: u64,
    /// Blobs still referred to.
    pub kept: u64,
}

/// The blobs a session keeps on disk (`FsStore::blob_usage`): entries too long for a line and
/// attachments, each counted once where it is stored (a record of the pack, or a file of its
/// own; one stored in both counts twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlobUsage {
    /// How many.
    pub count: u64,
    /// Their bytes (the blobs', without a record's header).
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_id_is_the_sha256_that_sha256sum_prints() {
        // printf 'abc' | sha256sum
        let id = BlobId::of(b"abc");
        assert_eq!(
            id.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_string().parse::<BlobId>().unwrap(), id);
        assert_eq!(
            serde_json::from_str::<BlobId>(&serde_json::to_string(&id).unwrap()).unwrap(),
            id
        );
    }

    #[test]
    fn a_blob_id_is_its_raw_digest_and_debug_prints_it_in_hex() {
        let id = BlobId::of(b"abc");
        let digest = id.as_bytes();
        assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(digest[28..], [0xf2, 0x00, 0x15, 0xad]);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, id.to_hex());
        assert_eq!(format!("{id:?}"), format!("BlobId({hex})"));
    }

    #[test]
    fn a_blob_reference_heads_with_at_most_200_bytes_cut_at_a_character_boundary() {
        // docs/FORMAT.md: `head` is the first at most 200 bytes of the entry's JSON text.
        assert_eq!(BlobRef::HEAD_BYTES, 200);
        let ascii = format!("\"{}\"", "a".repeat(298));
        let r = BlobRef::for_entry(&ascii);
        assert_eq!(r.head, ascii[..200]);
        assert_eq!((r.len, r.sha256), (300, BlobId::of(ascii.as_bytes())));

        // Byte 200 falls inside a two-byte character: the head stops before it.
        let straddling = format!("\"{}\"", "é".repeat(150));
        let r = BlobRef::for_entry(&straddling);
        assert_eq!(r.head.len(), 199);
        assert!(straddling.starts_with(&r.head));

        let short = "{\"k\":1}";
        assert_eq!(BlobRef::for_entry(short).head, short);
    }

    #[test]
    fn malformed_blob_ids_are_refused_with_the_reason() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"AB".repeat(32),
            &"é".repeat(32),
        ] {
            let err = bad.parse::<BlobId>().unwrap_err().to_string();
            assert!(err.contains("blob id"), "{err}");
        }
    }
}
