//! Where a giva program keeps its state.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The directory where a giva program named `name` keeps its state:
/// `/var/lib/NAME` when running as root, else `$XDG_STATE_HOME/NAME`, else
/// `~/.local/state/NAME`.
pub fn state_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let is_root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib").join(name);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join(name);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => PathBuf::from(h).join(".local/state").join(name),
        None => PathBuf::from(".").join(name),
    }
}

/// Writes `text` to `path` (making its directory), readable by its owner
/// only if `private` (mode 0600; else 0644). A private file is written
/// under a temporary name and renamed, so a reader never sees half a key,
/// and its mode is set before a byte of it is written.
///
/// # Errors
///
/// The directory or the file cannot be written.
pub fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
