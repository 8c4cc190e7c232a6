//! Where a giva program keeps its state.

use std::path::PathBuf;

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
