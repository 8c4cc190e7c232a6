//! A streamed file's layers: while its bytes arrive, the first 32 KiB (or
//! all of a smaller file) decide by their magic whether it is a container;
//! a container's bytes are kept (in memory while small, in an unlinked
//! temporary file past that), and once its own scan is done, its members
//! are opened and scanned with the same engine (a text file's one layer
//! inside is its normalized text). An executable (PE, ELF or Mach-O) is
//! kept too: what it carries (an archive, an installer's files, a packed
//! program, a PE) is only found in the whole file, and its structure (for
//! executable offsets and section hashes) only read from it. When the
//! database has signatures that are evaluated over the whole file once it
//! is scanned (PCRE and byte-compare subsignatures), every file is kept,
//! up to ClamAV's `PCREMaxFileSize` (100 MiB). Otherwise a file that is
//! none of these costs one magic check and keeps nothing.

use giva_content::extract::{Extracted, Spool};
use giva_content::{Kind, Limits, detect, target_type};

/// Bytes that decide a file's type: far enough for the tar (257) and
/// ISO 9660 (32769) magics.
const DECIDE_AT: usize = 32 * 1024 + 7;

/// The most of a text file or an executable kept in memory (both are
/// common); past this it spills to the spool directory.
const TEXT_IN_MEMORY: u64 = 64 << 10;

/// The most of a file kept only for the checks that run over the whole
/// file: past ClamAV's `PCREMaxFileSize` its PCREs do not run anyway.
const WHOLE_CAP: u64 = giva_engine::PCRE_MAX_INPUT;

/// What of a streamed file is kept for its layers.
#[derive(Debug)]
pub(crate) enum Keeper {
    /// Not enough bytes yet to tell; `true` when every file is kept for
    /// the checks that run over the whole file.
    Deciding(Vec<u8>, bool),
    /// A container: every byte kept; for a text file, no more than this
    /// many (past them it is not normalized, so nothing is kept).
    Keeping(Spool, Option<u64>),
    /// Not a container.
    Not,
    /// A container whose bytes could not be kept (the temporary file
    /// failed): its inside is not scanned, and says so.
    Failed(String),
}

impl Keeper {
    /// Nothing seen yet; `whole` when the engine needs every file whole
    /// ([`giva_engine::Engine::needs_input`]).
    pub(crate) fn new(whole: bool) -> Self {
        Keeper::Deciding(Vec::new(), whole)
    }

    /// Takes the next bytes; `last` when they end the file. Returns the
    /// file's type (ClamAV's target number, [`target_type`]) once, when its
    /// first bytes have decided it.
    pub(crate) fn push(&mut self, data: &[u8], last: bool, limits: &Limits) -> Option<u8> {
        match self {
            Keeper::Deciding(head, whole) => {
                head.extend_from_slice(data);
                if head.len() >= DECIDE_AT || last {
                    let file_type = target_type(head);
                    let kind = detect(head);
                    let executable = matches!(file_type, 1 | 6 | 9);
                    // Text is kept up to the normalization limit; a file
                    // kept (also) for the checks, up to theirs.
                    let text_cap = (kind == Kind::Text).then_some(limits.max_script_normalize);
                    let for_checks =
                        *whole && !executable && (!kind.is_container() || text_cap.is_some());
                    let cap = if for_checks {
                        Some(text_cap.unwrap_or(0).max(WHOLE_CAP))
                    } else {
                        text_cap
                    };
                    *self = if !(kind.is_container() || executable || *whole)
                        || cap.is_some_and(|c| head.len() as u64 > c)
                    {
                        Keeper::Not
                    } else {
                        // Text and executables are common: past 64 KiB they
                        // go to disk, so that many open files do not hold
                        // memory.
                        let text_limits;
                        let limits = if cap.is_some() || executable {
                            text_limits = Limits {
                                spill_above: TEXT_IN_MEMORY,
                                ..limits.clone()
                            };
                            &text_limits
                        } else {
                            limits
                        };
                        let mut spool = Spool::new(limits);
                        match spool.push(head) {
                            Ok(()) => Keeper::Keeping(spool, cap),
                            Err(e) => Keeper::Failed(e.to_string()),
                        }
                    };
                    return Some(file_type);
                }
            }
            Keeper::Keeping(spool, cap) => {
                if cap.is_some_and(|c| spool.len() + data.len() as u64 > c) {
                    *self = Keeper::Not;
                } else if let Err(e) = spool.push(data) {
                    *self = Keeper::Failed(e.to_string());
                }
            }
            Keeper::Not | Keeper::Failed(_) => {}
        }
        None
    }

