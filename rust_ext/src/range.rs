//! HTTP `Range` request header parsing (RFC 9110 §14.1.2 / §14.2).
//!
//! Grammar (RFC 9110):
//!
//! ```text
//! Range            = ranges-specifier
//! ranges-specifier = range-unit "=" range-set
//! range-set        = 1#range-spec
//! range-spec       = int-range / suffix-range / other-range
//! int-range        = first-pos "-" [ last-pos ]
//! suffix-range     = "-" suffix-length
//! ```
//!
//! `1#` is the RFC list syntax: elements separated by `OWS "," OWS`, where
//! empty elements (`bytes=0-1,,2-3`) must be tolerated by recipients but at
//! least one element must be non-empty.
//!
//! The outcome has three cases, mirroring what the server must answer:
//!
//! * [`RangeOutcome::Ranges`]: send 206 with these sorted, coalesced ranges;
//! * [`RangeOutcome::Ignore`]: ignore the header and send the whole file with
//!   200. RFC 9110 says a server MUST ignore a Range it cannot parse or whose
//!   unit it does not support, and MAY ignore any Range; like nginx we also
//!   ignore requests with too many ranges or whose ranges add up to more than
//!   the file (the shape of overlapping-range amplification attacks);
//! * [`RangeError::NotSatisfiable`]: valid syntax but no range overlaps the
//!   file: 416 with `Content-Range: bytes */size`.

use pyo3::prelude::*;

use crate::errors::RangeNotSatisfiable;

/// Default for `max_ranges`: more range-specs than this and the header is ignored.
pub const DEFAULT_MAX_RANGES: usize = 16;

/// A half-open byte range `[start, end)`.
pub type ByteRange = (u64, u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Sorted, non-overlapping, non-adjacent half-open ranges (never empty).
    Ranges(Vec<ByteRange>),
    /// Ignore the header: answer 200 with the whole representation.
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    /// Valid header, but no range-spec overlaps a file of `size` bytes.
    NotSatisfiable { size: u64 },
}

impl From<RangeError> for PyErr {
    fn from(err: RangeError) -> PyErr {
        match err {
            RangeError::NotSatisfiable { size } => {
                RangeNotSatisfiable::new_err(format!("no satisfiable range: bytes */{size}"))
            }
        }
    }
}

/// One syntactically valid range-spec, before it is resolved against the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last` (`last` inclusive) or `first-` (`last` = None).
    Int { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parse `1*DIGIT` into a u64; anything else (empty, sign, space) is None.
///
/// A number too large for u64 saturates to `u64::MAX` rather than making the
/// header invalid: it is still valid syntax (RFC 9110 puts no bound on
/// digits), and saturating gives what the RFC asks for — a first-pos beyond
/// any file is unsatisfiable (416), a last-pos beyond it is clamped, a suffix
/// longer than the file means the whole file.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Only digits remain, so the only possible failure is overflow.
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn parse_spec(s: &str) -> Option<Spec> {
    let (first, last) = s.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    if last.is_empty() {
        return Some(Spec::Int { first, last: None });
    }
    let last = parse_digits(last)?;
    // RFC 9110 §14.1.1: an int-range with last-pos < first-pos is invalid,
    // which makes the whole ranges-specifier invalid (so it is ignored).
    if last < first {
        return None;
    }
    Some(Spec::Int { first, last: Some(last) })
}

/// Optional whitespace as RFC 9110 defines it (SP / HTAB).
fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Parse a `Range` header value against a representation of `size` bytes.
pub fn parse_range(header: &str, size: u64, max_ranges: usize) -> Result<RangeOutcome, RangeError> {
    let Some((unit, set)) = trim_ows(header).split_once('=') else {
        return Ok(RangeOutcome::Ignore);
    };
    // Range units are case-insensitive (RFC 9110 §14.1); no whitespace is
    // allowed around "=".
    if !unit.eq_ignore_ascii_case("bytes") {
        return Ok(RangeOutcome::Ignore);
    }

    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue; // empty list elements are tolerated
        }
        let Some(spec) = parse_spec(element) else {
            return Ok(RangeOutcome::Ignore);
        };
        specs.push(spec);
        // Count syntactic specs, satisfiable or not: the limit bounds the work
        // a client can make us do, whatever the file size.
        if specs.len() > max_ranges {
            return Ok(RangeOutcome::Ignore);
        }
    }
    if specs.is_empty() {
        return Ok(RangeOutcome::Ignore); // `1#` needs one non-empty element
    }

    // Resolve against the size; unsatisfiable specs are dropped. A zero-length
    // file satisfies nothing (there is no byte to point at).
    let mut ranges: Vec<ByteRange> = Vec::with_capacity(specs.len());
    if size > 0 {
        for spec in specs {
            match spec {
                Spec::Int { first, last } => {
                    if first >= size {
                        continue;
                    }
                    // last-pos beyond the end is clamped to size - 1; `last + 1`
                    // cannot overflow because last <= size - 1 after min().
                    let last = last.unwrap_or(u64::MAX).min(size - 1);
                    ranges.push((first, last + 1));
                }
                Spec::Suffix(0) => continue, // `-0` selects nothing
                Spec::Suffix(n) => ranges.push((size.saturating_sub(n), size)),
            }
        }
    }
    if ranges.is_empty() {
        return Err(RangeError::NotSatisfiable { size });
    }

    // nginx's rule: if the requested ranges (before coalescing) add up to more
    // than the file, serve the whole file instead. This refuses
    // `bytes=0-,0-,0-,...` style amplification. u128 cannot overflow here.
    let total: u128 = ranges.iter().map(|&(s, e)| u128::from(e - s)).sum();
    if total > u128::from(size) {
        return Ok(RangeOutcome::Ignore);
    }

    // Sort and coalesce overlapping or adjacent ranges (RFC 9110 §14.2 allows
    // it and it spares the client parts that would repeat bytes).
    ranges.sort_unstable();
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    Ok(RangeOutcome::Ranges(merged))
}

