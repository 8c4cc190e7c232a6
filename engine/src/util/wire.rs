//! The engine's side of the one binary encoding ([`giva_signatures::wire`]):
//! a [`StoredReader`] that hands out tables in place, as [`Arr`]s that
//! point into the bytes it reads (the database's memory map), and the
//! writer of such tables.
//!
//! Tables are little-endian in the stored bytes and used as they are, so a
//! stored engine is only read on little-endian hosts (the engine is
//! rebuilt elsewhere).

use std::ops::{Deref, DerefMut};

use bytes::Bytes;
use giva_signatures::wire::{Reader, WireError, Writer};

use crate::error::StoredError;
use crate::util::arr::Arr;

/// The result of reading a stored engine.
pub(crate) type StoredResult<T> = Result<T, StoredError>;

/// A [`StoredError::Invalid`] error.
pub(crate) fn invalid<T>(what: &'static str) -> StoredResult<T> {
    Err(StoredError::Invalid(what))
}

/// Appends a table of plain values, for [`StoredReader::arr`].
pub(crate) fn put_arr<T: bytemuck::Pod>(w: &mut Writer, v: &[T]) {
    w.table(v.len(), bytemuck::cast_slice(v));
}

/// A [`Reader`] over a shared buffer, whose tables it lends rather than
/// copies.
pub(crate) struct StoredReader<'a> {
    r: Reader<'a>,
    src: &'a Bytes,
}

impl<'a> StoredReader<'a> {
    /// Reads `src` from its start.
    pub fn new(src: &'a Bytes) -> Self {
        StoredReader {
            r: Reader::new(src),
            src,
        }
    }

    /// A table written by [`put_arr`]: a slice of the source, used in
    /// place if it is aligned for `T` (else copied).
    pub fn arr<T: bytemuck::Pod + Send + Sync>(&mut self) -> Result<Arr<T>, WireError> {
        let raw = self.r.table(std::mem::size_of::<T>())?;
        Ok(Arr::from_bytes(self.src.slice_ref(raw)))
    }
}

impl<'a> Deref for StoredReader<'a> {
    type Target = Reader<'a>;
    fn deref(&self) -> &Reader<'a> {
        &self.r
    }
}

impl<'a> DerefMut for StoredReader<'a> {
    fn deref_mut(&mut self) -> &mut Reader<'a> {
        &mut self.r
    }
}
