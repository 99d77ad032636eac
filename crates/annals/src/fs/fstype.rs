//! Which file systems keep the promises the store relies on: `O_APPEND` writes that land whole
//! at the end of the file, `flock` that excludes other processes, and atomic `rename`/`link`.
//! Local file systems do; network and FUSE file systems may not (NFS emulates `O_APPEND` on the
//! client, so two machines can overwrite each other's lines). See docs/DURABILITY.md.

/// File systems whose `O_APPEND` or `flock` semantics are not guaranteed across writers.
/// Magic numbers from `statfs(2)`.
const UNSAFE: &[(u32, &str)] = &[
    (0x6969, "nfs"),
    (0x517b, "smb"),
    (0xff53_4d42, "cifs"),
    (0xfe53_4d42, "smb2"),
    (0x6573_5546, "fuse"),
    (0x00c3_6400, "ceph"),
    (0x5346_414f, "afs"),
    (0x7375_7245, "coda"),
    (0x0102_1997, "9p"),
    (0x564c, "ncp"),
    (0x0bd0_0bd0, "lustre"),
    (0x0116_1970, "gfs2"),
    (0x7461_636f, "ocfs2"),
];

/// The name of the file system of the open directory `root` if it is listed in [`UNSAFE`].
/// Unknown types pass, and so does a failing `fstatfs`: the check exists to catch the common
/// mistake (a store on an NFS home directory), not to certify a device.
pub(crate) fn of_root(root: impl std::os::fd::AsFd) -> Option<&'static str> {
    let stat = rustix::fs::fstatfs(root).ok()?;
    #[expect(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        reason = "f_type is a 32-bit magic number stored in a wider signed field"
    )]
    let magic = stat.f_type as u32;
    unsafe_fs(magic)
}

/// The name of the file system with this `statfs` magic number, if it is one where the
/// promises do not hold.
fn unsafe_fs(magic: u32) -> Option<&'static str> {
    UNSAFE
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::unsafe_fs;

    #[test]
    fn network_and_fuse_file_systems_are_refused_and_local_ones_are_not() {
        // Magic numbers as statfs(2) reports them (linux/magic.h).
        assert_eq!(unsafe_fs(0x6969), Some("nfs"));
        assert_eq!(unsafe_fs(0xff53_4d42), Some("cifs"));
        assert_eq!(unsafe_fs(0xfe53_4d42), Some("smb2"));
        assert_eq!(unsafe_fs(0x6573_5546), Some("fuse"));
        assert_eq!(unsafe_fs(0x0102_1997), Some("9p"));
        for local in [0xef53, 0x5846_5342, 0x9123_683e, 0x0102_1994, 0x794c_7630] {
            assert_eq!(unsafe_fs(local), None, "{local:#x} is local");
        }
    }

    #[test]
    fn the_test_machine_root_is_a_local_file_system() {
        let dir = tempfile::tempdir().unwrap();
        // /tmp on a developer or CI machine is local (ext4, xfs, btrfs, tmpfs, overlayfs).
        let root = std::fs::File::open(dir.path()).unwrap();
        assert_eq!(super::of_root(&root), None);
    }
}
