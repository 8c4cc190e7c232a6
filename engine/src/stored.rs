//! The built engine as bytes, stored in the compiled database file so that
//! loading a database does not rebuild the atom index and the programs.
//!
//! Layout, in the shared [`wire`](giva_signatures::wire) encoding: the
//! magic `GIVAENG` plus a format byte ([`MAGIC`]), the number of body
//! signatures and of subsignature counters it was built for (checked
//! against the database; the counters' layout is derived from its logical
//! signatures), `eof_tail`, the body signatures' [`Names`], the typed
//! ones' targets (a count, then the index and target of each), then the
//! `main`, `eof`, `exe` and (optional) sequential [`Program`]s. Tables are
//! stored as they are in memory, aligned, and used in place from the
//! mapping when read back ([`StoredReader::arr`]).
//!
//! The file is checksummed as a whole, so these bytes are what `giva db
//! compile` wrote; reading still checks every count, index and range that
//! scanning relies on, and refuses the blob (the engine is then rebuilt
//! from the signatures) rather than panic or read out of bounds later.

use bytes::Bytes;
use giva_signatures::wire::Writer;

use crate::compile::Program;
use crate::names::Names;
use crate::util::wire::{StoredReader, StoredResult, invalid};

/// The magic and format of the blob. Bump the last byte whenever the
/// layout or the meaning of a stored structure changes: an older blob is
/// then refused, with a log line, and the engine rebuilt.
pub(crate) const MAGIC: &[u8; 8] = b"GIVAENG\x0e";

/// What a stored engine holds besides the database it is stored in.
#[derive(Debug)]
pub(crate) struct Stored {
    pub eof_tail: u64,
    pub names: Names,
    pub typed: std::sync::Arc<[u8]>,
    pub main: Program,
    pub eof: Program,
    pub exe: Program,
    pub sequential: Option<Program>,
}

/// The blob of an engine with these parts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write(
    nsubs: usize,
    eof_tail: u64,
    names: &Names,
    typed: &[u8],
    main: &Program,
    eof: &Program,
    exe: &Program,
    sequential: Option<&Program>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(MAGIC);
    w.count(names.len());
    w.count(nsubs);
    w.u64(eof_tail);
    names.write(&mut w);
    let typed: Vec<(usize, u8)> = typed
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != 0)
        .map(|(i, t)| (i, *t))
        .collect();
    w.count(typed.len());
    for (i, t) in typed {
        w.count(i);
        w.u8(t);
    }
    main.write(&mut w);
    eof.write(&mut w);
    exe.write(&mut w);
    match sequential {
        Some(p) => {
            w.u8(1);
            p.write(&mut w);
        }
        None => w.u8(0),
    }
    w.into_bytes()
}

/// Reads a blob, which must have been built for `nbody` body signatures
/// and `nsubs` subsignature counters.
pub(crate) fn read(blob: &Bytes, nbody: usize, nsubs: usize) -> StoredResult<Stored> {
    // The tables are used as they are in the file, little-endian.
    if cfg!(target_endian = "big") {
        return invalid("stored little-endian; rebuilt on this big-endian host");
    }
    let mut r = StoredReader::new(blob);
    if r.take(MAGIC.len())? != MAGIC {
        return invalid(
            "another format, written by another giva version (`giva db compile` it again to skip the rebuild)",
        );
    }
    if r.count(0)? != nbody || r.count(0)? != nsubs {
        return invalid("built for other signatures");
    }
    let eof_tail = r.u64()?;
    let names = Names::read(&mut r)?;
    if names.len() != nbody {
        return invalid("name count");
    }
    let ntyped = r.count(0)?;
    let typed: std::sync::Arc<[u8]> = if ntyped == 0 {
        std::sync::Arc::default()
    } else {
        if ntyped > nbody {
            return invalid("typed signature count");
        }
        let mut t = vec![0u8; nbody];
        for _ in 0..ntyped {
            let i = r.count(0)?;
            let target = r.u8()?;
            if i >= nbody || target == 0 {
                return invalid("typed signature");
            }
            t[i] = target;
        }
        t.into()
    };
    let main = Program::read(&mut r, nbody, nsubs)?;
    let eof = Program::read(&mut r, nbody, nsubs)?;
    let exe = Program::read(&mut r, nbody, nsubs)?;
    let sequential = match r.u8()? {
        0 => None,
        1 => Some(Program::read(&mut r, nbody, nsubs)?),
        t => r.bad_tag("sequential program", t)?,
    };
    if !r.is_empty() {
        return invalid("trailing bytes");
    }
    Ok(Stored {
        eof_tail,
        names,
        typed,
        main,
        eof,
        exe,
        sequential,
    })
}
