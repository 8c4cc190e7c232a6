//! An executable's structure as ClamAV's signatures see it: the entry
//! point's offset in the file and each section's place in it, for the
//! executable offsets (`EP+n`, `Sx+n`, `SL+n`, `SEx`), the target
//! description keys `EntryPoint` and `NumberOfSections`, the section
//! hashes (`.mdb`) and the import hash (`.imp`); `docs/clamav-formats.md`
//! §5.2 and §3.3 state the rules.
//!
//! The arithmetic is ClamAV's, quirks included, so the headers are read
//! here with bounds-checked little readers rather than through a general
//! parser whose own validation would accept and refuse other files than
//! ClamAV does: a PE section's offset and size are aligned to the file
//! alignment (even a value that is no power of two), the entry point is
//! found through the headers or the last section whose bytes in the file
//! hold its address, an ELF's through its first program header that holds
//! it. A header ClamAV refuses leaves the file without a structure
//! ([`ExeInfo`] `None`): its executable offsets then match nowhere, as in
//! ClamAV. Every read is checked; the work is bounded by the header counts
//! (65,535 PE sections at most, and ClamAV's caps: 128 ELF program
//! headers, 256 ELF sections, 1,024 Mach-O load commands and import
//! descriptors) and, for the import hash, by [`MAX_IMPORTS`] and
//! [`MAX_IMPORT_STRING`].

use giva_signatures::{ExeInfo, ExeKind, ExeSection};

use crate::exe_ordinals::{OLEAUT32_ORDINALS, WINSOCK_ORDINALS};
use crate::formats::{le16, le32, le64};

/// The structure of `data` if it is a PE, ELF or Mach-O file whose
/// headers ClamAV accepts; `target` is its
/// [`target_type`](crate::target_type) (1, 6 or 9; any other: `None`).
pub fn exe_info(data: &[u8], target: u8) -> Option<ExeInfo> {
    match target {
        1 => pe_info(data),
        6 => elf_info(data),
        9 => macho_info(data),
        _ => None,
    }
}

/// `v` rounded down to a multiple of `a` (`a` = 0: unchanged).
fn align_down(v: u32, a: u32) -> u32 {
    v.checked_div(a).map_or(v, |q| q * a)
}

/// `v` rounded up to a multiple of `a` (`a` = 0: unchanged), in 32 bits
/// as ClamAV computes it: past 4 GiB it wraps.
fn align_up(v: u32, a: u32) -> u32 {
    v.checked_div(a).map_or(v, |q| {
        q.wrapping_add(u32::from(!v.is_multiple_of(a)))
            .wrapping_mul(a)
    })
}

/// One PE section as ClamAV computes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeSection {
    pub rva: u32,
    /// Its size in memory, aligned.
    pub vsz: u32,
    pub raw: u32,
    pub rsz: u32,
}

/// A PE as ClamAV lays it out: its sections (aligned and cut as ClamAV
/// does), its headers' offset and addresses, and the entry point.
pub(crate) struct PeLayout {
    pub sections: Vec<PeSection>,
    /// The offset of `PE\0\0`.
    pub pe: usize,
    /// A PE32+ file.
    pub plus: bool,
    /// The entry point's address and its offset in the file.
    pub entry_rva: u32,
    pub entry: u64,
    /// The import directory `(address, size)`.
    imports_dir: (u32, u32),
    map: PeMap,
}

/// What a PE's addresses are mapped with.
struct PeMap {
    sections: Vec<PeSection>,
    /// The headers' size, aligned to the section alignment: an address
    /// below it is its own file offset.
    headers: u32,
    size: u64,
}

impl PeMap {
    /// The file offset of address `rva`, as ClamAV maps it: in the
    /// headers, itself; else through the last section whose bytes in the
    /// file hold it.
    fn raw(&self, rva: u32) -> Option<u64> {
        if rva < self.headers {
            return (u64::from(rva) < self.size).then_some(u64::from(rva));
        }
        let s = self
            .sections
            .iter()
            .rev()
            .find(|s| s.rsz != 0 && s.rva <= rva && rva - s.rva < s.rsz)?;
        Some(u64::from(rva - s.rva) + u64::from(s.raw))
    }
}

