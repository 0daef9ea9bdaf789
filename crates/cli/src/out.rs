//! Output: stdout lines that survive a closed pipe (`onefolder-sync files | head`), JSON, and
//! the formatting of times and sizes for people.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;

/// Writes one line to stdout. A closed pipe (the reader went away) is not an error: the rest
/// of the output is dropped silently, like any Unix filter.
/// Inside a `sync --watch` host the line goes to the command's caller instead.
pub fn line(text: impl AsRef<str>) {
    let Some(text) = crate::host::send_out(text.as_ref().to_owned(), false) else { return };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// Writes one line to stderr (warnings, notes for people), or to the command's caller inside
/// a `sync --watch` host.
pub fn err_line(text: impl AsRef<str>) {
    let Some(text) = crate::host::send_out(text.as_ref().to_owned(), true) else { return };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// `println!` that ignores a closed pipe.
macro_rules! outln {
    () => { $crate::out::line("") };
    ($($arg:tt)*) => { $crate::out::line(format!($($arg)*)) };
}
pub(crate) use outln;

/// `eprintln!` that reaches a hosted command's caller (see [`err_line`]).
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::err_line(format!($($arg)*)) };
}
pub(crate) use errln;

/// Prints a value as pretty JSON with sorted object keys, followed by a newline.
pub fn json(value: &impl Serialize) -> Result<()> {
    line(to_json(value)?);
    Ok(())
}

/// Pretty JSON text with sorted object keys (serde_json's map is ordered by key), without a
/// trailing newline.
pub fn to_json(value: &impl Serialize) -> Result<String> {
    // Through `Value`, so that struct fields are sorted like map keys.
    let value = serde_json::to_value(value)?;
    Ok(serde_json::to_string_pretty(&value)?)
}

use onefolder_model::dates::{DAY_MS, civil_from_days};
pub use onefolder_model::dates::{iso_time, parse_time};

/// `2026-11-25 22:23:08 UTC` for ms since the epoch; `never` for 0 or less.
pub fn time(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let (days, rest) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS) / 1000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest / 60 % 60, rest % 60)
}

/// `1 file`, `3 files`: a count with its noun (English plural with `s`).
pub fn n(count: usize, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

/// `1.2 MB`-style size for people.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// Parses a size: `1500`, `1.5MB`, `2 MiB`, `10k` (k/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of
/// 1024; a trailing `B` is optional).
pub fn parse_size(text: &str) -> Option<i64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit);
    let factor: f64 = match unit.to_ascii_lowercase().as_str() {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        "ki" => 1024.0,
        "mi" => 1024.0 * 1024.0,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        "ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    let v = num * factor;
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format() {
        let ms = parse_time("2026-11-25T22:23:08.5Z").unwrap();
        assert_eq!(time(ms), "2026-11-25 22:23:08 UTC");
        assert_eq!(time(0), "never");
    }

    #[test]
    fn sizes_parse_and_format() {
        assert_eq!(parse_size("1500"), Some(1500));
        assert_eq!(parse_size("1.5MB"), Some(1_500_000));
        assert_eq!(parse_size("2 MiB"), Some(2 * 1024 * 1024));
        assert_eq!(parse_size("10k"), Some(10_000));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("5 parsecs"), None);
        assert_eq!(size(999), "999 B");
        assert_eq!(size(2_400_000), "2.4 MB");
    }

    #[test]
    fn json_keys_are_sorted() {
        #[derive(Serialize)]
        struct S {
            zeta: u8,
            alpha: u8,
        }
        let text = to_json(&S { zeta: 1, alpha: 2 }).unwrap();
        assert!(text.find("alpha").unwrap() < text.find("zeta").unwrap());
    }
}
