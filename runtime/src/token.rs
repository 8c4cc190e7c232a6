//! Bearer tokens: made at first start, kept in a file only their owner can
//! read, and compared in constant time.
//!
//! The manager keeps its operator token this way, and the appliance the
//! token of its admin endpoint; the command-line tools on the same host
//! read the same files.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Reading, creating or writing it failed.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Others than its owner may read or write it.
    #[error(
        "token file {}: mode {mode:o} lets others than its owner read it; chmod 600 it",
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// It holds no token.
    #[error("token file {}: empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// The token in `path`, made there first if the file does not exist: 32
/// random bytes from the kernel, as 64 hex digits, in a file of mode 0600.
/// The file is written aside and linked into place, so that no reader sees
/// it half written and two starts cannot make two tokens. A file that
/// others may read is refused.
///
/// # Errors
///
/// [`TokenError`]: the file cannot be made or read, is exposed, or empty.
pub fn load_or_create(path: &Path) -> Result<Secret, TokenError> {
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return read(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let token = random_hex(32).map_err(io)?;
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{}.{}", std::process::id(), &token[..8]));
    let aside = PathBuf::from(aside);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)?;
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&aside, path)
    };
    let linked = write();
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "made a new token");
            Ok(Secret::new(token))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(path),
        Err(e) => Err(io(e)),
    }
}

/// The token in the existing file `path`, which only its owner may read.
///
/// # Errors
///
/// As for [`load_or_create`].
pub fn read(path: &Path) -> Result<Secret, TokenError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| TokenError::Io {
        path: path.to_owned(),
        source,
    };
    // Not through a link, and checked on the file opened (not a name that
    // could be swapped between the check and the read).
    if std::fs::symlink_metadata(path)
        .map_err(io)?
        .file_type()
        .is_symlink()
    {
        return Err(io(std::io::Error::other(
            "a symbolic link; a token file must be the file itself",
        )));
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let md = file.metadata().map_err(io)?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Exposed {
            path: path.to_owned(),
            mode,
        });
    }
    // The running user's id, as the kernel shows it on /proc/self.
    if let Ok(me) = std::fs::metadata("/proc/self").map(|m| m.uid())
        && md.uid() != me
    {
        return Err(io(std::io::Error::other(format!(
            "owned by user {}, not by this process's user {me}",
            md.uid()
        ))));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(token))
}

/// `n` random bytes from the kernel, as hex.
///
/// # Errors
///
/// The kernel's random source cannot be read.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    random_bytes(n).map(hex::encode)
}

/// `n` random bytes from the kernel.
///
/// # Errors
///
/// `/dev/urandom` cannot be read.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// True if `given` is `expected`, in time that does not depend on where
/// they differ.
pub fn matches(given: &str, expected: &Secret) -> bool {
    let expected = expected.expose().as_bytes();
    !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/operator.token");
        let first = load_or_create(&path).unwrap();
        assert_eq!(first.expose().len(), 64);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), first, "kept across starts");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(matches!(e, TokenError::Exposed { .. }), "{e}");
        // A link to a private file is refused: the file itself, or nothing.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = read(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn tokens_compare_whole_and_bearer_headers_parse() {
        let t = Secret::new("abc");
        assert!(matches("abc", &t));
        assert!(!matches("abd", &t) && !matches("ab", &t) && !matches("abcd", &t));
        assert!(
            !matches("", &Secret::default()),
            "an unset token matches nothing"
        );
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