fn pe_info(d: &[u8]) -> Option<ExeInfo> {
    let l = pe_layout(d, false)?;
    let imports = if l.plus {
        None
    } else {
        import_string(d, &l.map, l.imports_dir)
    };
    Some(ExeInfo {
        kind: if l.plus { ExeKind::Pe64 } else { ExeKind::Pe32 },
        entry: l.entry,
        sections: l
            .sections
            .iter()
            .map(|s| ExeSection {
                raw: u64::from(s.raw),
                size: u64::from(s.rsz),
            })
            .collect(),
        imports,
    })
}

/// The layout of the PE `d` as ClamAV computes it, or `None` where ClamAV
/// refuses its headers. `remove_missing`: a section that starts past the
/// end of the file is dropped from the list (as ClamAV's scanner and
/// unpackers see a PE), rather than kept empty (as its signature offsets
/// do); none left refuses the headers.
pub(crate) fn pe_layout(d: &[u8], remove_missing: bool) -> Option<PeLayout> {
    if !(d.starts_with(b"MZ") || d.starts_with(b"ZM")) {
        return None;
    }
    let size = d.len() as u64;
    let pe = le32(d, 60)? as usize;
    if pe == 0 || d.get(pe..pe.checked_add(4)?)? != b"PE\0\0" {
        return None;
    }
    let count = le16(d, pe + 6)? as usize;
    let opt_size = le16(d, pe + 20)? as usize;
    if count == 0 || opt_size < 96 {
        return None;
    }
    let opt = pe + 24;
    let plus = le16(d, opt)? == 0x20b;
    let fixed = if plus { 112 } else { 96 };
    if opt_size < fixed {
        return None;
    }
    d.get(opt..opt + fixed)?;
    // The data directories ClamAV reads must be there; the ones it does
    // not (past the declared count) are zero.
    let dirs = (le32(d, opt + fixed - 4)? as usize).min(16);
    if opt_size < fixed + 8 * dirs {
        return None;
    }
    let dir = |i: usize| {
        if i < dirs {
            Some((
                le32(d, opt + fixed + 8 * i)?,
                le32(d, opt + fixed + 8 * i + 4)?,
            ))
        } else {
            Some((0, 0))
        }
    };
    let imports_dir = dir(1)?;
    let entry = le32(d, opt + 16)?;
    let salign = le32(d, opt + 32)?;
    let mut falign = le32(d, opt + 36)?;
    let headers = align_up(le32(d, opt + 60)?, salign);
    let table = opt + opt_size;
    let raw_table = d.get(table..table.checked_add(40 * count)?)?;
    let field = |i: usize, at: usize| le32(raw_table, 40 * i + at).unwrap_or(0);
    // A section not on the file alignment but on 0x200 makes ClamAV read
    // every section on 0x200 instead.
    if falign != 0x200
        && falign != 0
        && (0..count).any(|i| {
            let (rsz, ptr) = (field(i, 16), field(i, 20));
            rsz != 0 && !ptr.is_multiple_of(falign) && ptr.is_multiple_of(0x200)
        })
    {
        falign = 0x200;
    }
    let mut sections = Vec::with_capacity(count);
    for i in 0..count {
        let (vsz, va, ursz, uraw) = (field(i, 8), field(i, 12), field(i, 16), field(i, 20));
        let raw = align_down(uraw, falign);
        let mut rsz = align_up(ursz, falign);
        let mut ursz = ursz;
        if rsz != 0 {
            if u64::from(raw) >= size || u64::from(uraw) >= size {
                if remove_missing {
                    continue;
                }
                // Kept in the list, empty: `Sx+n` still counts from it.
                rsz = 0;
                ursz = 0;
            } else {
                if u64::from(raw) + u64::from(rsz) > size {
                    rsz = (size - u64::from(raw)) as u32;
                }
                if u64::from(uraw) + u64::from(ursz) > size {
                    ursz = (size - u64::from(uraw)) as u32;
                }
            }
        }
        const SIGN: u32 = 1 << 31;
        if va >= SIGN || vsz >= SIGN || (rsz != 0 && uraw >= SIGN) || ursz >= SIGN {
            return None;
        }
        let mut vsz = align_up(vsz, salign);
        if vsz == 0 && rsz != 0 {
            vsz = align_up(ursz, salign);
        }
        sections.push(PeSection {
            rva: align_down(va, salign),
            vsz,
            raw,
            rsz,
        });
    }
    if sections.is_empty() {
        return None;
    }
    let map = PeMap {
        sections: sections.clone(),
        headers,
        size,
    };
    let entry_at = map.raw(entry)?;
    Some(PeLayout {
        sections,
        pe,
        plus,
        entry_rva: entry,
        entry: entry_at,
        imports_dir,
        map,
    })
}

