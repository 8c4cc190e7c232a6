//! PCRE2, for the PCRE subsignatures of logical signatures: the one module
//! that calls C. A [`Regex`] is compiled once (the database's load refuses
//! a pattern PCRE2 refuses, as ClamAV does) and matched from any thread,
//! each search (a [`Searcher`], reused across a global search's matches)
//! with its own match data and its own limits.
//!
//! PCRE2 is built from the source the `pcre2-sys` crate bundles
//! (`PCRE2_SYS_STATIC=1` in `.cargo/config.toml`), so every build runs the
//! same PCRE2. Matching uses PCRE2's interpreter, not its JIT, so that the
//! match and depth limits count as they do in ClamAV.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use pcre2_sys as ffi;

/// Compile options of a PCRE subsignature (its flags, as ClamAV maps them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// `i`: caseless.
    pub caseless: bool,
    /// `s`: `.` matches a newline too.
    pub dotall: bool,
    /// `m`: `^` and `$` match at line breaks.
    pub multiline: bool,
    /// `x`: white space and `#` comments in the pattern are ignored.
    pub extended: bool,
    /// `A`: the match must start where matching starts.
    pub anchored: bool,
    /// `E`: `$` matches only at the very end of the subject.
    pub dollar_endonly: bool,
    /// `U`: quantifiers are lazy unless followed by `?`.
    pub ungreedy: bool,
}

impl Options {
    fn bits(self) -> u32 {
        let mut o = 0;
        for (on, bit) in [
            (self.caseless, ffi::PCRE2_CASELESS),
            (self.dotall, ffi::PCRE2_DOTALL),
            (self.multiline, ffi::PCRE2_MULTILINE),
            (self.extended, ffi::PCRE2_EXTENDED),
            (self.anchored, ffi::PCRE2_ANCHORED),
            (self.dollar_endonly, ffi::PCRE2_DOLLAR_ENDONLY),
            (self.ungreedy, ffi::PCRE2_UNGREEDY),
        ] {
            if on {
                o |= bit;
            }
        }
        o
    }
}

/// Bounds on one match, ClamAV's `PCREMatchLimit` and
/// `PCRERecMatchLimit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchLimits {
    /// Most calls of PCRE2's internal match function.
    pub match_limit: u32,
    /// Deepest backtracking.
    pub depth_limit: u32,
}

/// Why a match gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatchError {
    /// A [`MatchLimits`] bound was reached.
    #[error("the PCRE match limit was reached")]
    Limit,
    /// PCRE2 reported another error (its code).
    #[error("PCRE2 error {0}")]
    Other(i32),
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Regex {
    code: NonNull<ffi::pcre2_code_8>,
    pattern: Vec<u8>,
    options: Options,
}

// SAFETY: a compiled PCRE2 pattern is not modified by matching; PCRE2's
// documentation allows one compiled pattern to be used by several threads
// at once, each with its own match data and match context, which is what
// each `Searcher` has.
unsafe impl Send for Regex {}
// SAFETY: as for `Send`: matching only reads the compiled pattern.
unsafe impl Sync for Regex {}

impl Drop for Regex {
    fn drop(&mut self) {
        // SAFETY: `code` came from `pcre2_compile_8`, is freed once, here.
        unsafe { ffi::pcre2_code_free_8(self.code.as_ptr()) }
    }
}

impl Clone for Regex {
    fn clone(&self) -> Self {
        // The pattern compiled before, so it compiles again.
        Regex::new(&self.pattern, self.options)
            .unwrap_or_else(|e| unreachable!("a compiled pattern no longer compiles: {e}"))
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern && self.options == other.options
    }
}

impl Eq for Regex {}