    /// A container's bytes, or why they are missing; `None` for a file
    /// that is not a container.
    pub(crate) fn take(self) -> Option<Result<Extracted, String>> {
        match self {
            Keeper::Keeping(spool, _) => Some(spool.finish().map_err(|e| e.to_string())),
            Keeper::Failed(e) => Some(Err(e)),
            Keeper::Deciding(..) | Keeper::Not => None,
        }
    }
}

/// The last part of a guest path: the name of a file's outermost layer.
pub(crate) fn base_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_container_is_kept() {
        let limits = Limits::default();
        let mut k = Keeper::new(false);
        assert_eq!(k.push(b"binary\0data that is not", false, &limits), None);
        assert_eq!(k.push(b" a container", true, &limits), Some(0));
        assert!(k.take().is_none());
        // Text is kept, for its normalized layer.
        let mut k = Keeper::new(false);
        k.push(b"plain words", true, &limits);
        assert!(k.take().is_some());
        // The type is told once, when the first bytes decide it; an
        // executable is kept, for what it carries.
        let mut k = Keeper::new(false);
        assert_eq!(k.push(b"MZ and a PE's bytes", true, &limits), Some(1));
        assert!(k.take().is_some());
        let mut k = Keeper::new(false);
        k.push(&[0x1f, 0x8b, 0x08, 0], false, &limits);
        k.push(b"rest", true, &limits);
        let kept = k.take().expect("a container").expect("kept");
        assert_eq!(&*kept, &[0x1f, 0x8b, 0x08, 0, b'r', b'e', b's', b't'][..]);
        // Decided once enough bytes arrived, before the end.
        let mut k = Keeper::new(false);
        k.push(&vec![0u8; DECIDE_AT], false, &limits);
        assert!(matches!(k, Keeper::Not));
        // A text file past the normalization limit is not kept either.
        let small = Limits {
            max_script_normalize: 100,
            ..Limits::default()
        };
        let mut k = Keeper::new(false);
        k.push(&vec![b'x'; DECIDE_AT], false, &small);
        assert!(matches!(k, Keeper::Not));
        let mut k = Keeper::new(false);
        k.push(&[b'x'; 50], true, &small);
        assert!(k.take().is_some());
        // Text past 64 KiB is kept on disk, not in memory.
        let mut k = Keeper::new(false);
        k.push(&vec![b'y'; 100 << 10], true, &limits);
        let kept = k.take().expect("text is kept").expect("kept");
        assert!(
            matches!(kept, giva_content::extract::Extracted::Mapped(_)),
            "{kept:?}"
        );
        assert_eq!(base_name("/a/b/c.zip"), "c.zip");
        assert_eq!(base_name("C:\\dir\\x.zip"), "x.zip");
    }
}

#[cfg(test)]
mod spool_tests {
    use crate::config::Config;

    #[test]
    fn large_members_spool_beside_the_outbox_not_in_tmp() {
        let mut c = Config::default();
        c.outbox.path = "/var/lib/giva/outbox.sqlite".into();
        assert_eq!(
            c.spool_dir(),
            Some(std::path::PathBuf::from("/var/lib/giva/spool"))
        );
        let limits = crate::scan::content_limits(&c.limits, c.spool_dir());
        assert_eq!(
            limits.temp_dir,
            Some(std::path::PathBuf::from("/var/lib/giva/spool"))
        );
        c.outbox.path = ":memory:".into();
        assert_eq!(c.spool_dir(), None);
    }
}
