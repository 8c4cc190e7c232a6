//! The one-call ways to get a [`Database`]: [`load`] (what every
//! `-d/--db` option uses), [`compile`] and the [`bundled`] default.

use std::path::Path;

use crate::compiler::Compiler;
use crate::db::Database;
use crate::error::Error;

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

/// What every `-d/--db` option uses: one compiled giva database file is
/// opened (detected by its magic); anything else is compiled (text files,
/// directories, containers).
///
/// # Errors
///
/// [`Error::NoPaths`] for an empty list, else the errors of
/// [`Database::open`] or [`compile`].
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
    match paths {
        [] => Err(Error::NoPaths),
        [one] if crate::db::layout::has_magic(one.as_ref()) => {
            let (db, t) = Database::open_overlapped(one.as_ref(), during)?;
            Ok((db, Some(t)))
        }
        _ => Ok((compile(paths)?, None)),
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
