//! The rows of `tests/testdata/match.toml`, shared by the test that runs
//! them through giva in every mode (`table.rs`) and the one that runs them
//! through clamscan (`clamav_diff.rs`).
#![allow(dead_code)]

use std::path::PathBuf;

use giva_signatures::{Compiler, Database};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct Table {
    pub case: Vec<Case>,
}

#[derive(Deserialize)]
pub struct DbFile {
    pub name: String,
    pub text: String,
}

#[derive(Deserialize)]
pub struct Case {
    pub id: String,
    pub db: Option<String>,
    pub sig: Option<String>,
    #[serde(default)]
    pub files: Vec<DbFile>,
    pub data: Option<String>,
    pub data_hex: Option<String>,
    pub expect: Vec<String>,
    /// The file type the data has in ClamAV's typing (the target number),
    /// for rows whose signatures are typed: giva's engine is told it, as
    /// the content layer tells it when scanning files.
    pub file_type: Option<u8>,
    /// Why clamscan 1.4.6 reports something else than `expect` on this
    /// row: a ClamAV bug where giva keeps the documented result.
    pub clamav_bug: Option<String>,
    #[allow(dead_code)]
    pub source: Option<String>,
}

impl Case {
    /// The row's data.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.data, &self.data_hex) {
            (_, Some(h)) => unhex(h),
            (Some(d), None) => d.as_bytes().to_vec(),
            (None, None) => panic!("{}: no data", self.id),
        }
    }

    /// The row's signature files: (file name, text).
    pub fn db_files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let (Some(db), Some(sig)) = (&self.db, &self.sig) {
            out.push((db.clone(), format!("{sig}\n")));
        }
        for f in &self.files {
            out.push((f.name.clone(), format!("{}\n", f.text)));
        }
        out
    }

    /// The row's signatures, compiled.
    pub fn database(&self) -> Result<Database, String> {
        let mut comp = Compiler::new();
        for (name, text) in self.db_files() {
            comp.add_source(&name, &text, false);
        }
        comp.build().map_err(|e| e.to_string())
    }
}

pub fn table() -> Table {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/testdata/match.toml");
    let text = std::fs::read_to_string(&path).expect("read match.toml");
    toml::from_str(&text).expect("parse match.toml")
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