/// The most import descriptors read.
const MAX_IMPORT_DLLS: usize = 1024;

/// The most bytes of a DLL or function name read.
const MAX_IMPORT_NAME: usize = 256;

/// The most imported functions read for the import hash: a hostile table
/// can name one function from every thunk of every descriptor (a billion
/// of them in a few MiB). Past it, or past [`MAX_IMPORT_STRING`], the
/// file gets no import hash (a real program imports a few thousand).
const MAX_IMPORTS: usize = 1 << 16;

/// The longest import string built.
const MAX_IMPORT_STRING: usize = 4 << 20;

/// The NUL-terminated name at `at`, read no further than `max` bytes.
fn c_name(d: &[u8], at: u64, max: usize) -> Option<&[u8]> {
    let at = usize::try_from(at).ok()?;
    let b = d.get(at..)?;
    let b = &b[..b.len().min(max)];
    Some(b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]))
}

/// The import table as ClamAV hashes it (`.imp`): `dll.function` for
/// each import, lower case, joined by `,`; `None` where ClamAV computes no
/// hash (no import directory, a name it cannot read or refuses).
fn import_string(d: &[u8], map: &PeMap, (va, len): (u32, u32)) -> Option<Vec<u8>> {
    if va == 0 || len == 0 {
        return None;
    }
    let size = map.size;
    let start = map.raw(va)?;
    if start + u64::from(len) > size {
        return None;
    }
    let mut out: Vec<u8> = Vec::new();
    let mut imports = 0usize;
    let mut left = len;
    let mut at = start as usize;
    for _ in 0..MAX_IMPORT_DLLS {
        // ClamAV reads a descriptor only while more than one's length of
        // the directory is left.
        if left <= 20 {
            break;
        }
        let Some(desc) = d.get(at..at + 20) else {
            break;
        };
        let name_rva = le32(desc, 12)?;
        if name_rva == 0 {
            break;
        }
        let name_at = map.raw(name_rva)?;
        if name_at > size {
            return None;
        }
        let dll = c_name(d, name_at, MAX_IMPORT_NAME)?;
        let stem = match dll.iter().position(|&c| c == b'.') {
            Some(p)
                if [&b".dll"[..], b".ocx", b".sys"]
                    .iter()
                    .any(|e| dll[p..].len() >= 4 && dll[p..p + 4].eq_ignore_ascii_case(e)) =>
            {
                &dll[..p]
            }
            _ => dll,
        };
        let (first_thunk, original) = (le32(desc, 16)?, le32(desc, 0)?);
        let thunks = match map.raw(original).filter(|&o| original != 0 && o != 0) {
            Some(o) => o,
            None => map.raw(first_thunk)?,
        };
        let mut t = thunks as usize;
        while let Some(v) = le32(d, t).filter(|&v| v != 0) {
            t += 4;
            imports += 1;
            if imports > MAX_IMPORTS || out.len() > MAX_IMPORT_STRING {
                return None;
            }
            let func: Vec<u8> = if v & 0x8000_0000 != 0 {
                let ord = (v & 0xffff) as u16;
                match ordinal_name(dll, ord) {
                    Some(n) => n.as_bytes().to_vec(),
                    None => format!("ord{ord}").into_bytes(),
                }
            } else {
                // ClamAV does not notice an address it cannot map, and
                // reads the name as if at offset 0.
                let off = map.raw(v).unwrap_or(0);
                let room = size.saturating_sub(off);
                let n = room.min(MAX_IMPORT_NAME as u64);
                // The name must lie whole in the file, hint included, or
                // the import is left out.
                if off + 2 + n > size {
                    continue;
                }
                let name = c_name(d, off + 2, n as usize)?;
                if !name
                    .iter()
                    .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
                {
                    return None;
                }
                name.to_vec()
            };
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend(stem.iter().map(u8::to_ascii_lowercase));
            out.push(b'.');
            out.extend(func.iter().map(u8::to_ascii_lowercase));
        }
        at += 20;
        left -= 20;
    }
    Some(out)
}

