//! [`Names`]: the body signatures' names, back to back, so that scanning
//! never decodes the signatures themselves.

use giva_signatures::wire::Writer;

use crate::util::wire::{StoredReader, StoredResult, invalid};

/// The names of the body signatures, back to back.
#[derive(Debug, Default)]
pub(crate) struct Names {
    text: String,
    /// `text[ends[i - 1]..ends[i]]` is name `i` (`ends[-1]` = 0).
    ends: Vec<u32>,
}

impl Names {
    /// Appends a name; `None` if the names would exceed 4 GiB.
    pub fn push(&mut self, name: &str) -> Option<()> {
        self.text.push_str(name);
        self.ends.push(u32::try_from(self.text.len()).ok()?);
        Some(())
    }

    /// Body signature `i`'s name.
    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }

    /// How many body signatures there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Appends the names.
    pub fn write(&self, w: &mut Writer) {
        w.str(&self.text);
        w.u32s(&self.ends);
    }

    /// Reads names written by [`write`](Names::write), checking that every
    /// end lies on a character boundary of the text, in order.
    pub fn read(r: &mut StoredReader<'_>) -> StoredResult<Names> {
        let text = r.str()?.to_owned();
        let ends = r.u32s(|e| e)?;
        if ends.windows(2).any(|w| w[0] > w[1])
            || ends.last().is_some_and(|&e| e as usize != text.len())
            || (ends.is_empty() && !text.is_empty())
            || ends.iter().any(|&e| !text.is_char_boundary(e as usize))
        {
            return invalid("name table out of range");
        }
        Ok(Names { text, ends })
    }
}
