//! `giva db`: compile, inspect and verify signature databases.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use giva_signatures::{Database, LoadOptions};

use crate::loading::load_databases;

/// `giva db compile -o OUT SRC...`: compiles sources into one database file.
///
/// # Errors
///
/// A source cannot be compiled (file, line and reason in the message) or
/// the output cannot be written.
pub fn compile(out: &Path, sources: &[PathBuf], options: LoadOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    // `load`, not `compile`: a compiled database given as the source is
    // read by its magic, so `giva db compile -o new.gdb old.gdb` stores
    // the engine again in this build's format.
    let db = giva_signatures::load_with_options(sources, options, |_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .0;
    // Store the built engine too: loading the file then skips the index
    // build (most of a large database's load time).
    let engine = giva_engine::Engine::build(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let blob = engine.to_blob().map_err(|e| anyhow::anyhow!("{e}"))?;
    let db = db
        .with_extension(giva_signatures::EXT_ENGINE, &blob)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let compiled = started.elapsed();
    db.write_to(out)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "compiled {} signatures into {} ({} bytes, of which {} the built engine; version {}) in {:.3} s",
        db.info().loaded.values().sum::<u64>(),
        out.display(),
        size,
        blob.len(),
        db.version(),
        compiled.as_secs_f64()
    );
    report_skipped(&db);
    Ok(())
}

fn report_skipped(db: &Database) {
    let skipped: u64 = db.info().skipped.values().sum();
    if skipped > 0 {
        eprintln!("skipped {skipped} unsupported signatures or files:");
        for (reason, n) in &db.info().skipped {
            eprintln!("  {reason}: {n}");
        }
    }
}

/// `giva db info FILE...`: prints what a database holds.
///
/// # Errors
///
/// The database cannot be loaded.
pub fn info(paths: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    // Inspecting an empty database is allowed: it says it holds nothing.
    let db = load_databases(paths, LoadOptions { allow_empty: true })?;
    let load_time = started.elapsed();
    let info = db.info();
    let stored = db.extension(giva_signatures::EXT_ENGINE).map(<[u8]>::len);
    // The file (mapped) and the signatures decoded so far, plus the engine:
    // about the size of its stored form when there is one, else measured
    // on the text-signature benchmarks at roughly the file's size again.
    let memory = db.memory_estimate() + stored.map_or_else(|| db.memory_estimate(), |n| n as u64);
    if json {
        let v = serde_json::json!({
            "version": info.version,
            "built_at": info.built_at,
            "loaded": info.loaded,
            "skipped": info.skipped,
            "load_seconds": load_time.as_secs_f64(),
            "engine_stored_bytes": stored,
            "memory_estimate_bytes": memory,
        });
        println!("{v}");
        return Ok(());
    }
    let what = if paths.is_empty() {
        "bundled default database".to_string()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("database: {what}");
    println!("version: {}", info.version);
    let built = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(info.built_at));
    println!("built: {built}");
    println!("loaded in: {:.3} s", load_time.as_secs_f64());
    match stored {
        Some(n) => println!("engine: stored ({n} bytes; loads without a rebuild)"),
        None => println!("engine: not stored (built at every load; `giva db compile` stores it)"),
    }
    println!(
        "memory estimate: {:.1} MiB",
        memory as f64 / (1 << 20) as f64
    );
    println!("signatures:");
    for (kind, n) in &info.loaded {
        println!("  {kind}: {n}");
    }
    if info.skipped.is_empty() {
        println!("skipped: none");
    } else {
        println!("skipped (unsupported, not loaded):");
        for (reason, n) in &info.skipped {
            println!("  {reason}: {n}");
        }
    }
    Ok(())
}

/// Why `giva db verify` refused a file.
#[derive(Debug, thiserror::Error)]
enum VerifyError {
    /// The sources do not load: damaged, truncated, refused, or holding no
    /// signature.
    #[error(transparent)]
    Load(#[from] giva_signatures::Error),
    /// The compiled database's signatures do not decode.
    #[error(transparent)]
    Database(#[from] giva_signatures::LoadError),
    /// Its stored engine cannot be used.
    #[error(transparent)]
    StoredEngine(#[from] giva_engine::StoredError),
}

/// Beyond the header, checksum and bounds that opening checks: every
/// signature decodes, and a stored engine loads.
fn verify_compiled(db: &Database) -> Result<(), VerifyError> {
    db.try_body_signatures()?;
    match giva_engine::Engine::load_stored(db) {
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Checks one source as `-d` would load it: a compiled database (by its
/// magic, whatever its name) or sources that compile, holding at least
/// one signature unless `options` allow none.
fn verify_one(p: &Path, options: LoadOptions) -> Result<(), VerifyError> {
    let (db, _) = giva_signatures::load_with_options(&[p], options, |_| ())?;
    if db.is_mapped() {
        verify_compiled(&db)?;
    }
    Ok(())
}

/// `giva db verify FILE...`: checks compiled databases, containers and
/// signature files without using them. Returns the exit code: 0 when
/// every file is good, 2 when one failed (its line says why).
pub fn verify(paths: &[PathBuf], options: LoadOptions) -> u8 {
    let mut code = 0;
    for p in paths {
        match verify_one(p, options) {
            Ok(()) => println!("{}: OK", p.display()),
            Err(e) => {
                println!("{}: FAILED: {e}", p.display());
                code = giva_runtime::exit::FAILURE;
            }
        }
    }
    code
}