/// The name of ordinal `ord` of `dll` where ClamAV has one: the DLL's
/// name must start with `ws2_32.dll`, `wsock32.dll` (one table for both)
/// or `oleaut32.dll`, in any case.
fn ordinal_name(dll: &[u8], ord: u16) -> Option<&'static str> {
    let starts = |p: &[u8]| dll.len() >= p.len() && dll[..p.len()].eq_ignore_ascii_case(p);
    let table = if starts(b"ws2_32.dll") || starts(b"wsock32.dll") {
        WINSOCK_ORDINALS
    } else if starts(b"oleaut32.dll") {
        OLEAUT32_ORDINALS
    } else {
        return None;
    };
    table
        .binary_search_by_key(&ord, |(o, _)| *o)
        .ok()
        .map(|i| table[i].1)
}

/// Reads an ELF's fields in its byte order and width.
struct Elf<'a> {
    d: &'a [u8],
    big: bool,
    wide: bool,
}

impl Elf<'_> {
    fn u16(&self, at: usize) -> Option<u64> {
        let v = le16(self.d, at)?;
        Some(u64::from(if self.big { v.swap_bytes() } else { v }))
    }

    fn u32(&self, at: usize) -> Option<u64> {
        let v = le32(self.d, at)?;
        Some(u64::from(if self.big { v.swap_bytes() } else { v }))
    }

    /// An address-sized field (32 or 64 bits).
    fn word(&self, at: usize) -> Option<u64> {
        if self.wide {
            let v = le64(self.d, at)?;
            Some(if self.big { v.swap_bytes() } else { v })
        } else {
            self.u32(at)
        }
    }
}

/// The most program headers (128) and section headers (256) ClamAV reads.
const ELF_MAX_PHDRS: u64 = 128;
const ELF_MAX_SHDRS: u64 = 256;

fn elf_info(d: &[u8]) -> Option<ExeInfo> {
    if !d.starts_with(b"\x7fELF") || d.len() < 52 {
        return None;
    }
    let wide = match d[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    if wide && d.len() < 64 {
        return None;
    }
    // ClamAV reads any byte-order mark other than 1 as big-endian.
    let big = d[5] != 1;
    let e = Elf { d, big, wide };
    // Where the fields after e_entry lie in each width.
    let (phoff, shoff, phent, phnum, shent, shnum) = if wide {
        (32, 40, 54, 56, 58, 60)
    } else {
        (28, 32, 42, 44, 46, 48)
    };
    // One whole table entry, read as ClamAV reads it (a short read
    // refuses the headers), as a reader of its own.
    let entry_at = |table: u64, i: usize, size: usize| -> Option<Elf<'_>> {
        let at = usize::try_from(table)
            .ok()?
            .checked_add(i.checked_mul(size)?)?;
        Some(Elf {
            d: d.get(at..at.checked_add(size)?)?,
            big,
            wide,
        })
    };
    let entry = e.word(24)?;
    let nph = e.u16(phnum)?;
    if nph > ELF_MAX_PHDRS {
        return None;
    }
    let entry = if nph == 0 || entry == 0 {
        0
    } else {
        let size = if wide { 56 } else { 32 };
        if e.u16(phent)? != size as u64 {
            return None;
        }
        let table = e.word(phoff)?;
        let (off_at, va_at, mem_at) = if wide { (8, 16, 40) } else { (4, 8, 20) };
        let mut found = None;
        for i in 0..nph as usize {
            let p = entry_at(table, i, size)?;
            let (off, va, mem) = (p.word(off_at)?, p.word(va_at)?, p.word(mem_at)?);
            // ClamAV's test, in the file's width, wrapping as it does.
            let holds = if wide {
                va <= entry && va.wrapping_add(mem) > entry
            } else {
                let (va, mem, entry) = (va as u32, mem as u32, entry as u32);
                va <= entry && va.wrapping_add(mem) > entry
            };
            if found.is_none() && holds {
                found = Some(entry.wrapping_sub(va).wrapping_add(off));
            }
        }
        // Kept to the low 32 bits, as ClamAV stores it.
        found? & u64::from(u32::MAX)
    };
    let nsh = e.u16(shnum)?;
    let size = if wide { 64 } else { 40 };
    if nsh > ELF_MAX_SHDRS || e.u16(shent)? != size as u64 {
        return None;
    }
    let mut sections = Vec::with_capacity(nsh as usize);
    if nsh > 0 {
        let table = e.word(shoff)?;
        let (off_at, len_at) = if wide { (24, 32) } else { (16, 20) };
        for i in 0..nsh as usize {
            let s = entry_at(table, i, size)?;
            // ELF64 values are kept to their low 32 bits.
            sections.push(ExeSection {
                raw: s.word(off_at)? & u64::from(u32::MAX),
                size: s.word(len_at)? & u64::from(u32::MAX),
            });
        }
    }
    Some(ExeInfo {
        kind: ExeKind::Elf,
        entry,
        sections,
        imports: None,
    })
}

