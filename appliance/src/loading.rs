//! Loading the signatures that flags or the configuration name: the
//! bundled default when none is named.

use std::path::PathBuf;

use giva_engine::Engine;
use giva_signatures::Database;

use crate::config::Config;

/// Loads the databases given with `-d` (text files, directories, containers
/// or one compiled database), or the bundled default when none is given.
///
/// # Errors
///
/// A database cannot be read or compiled; the message names file and line.
pub fn load_databases(paths: &[PathBuf]) -> anyhow::Result<Database> {
    if paths.is_empty() {
        return Ok(giva_signatures::bundled());
    }
    giva_signatures::load(paths).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Loads the database named by the configuration: the bundled default when
/// no path is given.
///
/// # Errors
///
/// The signatures cannot be read or compiled; the message names the file
/// and line.
pub fn load_database(config: &Config) -> anyhow::Result<Database> {
    load_databases(&config.database.paths)
}

/// Loads the signatures `paths` name (the bundled default when none) and
/// builds their scan engine. A compiled database's stored engine is
/// decoded while the file's checksum is verified, which is what makes a
/// large database start fast ([`Engine::load`]).
///
/// # Errors
///
/// The signatures cannot be read or compiled, or the engine cannot be
/// built; the message says which and why.
pub fn load_signatures(paths: &[PathBuf]) -> anyhow::Result<(Database, Engine)> {
    if paths.is_empty() {
        let db = giva_signatures::bundled();
        let engine =
            Engine::new(&db).map_err(|e| anyhow::anyhow!("cannot build the engine: {e}"))?;
        return Ok((db, engine));
    }
    Engine::load(paths).map_err(|e| anyhow::anyhow!("{e}"))
}