/// Parse an HTTP `Range` header for a file of `size` bytes.
///
/// Returns sorted, coalesced half-open `(start, end)` ranges; `None` to ignore
/// the header (send 200 with the whole file); raises `RangeNotSatisfiable`
/// (answer 416) when the header is valid but no range is satisfiable.
///
/// >>> parse_range("bytes=0-99,50-149, -10", 1000)
/// [(0, 150), (990, 1000)]
#[pyfunction]
#[pyo3(name = "parse_range", signature = (header, size, *, max_ranges = DEFAULT_MAX_RANGES))]
fn py_parse_range(header: &str, size: u64, max_ranges: usize) -> PyResult<Option<Vec<ByteRange>>> {
    match parse_range(header, size, max_ranges)? {
        RangeOutcome::Ranges(ranges) => Ok(Some(ranges)),
        RangeOutcome::Ignore => Ok(None),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(py_parse_range, m)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(non_upper_case_globals)]
    const Ignore: Result<RangeOutcome, RangeError> = Ok(RangeOutcome::Ignore);

    fn ok(v: &[ByteRange]) -> Result<RangeOutcome, RangeError> {
        Ok(RangeOutcome::Ranges(v.to_vec()))
    }

    fn unsat(size: u64) -> Result<RangeOutcome, RangeError> {
        Err(RangeError::NotSatisfiable { size })
    }

    #[test]
    fn table() {
        let cases: &[(&str, u64, Result<RangeOutcome, RangeError>)] = &[
            // basic forms
            ("bytes=0-499", 1000, ok(&[(0, 500)])),
            ("bytes=500-999", 1000, ok(&[(500, 1000)])),
            ("bytes=500-", 1000, ok(&[(500, 1000)])),
            ("bytes=-500", 1000, ok(&[(500, 1000)])),
            ("bytes=0-0", 1000, ok(&[(0, 1)])),
            ("bytes=999-999", 1000, ok(&[(999, 1000)])),
            // last-pos clamped to size - 1
            ("bytes=900-5000", 1000, ok(&[(900, 1000)])),
            ("bytes=0-18446744073709551615", 10, ok(&[(0, 10)])),
            // suffix longer than the file = whole file
            ("bytes=-5000", 1000, ok(&[(0, 1000)])),
            // numbers past u64 saturate: first-pos beyond the file, suffix longer than it
            ("bytes=18446744073709551616-", 1000, unsat(1000)),
            ("bytes=-18446744073709551616", 1000, ok(&[(0, 1000)])),
            // unit is case-insensitive, OWS around the whole value and commas
            ("Bytes=0-1", 10, ok(&[(0, 2)])),
            ("  bytes=0-1 ,\t4-5  ", 10, ok(&[(0, 2), (4, 6)])),
            // empty list elements tolerated
            ("bytes=,0-1,,4-5,", 10, ok(&[(0, 2), (4, 6)])),
            // sorted and coalesced (overlap and adjacency)
            ("bytes=4-5,0-1", 10, ok(&[(0, 2), (4, 6)])),
            ("bytes=0-1,2-3", 10, ok(&[(0, 4)])),
            ("bytes=0-3,2-5", 100, ok(&[(0, 6)])),
            ("bytes=0-99,50-149, -10", 1000, ok(&[(0, 150), (990, 1000)])),
            ("bytes=0-9,2-3", 100, ok(&[(0, 10)])),
            // unsatisfiable specs are dropped when others are satisfiable
            ("bytes=0-1,2000-3000", 1000, ok(&[(0, 2)])),
            ("bytes=-0,0-1", 1000, ok(&[(0, 2)])),
            // unsatisfiable
            ("bytes=1000-", 1000, unsat(1000)),
            ("bytes=1000-2000", 1000, unsat(1000)),
            ("bytes=-0", 1000, unsat(1000)),
            ("bytes=0-", 0, unsat(0)),
            ("bytes=-5", 0, unsat(0)),
            ("bytes=0-0", 0, unsat(0)),
            // syntactically invalid -> ignore
            ("", 1000, Ignore),
            ("bytes", 1000, Ignore),
            ("bytes=", 1000, Ignore),
            ("bytes=,", 1000, Ignore),
            ("bytes=-", 1000, Ignore),
            ("bytes=abc", 1000, Ignore),
            ("bytes=1-a", 1000, Ignore),
            ("bytes=5-4", 1000, Ignore),
            ("bytes=+1-2", 1000, Ignore),
            ("bytes=1--2", 1000, Ignore),
            ("bytes=-+2", 1000, Ignore),
            ("bytes=0 -1", 1000, Ignore),
            ("bytes = 0-1", 1000, Ignore),
            ("bytes=0-1;2-3", 1000, Ignore),
            ("bytes=0-1,x", 1000, Ignore),
            // other units -> ignore
            ("items=0-1", 1000, Ignore),
            ("none", 1000, Ignore),
            // total length above the file size (nginx rule) -> ignore
            ("bytes=0-,0-", 1000, Ignore),
            ("bytes=0-599,400-999", 1000, Ignore),
            ("bytes=-600,0-599", 1000, Ignore),
            // exactly the file size is still fine
            ("bytes=0-499,500-999", 1000, ok(&[(0, 1000)])),
        ];
        for (header, size, expected) in cases {
            assert_eq!(&parse_range(header, *size, DEFAULT_MAX_RANGES), expected, "{header:?} size={size}");
        }
    }

    #[test]
    fn max_ranges() {
        let header = format!("bytes={}", (0..16).map(|i| format!("{}-{}", i * 10, i * 10)).collect::<Vec<_>>().join(","));
        assert!(matches!(parse_range(&header, 1000, 16), Ok(RangeOutcome::Ranges(r)) if r.len() == 16));
        assert_eq!(parse_range(&header, 1000, 15), Ignore);
        // unsatisfiable specs count too: the limit bounds the parsing work
        assert_eq!(parse_range("bytes=0-1,5000-,6000-", 1000, 2), Ignore);
        // empty elements do not count
        assert_eq!(parse_range("bytes=0-1,,,,", 1000, 1), ok(&[(0, 2)]));
        assert_eq!(parse_range("bytes=0-1", 1000, 0), Ignore);
    }

    #[test]
    fn numbers_beyond_u64_saturate() {
        let huge = "99999999999999999999999999999";
        assert_eq!(parse_range(&format!("bytes={huge}-"), 1000, 16), unsat(1000));
        assert_eq!(parse_range(&format!("bytes=0-{huge}"), 1000, 16), ok(&[(0, 1000)]));
        assert_eq!(parse_range(&format!("bytes=10-{huge}"), 1000, 16), ok(&[(10, 1000)]));
        assert_eq!(parse_range(&format!("bytes=-{huge}"), 1000, 16), ok(&[(0, 1000)]));
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let max = u64::MAX;
        assert_eq!(parse_range("bytes=0-", max, 16), ok(&[(0, max)]));
        assert_eq!(parse_range("bytes=-1", max, 16), ok(&[(max - 1, max)]));
        assert_eq!(parse_range(&format!("bytes={}-", max - 1), max, 16), ok(&[(max - 1, max)]));
        assert_eq!(parse_range(&format!("bytes={max}-"), max, 16), unsat(max));
    }
}
