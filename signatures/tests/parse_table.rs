//! Runs every row of `tests/testdata/parse.toml` through the compiler.

use std::collections::BTreeMap;

use giva_signatures::{Compiler, Limits};
use serde::Deserialize;

/// One extra file loaded with a row.
#[derive(Debug, Deserialize)]
pub struct Extra {
    /// File name.
    pub file: String,
    /// Content.
    pub text: String,
}

/// One row of the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique id.
    pub id: String,
    /// File name (extension selects the format).
    pub file: String,
    /// Content.
    pub text: String,
    /// "ok" or "error".
    pub expect: String,
    /// Error substring.
    pub error: Option<String>,
    /// Loaded counts.
    #[serde(default)]
    pub loaded: BTreeMap<String, u64>,
    /// Skipped counts.
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
    /// Reported names.
    pub names: Option<Vec<String>>,
    /// More files.
    #[serde(default)]
    pub extra: Vec<Extra>,
    /// PUA mode.
    #[serde(default)]
    pub pua: bool,
    /// Use small limits.
    #[serde(default)]
    pub small_limits: bool,
    /// Compare with ClamAV.
    #[serde(default = "yes")]
    pub clamav: bool,
    /// Where the expectation comes from.
    pub source: String,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct Table {
    case: Vec<Case>,
}

const TABLE: &str = include_str!("../../tests/testdata/parse.toml");

fn run(case: &Case) -> Result<(), String> {
    let limits = if case.small_limits {
        Limits {
            max_line_len: 200,
            max_pattern_len: 200,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let mut c = Compiler::with_limits(limits);
    c.pua(case.pua);
    c.add_source(&case.file, &case.text, false);
    for e in &case.extra {
        c.add_source(&e.file, &e.text, false);
    }
    let res = c.build();
    match (case.expect.as_str(), res) {
        ("ok", Ok(db)) => {
            let info = db.info();
            for (k, v) in &case.loaded {
                let got = info.loaded.get(k).copied().unwrap_or(0);
                if got != *v {
                    return Err(format!("loaded[{k}] = {got}, expected {v}"));
                }
            }
            for (k, v) in &case.skipped {
                let got = info.skipped.get(k).copied().unwrap_or(0);
                if got != *v {
                    return Err(format!(
                        "skipped[{k}] = {got}, expected {v} (all: {:?})",
                        info.skipped
                    ));
                }
            }
            if let Some(names) = &case.names {
                let got: Vec<String> = db
                    .body_signatures()
                    .iter()
                    .map(|b| b.name.clone())
                    .chain(db.logical_signatures().iter().map(|l| l.name.clone()))
                    .collect();
                // Hash names are checked through lookups elsewhere; here the
                // body and logical names, or the hash names if there are none.
                if !got.is_empty() && &got != names {
                    return Err(format!("names {got:?}, expected {names:?}"));
                }
                if got.is_empty()
                    && info.loaded.get("hash").copied().unwrap_or(0) != names.len() as u64
                {
                    return Err(format!("expected {} hash names", names.len()));
                }
            }
            Ok(())
        }
        ("ok", Err(e)) => Err(format!("expected ok, got error: {e}")),
        ("error", Ok(_)) => Err("expected an error, it loaded".into()),
        ("error", Err(e)) => {
            let msg = e.to_string();
            match &case.error {
                Some(sub) if !msg.contains(sub.as_str()) => {
                    Err(format!("error {msg:?} does not contain {sub:?}"))
                }
                _ => Ok(()),
            }
        }
        (other, _) => Err(format!("bad expect value {other:?}")),
    }
}

#[test]
fn parse_table() {
    let table: Table = toml::from_str(TABLE).expect("parse.toml is valid TOML");
    let mut ids = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &table.case {
        assert!(ids.insert(case.id.clone()), "duplicate id {}", case.id);
        assert!(!case.source.is_empty(), "{}: empty source", case.id);
        if let Err(e) = run(case) {
            failures.push(format!("{}: {e}", case.id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        table.case.len(),
        failures.join("\n")
    );
    println!("{} rows passed", table.case.len());
}
