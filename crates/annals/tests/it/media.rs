//! Real media for the tests that need one: a small tmpfs (a full disk), remounted read-only (a
//! read-only mount), where the machine lets the tests mount (root, or a container that allows
//! it). Where it does not, the test says so in one line and does not run; the `FaultFs` plans
//! (`FullDisk`, a read-only plan) test the same paths everywhere.

use std::path::Path;
use std::process::{Command, Stdio};

/// A tmpfs mounted on a temporary directory, unmounted when dropped (also when the test
/// panics: drop runs while unwinding).
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `size` (`mount -o size=`, e.g. `"1m"`), or `None` where the tests may not
    /// mount (not root, or a container without `CAP_SYS_ADMIN`): then the test skips, saying
    /// why on stderr, and under `CI=true` in a banner that cannot be missed. A skip never
    /// fails the run, because CI's machine may be such a container: the same checks also run
    /// through the fault plan everywhere (docs/RELIABILITY.md).
    pub fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        let why = match output {
            Ok(out) if out.status.success() => return Some(Self { dir }),
            Ok(out) => format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            eprintln!(
                "\n!!!!!!!! {test}: SKIPPED under CI: this machine may not mount a tmpfs \
                 ({why}); the real-medium check did not run, only its fault-plan twin did \
                 !!!!!!!!\n"
            );
        } else {
            eprintln!("{test}: skipped: cannot mount a tmpfs here ({why})");
        }
        None
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remounts it read-only (`true`) or read-write.
    pub fn set_read_only(&self, read_only: bool) {
        let mode = if read_only { "ro" } else { "rw" };
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {mode} of {}", self.dir.path().display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Something still holds a file open on it (a panicking test's store): detach it
            // now, the kernel frees it when the last file closes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}
