//! [`Arr`]: the engine's large tables, either built in memory or used in
//! place from a stored engine in a memory-mapped database file, so that
//! loading a database does not copy (and fault in fresh memory for) tens
//! of megabytes of index.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use bytes::Bytes;

/// A read-only array of plain values, behind a reference-counted byte
/// buffer: a `Vec` the engine built, or a slice of the database mapping
/// (which the buffer keeps alive). The buffer is always aligned for `T`
/// and a whole number of `T`s long (checked where an `Arr` is made), so
/// viewing it as `&[T]` cannot fail.
pub(crate) struct Arr<T> {
    bytes: Bytes,
    _t: PhantomData<T>,
}

/// A `Vec<T>` seen as bytes, as an owner for [`Bytes::from_owner`].
struct PodVec<T>(Vec<T>);

impl<T: bytemuck::Pod> AsRef<[u8]> for PodVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl<T: bytemuck::Pod + Send + Sync> Arr<T> {
    pub fn from_vec(v: Vec<T>) -> Self {
        Arr {
            bytes: Bytes::from_owner(PodVec(v)),
            _t: PhantomData,
        }
    }

    /// Uses `bytes` in place if it is aligned for `T`, else copies them.
    /// `bytes.len()` must be a multiple of `size_of::<T>()` (the reader
    /// takes whole records), else the array is empty.
    pub fn from_bytes(bytes: Bytes) -> Self {
        match bytemuck::try_cast_slice::<u8, T>(&bytes) {
            Ok(_) => Arr {
                bytes,
                _t: PhantomData,
            },
            Err(_) if bytes.len().is_multiple_of(std::mem::size_of::<T>().max(1)) => {
                Self::from_vec(bytemuck::pod_collect_to_vec(&bytes))
            }
            Err(_) => Self::default(),
        }
    }

    /// True if the values are those of `outer` in place, not a copy (for
    /// tests).
    #[cfg(test)]
    pub fn lies_in(&self, outer: &[u8]) -> bool {
        outer.as_ptr_range().contains(&self.bytes.as_ptr())
    }
}

impl<T: bytemuck::Pod> Deref for Arr<T> {
    type Target = [T];

    #[inline]
    fn deref(&self) -> &[T] {
        // Cannot fail: alignment and length are checked where an `Arr` is
        // made.
        bytemuck::try_cast_slice(&self.bytes).unwrap_or(&[])
    }
}

impl<T> Clone for Arr<T> {
    fn clone(&self) -> Self {
        Arr {
            bytes: self.bytes.clone(),
            _t: PhantomData,
        }
    }
}

impl<T> Default for Arr<T> {
    fn default() -> Self {
        Arr {
            bytes: Bytes::new(),
            _t: PhantomData,
        }
    }
}

impl<T: bytemuck::Pod + fmt::Debug> fmt::Debug for Arr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: bytemuck::Pod + Send + Sync> From<Vec<T>> for Arr<T> {
    fn from(v: Vec<T>) -> Self {
        Self::from_vec(v)
    }
}

impl<'a, T: bytemuck::Pod> IntoIterator for &'a Arr<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misaligned_bytes_are_copied_and_read_the_same() {
        let raw = Bytes::from((0u8..=16).collect::<Vec<u8>>());
        let aligned = Arr::<u32>::from_vec(vec![0x0403_0201, 0x0807_0605]);
        // Offset 1 of a heap buffer is never 4-aligned.
        let odd = raw.slice(1..9);
        let copied = Arr::<u32>::from_bytes(odd.clone());
        assert!(!copied.lies_in(&odd));
        assert_eq!(&*copied, &*aligned);
        // A length that is not whole records gives an empty table.
        assert!(Arr::<u32>::from_bytes(raw.slice(0..7)).is_empty());
    }
}