/// PCRE2's message for error `code`.
fn message(code: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; PCRE2 writes at most
    // that many code units, NUL-terminated, and returns the length or a
    // negative error.
    let n = unsafe { ffi::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    match usize::try_from(n) {
        Ok(n) => String::from_utf8_lossy(&buf[..n.min(buf.len())]).into_owned(),
        Err(_) => format!("PCRE2 error {code}"),
    }
}

impl Regex {
    /// Compiles `pattern` (bytes, not UTF-8 mode).
    ///
    /// # Errors
    ///
    /// PCRE2's message and the offset in the pattern where it stopped.
    pub fn new(pattern: &[u8], options: Options) -> Result<Regex, String> {
        let mut code = 0i32;
        let mut at = 0usize;
        // SAFETY: the pattern pointer and length describe a live slice
        // (PCRE2 reads only that many bytes, so no NUL is needed); the
        // error outputs point to locals; no compile context.
        let raw = unsafe {
            ffi::pcre2_compile_8(
                pattern.as_ptr(),
                pattern.len(),
                options.bits(),
                &raw mut code,
                &raw mut at,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(raw) {
            Some(code) => Ok(Regex {
                code,
                pattern: pattern.to_vec(),
                options,
            }),
            None => Err(format!("{} at offset {at}", message(code))),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &[u8] {
        &self.pattern
    }

    /// The options it was compiled with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// The first match in `subject` that starts at `start` or later
    /// (exactly at `start` when `anchored`): its start and end offsets.
    /// Lookbehinds may see the bytes before `start`.
    ///
    /// # Errors
    ///
    /// A limit was reached, or PCRE2 failed.
    pub fn find_at(
        &self,
        subject: &[u8],
        start: usize,
        anchored: bool,
        limits: MatchLimits,
    ) -> Result<Option<(usize, usize)>, MatchError> {
        self.searcher(limits)?.find_at(subject, start, anchored)
    }

    /// A searcher for several matches in a row (a global search), with
    /// its match data and limits made once.
    ///
    /// # Errors
    ///
    /// PCRE2 could not allocate them.
    pub fn searcher(&self, limits: MatchLimits) -> Result<Searcher<'_>, MatchError> {
        Ok(Searcher {
            re: self,
            data: MatchData::new(self)?,
            ctx: MatchContext::new(limits)?,
        })
    }
}

/// Searches with one [`Regex`], reusing its match data and limits; one
/// thread at a time.
#[derive(Debug)]
pub struct Searcher<'a> {
    re: &'a Regex,
    data: MatchData,
    ctx: MatchContext,
}

impl Searcher<'_> {
    /// As [`Regex::find_at`].
    ///
    /// # Errors
    ///
    /// A limit was reached, or PCRE2 failed.
    pub fn find_at(
        &mut self,
        subject: &[u8],
        start: usize,
        anchored: bool,
    ) -> Result<Option<(usize, usize)>, MatchError> {
        if start > subject.len() {
            return Ok(None);
        }
        let options = if anchored { ffi::PCRE2_ANCHORED } else { 0 };
        // SAFETY: the pattern, the match data and the context are live and
        // were made for this pattern; the subject pointer and length
        // describe a live slice and `start` is within it.
        let rc = unsafe {
            ffi::pcre2_match_8(
                self.re.code.as_ptr(),
                subject.as_ptr(),
                subject.len(),
                start,
                options,
                self.data.0.as_ptr(),
                self.ctx.0.as_ptr(),
            )
        };
        match rc {
            ffi::PCRE2_ERROR_NOMATCH => Ok(None),
            ffi::PCRE2_ERROR_MATCHLIMIT
            | ffi::PCRE2_ERROR_DEPTHLIMIT
            | ffi::PCRE2_ERROR_HEAPLIMIT => Err(MatchError::Limit),
            rc if rc < 0 => Err(MatchError::Other(rc)),
            _ => {
                // SAFETY: after a successful match the ovector holds at
                // least one pair (the whole match).
                let (s, e) = unsafe {
                    let ov = ffi::pcre2_get_ovector_pointer_8(self.data.0.as_ptr());
                    (*ov, *ov.add(1))
                };
                Ok(Some((s, e.max(s))))
            }
        }
    }
}

/// Match data, freed on drop.
#[derive(Debug)]
struct MatchData(NonNull<ffi::pcre2_match_data_8>);

impl MatchData {
    fn new(re: &Regex) -> Result<Self, MatchError> {
        // SAFETY: `code` is live; no general context.
        let raw = unsafe {
            ffi::pcre2_match_data_create_from_pattern_8(re.code.as_ptr(), std::ptr::null_mut())
        };
        NonNull::new(raw)
            .map(MatchData)
            .ok_or(MatchError::Other(ffi::PCRE2_ERROR_NOMEMORY))
    }
}

impl Drop for MatchData {
    fn drop(&mut self) {
        // SAFETY: made by `pcre2_match_data_create_from_pattern_8`, freed
        // once, here.
        unsafe { ffi::pcre2_match_data_free_8(self.0.as_ptr()) }
    }
}

/// A match context carrying the limits, freed on drop.
#[derive(Debug)]
struct MatchContext(NonNull<ffi::pcre2_match_context_8>);

impl MatchContext {
    fn new(limits: MatchLimits) -> Result<Self, MatchError> {
        // SAFETY: no general context: PCRE2 uses malloc.
        let raw = unsafe { ffi::pcre2_match_context_create_8(std::ptr::null_mut()) };
        let ctx = NonNull::new(raw)
            .map(MatchContext)
            .ok_or(MatchError::Other(ffi::PCRE2_ERROR_NOMEMORY))?;
        // SAFETY: the context is live; setting limits cannot fail.
        unsafe {
            ffi::pcre2_set_match_limit_8(ctx.0.as_ptr(), limits.match_limit);
            ffi::pcre2_set_depth_limit_8(ctx.0.as_ptr(), limits.depth_limit);
        }
        Ok(ctx)
    }
}

impl Drop for MatchContext {
    fn drop(&mut self) {
        // SAFETY: made by `pcre2_match_context_create_8`, freed once, here.
        unsafe { ffi::pcre2_match_context_free_8(self.0.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MatchLimits = MatchLimits {
        match_limit: 100_000,
        depth_limit: 2_000,
    };

    #[test]
    fn compiles_matches_and_refuses() {
        let re = Regex::new(b"h(e|a)llo", Options::default()).unwrap();
        assert_eq!(re.find_at(b"xx hallo", 0, false, LIMITS), Ok(Some((3, 8))));
        assert_eq!(re.find_at(b"xx hallo", 0, true, LIMITS), Ok(None));
        assert_eq!(re.find_at(b"xx hallo", 3, true, LIMITS), Ok(Some((3, 8))));
        assert_eq!(re.find_at(b"xx hallo", 9, false, LIMITS), Ok(None));
        let nocase = Options {
            caseless: true,
            ..Options::default()
        };
        let re = Regex::new(b"HELLO", nocase).unwrap();
        assert_eq!(
            re.find_at(b"\xffhello\x00", 0, false, LIMITS),
            Ok(Some((1, 6)))
        );
        assert!(Regex::new(b"(unclosed", Options::default()).is_err());
        // Binary subjects and patterns: no UTF-8 check.
        let re = Regex::new(b"\\x00\\xff", Options::default()).unwrap();
        assert_eq!(re.find_at(b"a\x00\xff", 0, false, LIMITS), Ok(Some((1, 3))));
    }

    #[test]
    fn limits_stop_catastrophic_backtracking() {
        let re = Regex::new(b"(a+)+$", Options::default()).unwrap();
        let mut subject = vec![b'a'; 40];
        subject.push(b'!');
        assert_eq!(
            re.find_at(&subject, 0, false, LIMITS),
            Err(MatchError::Limit)
        );
    }

    #[test]
    fn ungreedy_and_dollar_endonly() {
        let lazy = Options {
            ungreedy: true,
            ..Options::default()
        };
        let re = Regex::new(b"a+", lazy).unwrap();
        assert_eq!(re.find_at(b"aaa", 0, false, LIMITS), Ok(Some((0, 1))));
        let re = Regex::new(b"a$", Options::default()).unwrap();
        assert_eq!(re.find_at(b"a\n", 0, false, LIMITS), Ok(Some((0, 1))));
        let end_only = Options {
            dollar_endonly: true,
            ..Options::default()
        };
        let re = Regex::new(b"a$", end_only).unwrap();
        assert_eq!(re.find_at(b"a\n", 0, false, LIMITS), Ok(None));
    }
}
