//! File names on the shared medium: segments, their cloud conflict copies, and what to ignore.

use crate::segment::SegmentKind;

/// Name of the per-device advisory file.
pub const DEVICE_FILE: &str = "device.json";
/// Name of the library manifest.
pub const MANIFEST_FILE: &str = "library.json";
/// Extension of segment files.
pub const SEGMENT_EXT: &str = ".seg";
const SEQ_DIGITS: usize = 20;
const SNAPSHOT_PREFIX: &str = "snap-";

/// The canonical file name of a delta segment: the seq zero-padded to 20 digits.
pub fn delta_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_EXT}")
}

/// The canonical file name of a snapshot segment covering `1..=seq`.
pub fn snapshot_name(seq: u64) -> String {
    format!("{SNAPSHOT_PREFIX}{seq:020}{SEGMENT_EXT}")
}

/// What a file name in a device folder says about the file. The segment header is
/// authoritative; the name only decides whether the file is worth reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentName {
    /// Delta or snapshot.
    pub kind: SegmentKind,
    /// The seq in the name.
    pub seq: u64,
    /// The name is not canonical: a cloud conflict copy (`… (X's conflicted copy …).seg`,
    /// `…-LAPTOP-2.seg`, `….sync-conflict-….seg`) or a case change.
    pub variant: bool,
}

impl SegmentName {
    /// Parses a segment name or one of its conflict-copy variants; `None` for anything else
    /// (`device.json`, temporary files, `desktop.ini`, `.DS_Store`, …).
    pub fn parse(name: &str) -> Option<SegmentName> {
        if name.starts_with('.') || is_temporary(name) {
            return None;
        }
        let (kind, rest) = match strip_prefix_ci(name, SNAPSHOT_PREFIX) {
            Some(rest) => (SegmentKind::Snapshot, rest),
            None => (SegmentKind::Delta, name),
        };
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits != SEQ_DIGITS {
            return None;
        }
        let seq: u64 = rest[..SEQ_DIGITS].parse().ok()?;
        let tail = &rest[SEQ_DIGITS..];
        let ext_ok = tail.len() >= SEGMENT_EXT.len()
            && tail.is_char_boundary(tail.len() - SEGMENT_EXT.len())
            && tail[tail.len() - SEGMENT_EXT.len()..].eq_ignore_ascii_case(SEGMENT_EXT);
        if !ext_ok {
            return None;
        }
        let canonical = match kind {
            SegmentKind::Delta => delta_name(seq),
            SegmentKind::Snapshot => snapshot_name(seq),
        };
        Some(SegmentName { kind, seq, variant: name != canonical })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.is_char_boundary(prefix.len()) && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// Whether a name is a temporary file of ours or of a sync client (never read, never listed).
pub fn is_temporary(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with('~')
        || lower.ends_with(".tmp")
        || lower.ends_with(".partial")
        || lower.ends_with(".crdownload")
        || lower.contains(".tmp-")
        || lower.starts_with("~$")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names_parse() {
        assert_eq!(delta_name(7), "00000000000000000007.seg");
        let n = SegmentName::parse(&delta_name(7)).unwrap();
        assert_eq!((n.kind, n.seq, n.variant), (SegmentKind::Delta, 7, false));
        let s = SegmentName::parse(&snapshot_name(u64::MAX)).unwrap();
        assert_eq!((s.kind, s.seq, s.variant), (SegmentKind::Snapshot, u64::MAX, false));
    }

    #[test]
    fn conflict_copies_are_variants_of_the_same_seq() {
        for name in [
            "00000000000000000007 (Anna's conflicted copy 2026-11-02).seg",
            "00000000000000000007-LAPTOP-2.seg",
            "00000000000000000007.sync-conflict-20261102-101010-ABCDEFG.seg",
            "00000000000000000007.SEG",
        ] {
            let n = SegmentName::parse(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!((n.seq, n.variant), (7, true), "{name}");
        }
    }

    #[test]
    fn other_files_are_not_segments() {
        for name in [
            "device.json",
            "desktop.ini",
            ".DS_Store",
            "Icon\r",
            ".00000000000000000007.seg.tmp-abc",
            "00000000000000000007.seg.tmp",
            "7.seg",
            "000000000000000000007.seg",
            "99999999999999999999.seg",
            "00000000000000000007.segment",
        ] {
            assert_eq!(SegmentName::parse(name), None, "{name:?}");
        }
    }
}
