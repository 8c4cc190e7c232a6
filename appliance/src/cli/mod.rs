//! The local commands: `giva scan` (a clamscan drop-in on raw files) and
//! `giva db` (compile, inspect and verify databases).

pub mod db;
pub mod scan;

use std::path::PathBuf;

/// Loads the databases given with `-d` (text files, directories, containers
/// or one compiled database), or the bundled default when none is given.
///
/// # Errors
///
/// A database cannot be read or compiled; the message names file and line.
pub fn load_databases(paths: &[PathBuf]) -> anyhow::Result<giva_signatures::Database> {
    if paths.is_empty() {
        return Ok(giva_signatures::bundled());
    }
    giva_signatures::load(paths).map_err(|e| anyhow::anyhow!("{e}"))
}
