//! `.ign2` and legacy `.ign` ignore lists (clamav-formats.md §8.2).
//!
//! Forms: `SigName`, `SigName:md5-of-the-signature-line`, and the legacy
//! `dbname:line:SigName`. Matching is case-sensitive against the name as
//! written in the database, read as ClamAV reads it: one trailing
//! `.UNOFFICIAL` is taken off the signature's name, and a name (in the
//! database or in the list) shorter than 3 characters is padded with
//! spaces to 3 (`F` and `F  ` are the same name).

use std::collections::HashMap;

use md5::{Digest, Md5};

use crate::clamav::line::{LineError, decode_hex};

/// `name`, padded with spaces to ClamAV's shortest name of 3 characters.
fn padded(name: &str) -> String {
    format!("{name:<3}")
}

/// A set of names to ignore, optionally pinned to the MD5 of the line.
#[derive(Debug, Default, Clone)]
pub(crate) struct IgnoreList {
    by_name: HashMap<String, Vec<Option<Vec<u8>>>>,
}

impl IgnoreList {
    /// Adds one line of an ignore file.
    pub fn add_line(&mut self, line: &str) -> Result<(), LineError> {
        let fields: Vec<&str> = line.split(':').collect();
        let (name, md5) = match fields.as_slice() {
            [name] => (*name, None),
            [name, md5] => {
                let d = decode_hex(md5).filter(|d| d.len() == 16).ok_or_else(|| {
                    LineError::new(
                        Some(name),
                        "the second field must be an MD5 (32 hex digits)",
                    )
                })?;
                (*name, Some(d))
            }
            [_db, _line, name] => (*name, None),
            _ => {
                return Err(LineError::new(
                    None,
                    format!("expected 1 to 3 fields, found {}", fields.len()),
                ));
            }
        };
        if name.is_empty() {
            return Err(LineError::new(None, "empty signature name"));
        }
        self.by_name.entry(padded(name)).or_default().push(md5);
        Ok(())
    }

    /// True if the signature `name` (as written), from database line `line`,
    /// is ignored.
    pub fn ignores(&self, name: &str, line: &str) -> bool {
        if self.by_name.is_empty() {
            return false;
        }
        let name = name
            .strip_suffix(crate::pattern::UNOFFICIAL)
            .unwrap_or(name);
        let Some(list) = self.by_name.get(&padded(name)) else {
            return false;
        };
        let mut line_md5: Option<Vec<u8>> = None;
        list.iter().any(|m| match m {
            None => true,
            Some(want) => {
                let got = line_md5.get_or_insert_with(|| Md5::digest(line.as_bytes()).to_vec());
                got == want
            }
        })
    }
}
