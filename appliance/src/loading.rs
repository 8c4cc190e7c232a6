//! Loading the signatures that flags or the configuration name: the
//! bundled default when none is named.

use std::path::PathBuf;

use giva_engine::{Engine, OpenError};
use giva_signatures::{Database, LoadOptions};

use crate::config::Config;

/// Loads the databases given with `-d` (text files, directories, containers
/// or one compiled database), or the bundled default when none is given.
/// Loading no signature at all is an error unless `options` allow it.
///
/// # Errors
///
/// A database cannot be read or compiled; the error names file and line.
pub fn load_databases(
    paths: &[PathBuf],
    options: LoadOptions,
) -> Result<Database, giva_signatures::Error> {
    if paths.is_empty() {
        return Ok(giva_signatures::bundled());
    }
    Ok(giva_signatures::load_with_options(paths, options, |_| ())?.0)
}

/// Loads the database named by the configuration: the bundled default when
/// no path is given.
///
/// # Errors
///
/// The signatures cannot be read or compiled; the error names the file
/// and line.
pub fn load_database(config: &Config) -> Result<Database, giva_signatures::Error> {
    load_databases(&config.database.paths, options(config))
}

/// The load options the configuration asks for.
pub fn options(config: &Config) -> LoadOptions {
    LoadOptions {
        allow_empty: config.database.allow_empty,
    }
}

/// Loads the signatures `paths` name (the bundled default when none) and
/// builds their scan engine. A compiled database's stored engine is
/// decoded while the file's checksum is verified, which is what makes a
/// large database start fast ([`Engine::load`]).
///
/// # Errors
///
/// The signatures cannot be read or compiled, or the engine cannot be
/// built; the error says which and why.
pub fn load_signatures(
    paths: &[PathBuf],
    options: LoadOptions,
) -> Result<(Database, Engine), OpenError> {
    if paths.is_empty() {
        let db = giva_signatures::bundled();
        let engine = Engine::new(&db)?;
        return Ok((db, engine));
    }
    Engine::load_with_options(paths, options)
}