/// The most load commands (1,024) and sections per segment (255) ClamAV
/// reads from a Mach-O file.
const MACHO_MAX_COMMANDS: u32 = 1024;
const MACHO_MAX_SECTIONS: u32 = 255;

fn macho_info(d: &[u8]) -> Option<ExeInfo> {
    let (big, wide) = match d.get(..4)? {
        [0xce, 0xfa, 0xed, 0xfe] => (false, false),
        [0xfe, 0xed, 0xfa, 0xce] => (true, false),
        [0xcf, 0xfa, 0xed, 0xfe] => (false, true),
        [0xfe, 0xed, 0xfa, 0xcf] => (true, true),
        _ => return None,
    };
    let m = Elf { d, big, wide };
    let cpu = m.u32(4)?;
    let ncmds = m.u32(16)? as u32;
    if ncmds == 0 || ncmds > MACHO_MAX_COMMANDS {
        return None;
    }
    let mut at: usize = if wide { 32 } else { 28 };
    d.get(..at)?;
    // (address, size in memory, offset in the file, size in the file)
    let mut sections: Vec<(u64, u64, u64, u64)> = Vec::new();
    let mut entry: u64 = 0;
    for _ in 0..ncmds {
        let (cmd, cmdsize) = (m.u32(at)?, m.u32(at + 4)?);
        at += 8;
        let segment = if wide { 0x19 } else { 0x1 };
        if cmd == segment {
            // The segment's body, then its sections, at their fixed sizes.
            let (body, sect, nsects_at) = if wide { (64, 80, 56) } else { (48, 68, 40) };
            d.get(at..at + body)?;
            let nsects = m.u32(at + nsects_at)? as u32;
            if nsects > MACHO_MAX_SECTIONS {
                return None;
            }
            at += body;
            for _ in 0..nsects {
                d.get(at..at + sect)?;
                let (addr, size, off_at) = if wide {
                    (m.word(at + 32)?, m.word(at + 40)?, 48)
                } else {
                    (m.u32(at + 32)?, m.u32(at + 36)?, 40)
                };
                let (offset, align) = (m.u32(at + off_at)?, m.u32(at + off_at + 4)?);
                if !wide && align >= 32 {
                    return None;
                }
                let (addr, size) = (addr & 0xffff_ffff, size & 0xffff_ffff);
                // The size in the file is the size in memory rounded up to
                // the section's alignment (64-bit files: taken mod 32).
                let file_size = u64::from(align_up(size as u32, 1u32 << (align % 32)));
                sections.push((addr, size, offset, file_size));
                at += sect;
            }
        } else if (cmd == 4 || cmd == 5) && matches!(cpu, 7 | 18 | 0x0100_0012) {
            // A thread's state: only PowerPC's gives ClamAV an entry point.
            at += 8;
            let state = match cpu {
                7 => 64,
                18 => 160,
                _ => 312,
            };
            d.get(at..at + state)?;
            match cpu {
                18 => entry = m.u32(at)?,
                0x0100_0012 => entry = m.word(at)? & 0xffff_ffff,
                _ => {}
            }
            at += state;
        } else if cmdsize > 8 {
            at = at.checked_add(cmdsize as usize - 8)?;
        }
    }
    if entry != 0 && !sections.is_empty() {
        // ClamAV's test, in 32 bits, wrapping as it does.
        let &(addr, _, offset, _) = sections.iter().find(|(addr, size, _, _)| {
            let (a, z, e) = (*addr as u32, *size as u32, entry as u32);
            a <= e && a.wrapping_add(z) > e
        })?;
        entry = (entry - addr + offset) & 0xffff_ffff;
    }
    Some(ExeInfo {
        kind: ExeKind::MachO,
        entry,
        sections: sections
            .iter()
            .map(|&(_, _, raw, size)| ExeSection { raw, size })
            .collect(),
        imports: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One section: (address, size in memory, offset, size in the file).
    type Sec = (u32, u32, u32, u32);

    /// A PE32 of `len` bytes: headers at 0x40, the file and section
    /// alignments, the headers' size, the entry point's address, the
    /// sections, and the import directory `(address, size)`.
    fn pe(
        len: usize,
        (falign, salign, headers): (u32, u32, u32),
        entry: u32,
        secs: &[Sec],
        imports: (u32, u32),
    ) -> Vec<u8> {
        let mut d = vec![0u8; len];
        let put =
            |d: &mut Vec<u8>, at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        d[..2].copy_from_slice(b"MZ");
        put(&mut d, 0x3c, 0x40);
        d[0x40..0x44].copy_from_slice(b"PE\0\0");
        d[0x46..0x48].copy_from_slice(&(secs.len() as u16).to_le_bytes());
        d[0x54..0x56].copy_from_slice(&(96u16 + 16 * 8).to_le_bytes());
        let opt = 0x58;
        d[opt..opt + 2].copy_from_slice(&0x10bu16.to_le_bytes());
        put(&mut d, opt + 16, entry);
        put(&mut d, opt + 32, salign);
        put(&mut d, opt + 36, falign);
        put(&mut d, opt + 60, headers);
        put(&mut d, opt + 92, 16);
        put(&mut d, opt + 96 + 8, imports.0);
        put(&mut d, opt + 96 + 12, imports.1);
        let table = opt + 96 + 16 * 8;
        for (i, &(va, vsz, raw, rsz)) in secs.iter().enumerate() {
            let s = table + 40 * i;
            put(&mut d, s + 8, vsz);
            put(&mut d, s + 12, va);
            put(&mut d, s + 16, rsz);
            put(&mut d, s + 20, raw);
        }
        d
    }

    fn raws(i: &ExeInfo) -> Vec<(u64, u64)> {
        i.sections.iter().map(|s| (s.raw, s.size)).collect()
    }

    #[test]
    fn pe_sections_are_aligned_as_clamav_aligns_them() {
        // File alignment 0x400: 0x900 is rounded down to 0x800, and the
        // size up to 0x400.
        let d = pe(
            0x2000,
            (0x400, 0x1000, 0x400),
            0x1000,
            &[(0x1000, 0x100, 0x900, 0x300)],
            (0, 0),
        );
        let i = exe_info(&d, 1).expect("parses");
        assert_eq!(raws(&i), [(0x800, 0x400)]);
        assert_eq!(i.entry, 0x800);
        // A section on 0x200 but not on 0x400 makes every section 0x200
        // aligned.
        let d = pe(
            0x2000,
            (0x400, 0x1000, 0x400),
            0x2010,
            &[(0x1000, 0x100, 0x900, 0x300), (0x2000, 0x100, 0xa00, 0x200)],
            (0, 0),
        );
        let i = exe_info(&d, 1).expect("parses");
        assert_eq!(raws(&i), [(0x800, 0x400), (0xa00, 0x200)]);
        assert_eq!(i.entry, 0xa10);
        // A section past the end stays, empty; one running past it ends
        // with the file.
        let d = pe(
            0x1100,
            (0x200, 0x1000, 0x200),
            0x1000,
            &[
                (0x1000, 0x100, 0x400, 0x1000),
                (0x3000, 0x100, 0x4000, 0x200),
            ],
            (0, 0),
        );
        let i = exe_info(&d, 1).expect("parses");
        assert_eq!(raws(&i), [(0x400, 0xd00), (0x4000, 0)]);
    }

    #[test]
    fn pe_entry_points_map_as_in_clamav_or_the_headers_are_refused() {
        // Below the headers' size (aligned to the section alignment), an
        // address is its own offset, even where a section lies.
        let d = pe(
            0x1000,
            (0x200, 0x1000, 0x100),
            0x300,
            &[(0x1000, 0x200, 0x200, 0x200)],
            (0, 0),
        );
        assert_eq!(exe_info(&d, 1).map(|i| i.entry), Some(0x300));
        // In the part of a section that only memory holds: refused.
        let d = pe(
            0x1000,
            (0x200, 0x1000, 0x200),
            0x1300,
            &[(0x1000, 0x1000, 0x200, 0x200)],
            (0, 0),
        );
        assert_eq!(exe_info(&d, 1), None);
        // A raw size that wraps when aligned: refused.
        let d = pe(
            0x1000,
            (0x200, 0x1000, 0x200),
            0x100,
            &[(0x1000, 0x100, 0x200, u32::MAX)],
            (0, 0),
        );
        assert_eq!(exe_info(&d, 1), None);
        // No sections, no `PE\0\0`, a zero e_lfanew: refused.
        let d = pe(0x1000, (0x200, 0x1000, 0x200), 0x100, &[], (0, 0));
        assert_eq!(exe_info(&d, 1), None);
        let mut d = pe(
            0x1000,
            (0x200, 0x1000, 0x200),
            0x100,
            &[(0x1000, 0x100, 0x200, 0x200)],
            (0, 0),
        );
        assert!(exe_info(&d, 1).is_some());
        d[0x3c..0x40].fill(0);
        assert_eq!(exe_info(&d, 1), None);
    }

    #[test]
    fn pe_imports_read_as_clamav_hashes_them() {
        // One section at 0x200 (address 0x1000) holds the import table.
        let mut d = pe(
            0x800,
            (0x200, 0x1000, 0x200),
            0x1000,
            &[(0x1000, 0x600, 0x200, 0x600)],
            (0x1000, 61),
        );
        let raw = |rva: usize| rva - 0x1000 + 0x200;
        let put =
            |d: &mut Vec<u8>, at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        let text = |d: &mut Vec<u8>, at: usize, s: &[u8]| d[at..at + s.len()].copy_from_slice(s);
        // Descriptors: KERNEL32.dll (thunks at 0x1100), WS2_32.dll (0x1200).
        put(&mut d, raw(0x1000), 0x1100);
        put(&mut d, raw(0x1000) + 12, 0x1300);
        put(&mut d, raw(0x1000) + 16, 0x1100);
        put(&mut d, raw(0x1014), 0x1200);
        put(&mut d, raw(0x1014) + 12, 0x1320);
        put(&mut d, raw(0x1014) + 16, 0x1200);
        text(&mut d, raw(0x1300), b"KERNEL32.dll\0");
        text(&mut d, raw(0x1320), b"WS2_32.dll\0");
        put(&mut d, raw(0x1100), 0x1400);
        put(&mut d, raw(0x1104), 0x1410);
        text(&mut d, raw(0x1400) + 2, b"LoadLibraryA\0");
        text(&mut d, raw(0x1410) + 2, b"GetProcAddress\0");
        put(&mut d, raw(0x1200), 0x8000_0001);
        put(&mut d, raw(0x1204), 0x8000_03e7);
        let i = exe_info(&d, 1).expect("parses");
        assert_eq!(
            i.imports.as_deref(),
            Some(&b"kernel32.loadlibrarya,kernel32.getprocaddress,ws2_32.accept,ws2_32.ord999"[..])
        );
        // A directory of exactly two descriptors' length: the second is
        // not read.
        put(&mut d, 0x58 + 96 + 12, 40);
        let i = exe_info(&d, 1).expect("parses");
        assert_eq!(
            i.imports.as_deref(),
            Some(&b"kernel32.loadlibrarya,kernel32.getprocaddress"[..])
        );
        // A name ClamAV refuses (a C++ one) leaves no import hash at all.
        text(&mut d, raw(0x1410) + 2, b"??0x@@QAE\0");
        assert_eq!(exe_info(&d, 1).expect("parses").imports, None);
    }

    #[test]
    fn ordinals_are_named_from_clamavs_tables() {
        assert_eq!(
            ordinal_name(b"WS2_32.DLL", 58),
            Some("WSAInstallServiceClassA")
        );
        assert_eq!(ordinal_name(b"wsock32.dll", 10), Some("ioctlsocket"));
        assert_eq!(ordinal_name(b"OLEAUT32.dll", 144), Some("DllCanUnloadNow"));
        assert_eq!(ordinal_name(b"oleaut32.dll", 302), None);
        assert_eq!(ordinal_name(b"ws2_32", 1), None);
        assert_eq!(ordinal_name(b"oleaut32.ocx", 2), None);
    }

    /// An ELF64 little-endian file of `len` bytes with program headers
    /// `(offset, address, size in memory)` and `sections` section headers.
    fn elf(
        len: usize,
        entry: u64,
        phdrs: &[(u64, u64, u64)],
        sections: u16,
        shentsize: u16,
    ) -> Vec<u8> {
        let mut d = vec![0u8; len];
        d[..6].copy_from_slice(b"\x7fELF\x02\x01");
        d[24..32].copy_from_slice(&entry.to_le_bytes());
        d[32..40].copy_from_slice(&64u64.to_le_bytes());
        d[54..56].copy_from_slice(&56u16.to_le_bytes());
        d[56..58].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        let shoff = 64 + 56 * phdrs.len() as u64;
        d[40..48].copy_from_slice(&shoff.to_le_bytes());
        d[58..60].copy_from_slice(&shentsize.to_le_bytes());
        d[60..62].copy_from_slice(&sections.to_le_bytes());
        for (i, &(off, va, mem)) in phdrs.iter().enumerate() {
            let p = 64 + 56 * i;
            d[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            d[p + 16..p + 24].copy_from_slice(&va.to_le_bytes());
            d[p + 40..p + 48].copy_from_slice(&mem.to_le_bytes());
        }
        for i in 0..sections as usize {
            let s = shoff as usize + 64 * i;
            d[s + 24..s + 32].copy_from_slice(&(0x100 * i as u64).to_le_bytes());
            d[s + 32..s + 40].copy_from_slice(&0x80u64.to_le_bytes());
        }
        d
    }

    #[test]
    fn elf_entry_points_come_from_the_first_program_header_that_holds_them() {
        // Both headers hold the entry: the first in the table wins.
        let d = elf(
            0x1000,
            0x401010,
            &[(0x200, 0x401000, 0x100), (0x0, 0x400000, 0x10000)],
            3,
            64,
        );
        let i = exe_info(&d, 6).expect("parses");
        assert_eq!(i.entry, 0x210);
        assert_eq!(raws(&i), [(0, 0x80), (0x100, 0x80), (0x200, 0x80)]);
        // No header holds it: refused; none at all: 0.
        assert_eq!(
            exe_info(&elf(0x1000, 0x900000, &[(0, 0x400000, 0x100)], 0, 64), 6),
            None
        );
        assert_eq!(
            exe_info(&elf(0x1000, 0x401010, &[], 0, 64), 6).map(|i| i.entry),
            Some(0)
        );
        // The section header size must be right even with no sections.
        assert_eq!(exe_info(&elf(0x1000, 0x401010, &[], 0, 0), 6), None);
    }

    #[test]
    fn macho_sections_are_read_and_x86_64_has_no_entry_point() {
        // A 64-bit Mach-O: one LC_SEGMENT_64 with two sections, then LC_MAIN.
        let mut d = vec![0u8; 0x1000];
        let put =
            |d: &mut Vec<u8>, at: usize, v: u32| d[at..at + 4].copy_from_slice(&v.to_le_bytes());
        d[..4].copy_from_slice(&[0xcf, 0xfa, 0xed, 0xfe]);
        put(&mut d, 4, 0x0100_0007);
        put(&mut d, 16, 2);
        let seg = 32;
        put(&mut d, seg, 0x19);
        put(&mut d, seg + 4, 72 + 2 * 80);
        put(&mut d, seg + 8 + 56, 2);
        for (k, (addr, size, off, align)) in [
            (0x1000u64, 0x30u64, 0x400u32, 4u32),
            (0x2000, 0x101, 0x800, 3),
        ]
        .into_iter()
        .enumerate()
        {
            let s = seg + 72 + 80 * k;
            d[s + 32..s + 40].copy_from_slice(&addr.to_le_bytes());
            d[s + 40..s + 48].copy_from_slice(&size.to_le_bytes());
            put(&mut d, s + 48, off);
            put(&mut d, s + 52, align);
        }
        let main = seg + 72 + 160;
        put(&mut d, main, 0x8000_0028);
        put(&mut d, main + 4, 24);
        let i = exe_info(&d, 9).expect("parses");
        assert_eq!(i.entry, 0);
        assert_eq!(raws(&i), [(0x400, 0x30), (0x800, 0x108)]);
        // A fat file has no structure of its own.
        assert_eq!(exe_info(&[0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 1], 9), None);
    }
}
