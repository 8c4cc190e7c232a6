//! Writing a database file: the sections in their [`wire`](crate::wire)
//! encoding, laid out behind a header and sealed with the checksum.

use crate::db::info::DatabaseInfo;
use crate::db::layout::{
    self, FORMAT_VERSION, HEADER_FIXED_LEN, MAGIC, SEC_ALLOW, SEC_BODY, SEC_INFO, SEC_LOGICAL,
    algo_index, record_len, scope_kinds,
};
use crate::db::names::encode_names;
use crate::pattern::{BodySignature, HashAlgo, HashEntry, HashScope, LogicalSignature};
use crate::wire::{Wire, Writer};

/// The bytes of a database file holding these signatures.
pub(crate) fn encode(
    info: &DatabaseInfo,
    body: &[BodySignature],
    logical: &[LogicalSignature],
    hashes: &[HashEntry],
    allow: &[HashEntry],
) -> Vec<u8> {
    let mut sections: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut tables: Vec<(u32, Option<u32>, &[HashEntry], HashScope)> = HashScope::ALL
        .into_iter()
        .map(|scope| {
            let (kind, names) = scope_kinds(scope);
            (kind, Some(names), hashes, scope)
        })
        .collect();
    // Allow-list names are never reported: not stored.
    tables.push((SEC_ALLOW, None, allow, HashScope::File));
    for (kind, names_kind, list, scope) in tables {
        for algo in HashAlgo::ALL {
            let ai = algo_index(algo);
            let named = names_kind.is_some();
            let mut recs: Vec<([u8; 8], &[u8], &str)> = list
                .iter()
                .filter(|h| {
                    h.scope == scope && h.algo == algo && h.digest.len() == algo.digest_len()
                })
                .map(|h| {
                    (
                        h.size.unwrap_or(u64::MAX).to_be_bytes(),
                        h.digest.as_slice(),
                        if named { h.name.as_str() } else { "" },
                    )
                })
                .collect();
            recs.sort_unstable();
            recs.dedup();
            if recs.is_empty() {
                continue;
            }
            let mut buf = Vec::with_capacity(recs.len() * record_len(algo));
            for (size, d, _) in &recs {
                buf.extend_from_slice(size);
                buf.extend_from_slice(d);
            }
            sections.push((kind + ai, buf));
            if let Some(names) = names_kind {
                sections.push((names + ai, encode_names(recs.iter().map(|r| r.2))));
            }
        }
    }
    let mut w = Writer::new();
    for map in [&info.loaded, &info.skipped] {
        w.count(map.len());
        for (k, v) in map {
            w.str(k);
            w.var(*v);
        }
    }
    sections.push((SEC_INFO, w.into_bytes()));
    sections.push((SEC_BODY, list_on_every_core(body)));
    let mut w = Writer::new();
    w.list(logical);
    sections.push((SEC_LOGICAL, w.into_bytes()));

    assemble(&info.version, info.built_at, &sections)
}

/// The bytes [`Writer::list`] writes of `v`, its values encoded on every
/// core (a value's encoding does not depend on where it lands).
fn list_on_every_core<T: Wire + Sync>(v: &[T]) -> Vec<u8> {
    let mut w = Writer::new();
    w.count(v.len());
    let mut out = w.into_bytes();
    let runs = crate::parallel::chunks(v, 4096, |run| {
        let mut w = Writer::new();
        for x in run {
            x.put(&mut w);
        }
        w.into_bytes()
    });
    out.reserve(runs.iter().map(Vec::len).sum());
    for run in runs {
        out.extend_from_slice(&run);
    }
    out
}

/// Lays out `sections` as a payload behind a header and seals it.
pub(crate) fn assemble(version: &str, built_at: u64, sections: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let version = version.as_bytes();
    let version = &version[..version.len().min(layout::MAX_VERSION_LEN)];
    let header_len = HEADER_FIXED_LEN + version.len();
    // Each section starts at a file offset that is a multiple of
    // SECTION_ALIGN (zero padding between), so that what is used in place
    // from the mapping is aligned.
    let table_len = 4 + sections.len() * 24;
    let mut starts = Vec::with_capacity(sections.len());
    let mut end = table_len;
    for (_, data) in sections {
        let start = (header_len + end).next_multiple_of(layout::SECTION_ALIGN) - header_len;
        starts.push(start);
        end = start + data.len();
    }
    let mut payload = Vec::with_capacity(end);
    payload.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    for ((kind, data), &start) in sections.iter().zip(&starts) {
        payload.extend_from_slice(&kind.to_le_bytes());
        payload.extend_from_slice(&0u32.to_le_bytes());
        payload.extend_from_slice(&(start as u64).to_le_bytes());
        payload.extend_from_slice(&(data.len() as u64).to_le_bytes());
    }
    for ((_, data), &start) in sections.iter().zip(&starts) {
        payload.resize(start, 0);
        payload.extend_from_slice(data);
    }

    let mut out = Vec::with_capacity(header_len + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(header_len as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0u8; 32]);
    out.extend_from_slice(&built_at.to_le_bytes());
    out.extend_from_slice(&(version.len() as u32).to_le_bytes());
    out.extend_from_slice(version);
    out.extend_from_slice(&payload);
    layout::seal(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_encoded_on_every_core_is_the_list_encoded_on_one() {
        for n in [0, 1, 4095, 20_000] {
            let v: Vec<String> = (0..n).map(|i| format!("{}", i * 7919)).collect();
            let mut w = Writer::new();
            w.list(&v);
            assert_eq!(list_on_every_core(&v), w.into_bytes(), "{n} values");
        }
    }
}
