//! The one-call ways to get a [`Database`]: [`load`] (what every
//! `-d/--db` option uses), [`compile`] and the [`bundled`] default.

use std::path::Path;

use crate::compiler::Compiler;
use crate::db::Database;
use crate::db::layout::{HEADER_FIXED_LEN, Sniff, sniff};
use crate::error::{EmptySource, Error, LoadError};

/// The sources of giva's bundled default database, as `(file name, text)`.
pub const BUNDLED_SOURCES: &[(&str, &str)] = &[
    (
        "giva-default.hdb",
        include_str!("../default/giva-default.hdb"),
    ),
    (
        "giva-default.ndb",
        include_str!("../default/giva-default.ndb"),
    ),
];

/// Compiles signature files, directories and containers into a database.
///
/// # Errors
///
/// See [`Compiler::add_path`] and [`Compiler::build`].
pub fn compile(paths: &[impl AsRef<Path>]) -> Result<Database, Error> {
    let mut c = Compiler::new();
    for p in paths {
        c.add_path(p)?;
    }
    Ok(c.build()?)
}

/// How [`load_with_options`] treats what it loads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Accept a database with no signature at all. Off by default: a
    /// database that loads nothing would answer "clean" to every file, so
    /// that is an error ([`Error::Empty`]) unless asked for.
    pub allow_empty: bool,
}

/// What every `-d/--db` option uses: a compiled giva database file is
/// opened (recognised by its magic, whatever its name); anything else is
/// compiled (text files, directories, containers). Loading nothing at all
/// is an error ([`Error::Empty`]), naming each source and why.
///
/// # Errors
///
/// [`Error::NoPaths`] for an empty list, [`Error::Empty`] when no
/// signature loads, else the errors of [`Database::open`] or [`compile`].
pub fn load(paths: &[impl AsRef<Path>]) -> Result<Database, Error> {
    Ok(load_with(paths, |_| ())?.0)
}

/// [`load`], running `during` on a compiled database file while its
/// checksum is verified (see [`Database::open_overlapped`]); `None` when
/// the signatures were compiled from text instead.
///
/// # Errors
///
/// As for [`load`].
pub fn load_with<T>(
    paths: &[impl AsRef<Path>],
    during: impl FnOnce(&Database) -> T,
) -> Result<(Database, Option<T>), Error> {
    load_with_options(paths, LoadOptions::default(), during)
}

/// [`load_with`] with [`LoadOptions`].
///
/// # Errors
///
/// As for [`load`]; [`Error::Empty`] only without `allow_empty`.
pub fn load_with_options<T>(
    paths: &[impl AsRef<Path>],
    options: LoadOptions,
    during: impl FnOnce(&Database) -> T,
) -> Result<(Database, Option<T>), Error> {
    let (db, t) = match paths {
        [] => return Err(Error::NoPaths),
        [one] => match sniff(one.as_ref()) {
            Sniff::Compiled => {
                let (db, t) = Database::open_overlapped(one.as_ref(), during)?;
                (db, Some(t))
            }
            Sniff::Truncated { len } => {
                return Err(LoadError::TruncatedHeader {
                    len: len as usize,
                    need: HEADER_FIXED_LEN,
                }
                .into());
            }
            Sniff::Other => (compile(paths)?, None),
        },
        _ => (compile(paths)?, None),
    };
    if !options.allow_empty && is_empty(&db) {
        return Err(Error::Empty {
            sources: paths.iter().map(|p| why_empty(p.as_ref())).collect(),
        });
    }
    Ok((db, t))
}

/// True if the database holds no signature of any kind (an allow-list
/// alone detects nothing either).
pub fn is_empty(db: &Database) -> bool {
    db.info()
        .loaded
        .iter()
        .filter(|(kind, _)| kind.as_str() != "allow")
        .all(|(_, n)| *n == 0)
}

/// Why a source gave no signature, for [`Error::Empty`].
fn why_empty(path: &Path) -> EmptySource {
    let reason = match std::fs::metadata(path) {
        Err(e) => format!("cannot be read: {e}"),
        Ok(m) if m.is_dir() => "no supported signature file in it".to_string(),
        Ok(m) if m.len() == 0 => "empty file".to_string(),
        Ok(_) => match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if !crate::compiler::is_supported_extension(ext) => {
                format!("unsupported file type .{ext}")
            }
            None => "no extension, so no known format".to_string(),
            Some(_) => "no signature in it".to_string(),
        },
    };
    EmptySource {
        path: path.to_owned(),
        reason,
    }
}

/// giva's bundled default database (EICAR and ClamAV's public test file),
/// compiled from [`BUNDLED_SOURCES`] with official names.
///
/// # Panics
///
/// Never in practice: the sources are compiled into the crate and a test
/// checks that they build.
pub fn bundled() -> Database {
    let mut c = Compiler::new();
    for (name, text) in BUNDLED_SOURCES {
        c.add_source(name, text, true);
    }
    // The bundled sources are part of this crate and covered by tests; an
    // empty database here would be a silent pass, so fail loudly instead.
    c.build().expect("the bundled signature sources compile")
}
