//! The segment codec: the only file format peers exchange.
//!
//! ```text
//! offset size field
//!      0    4 magic "OFSG"
//!      4    2 format version (u16 LE) = 1
//!      6    1 kind: 0 delta, 1 snapshot
//!      7    1 flags (0; reserved for compression)
//!      8   16 engine id, ASCII, NUL padded
//!     24   16 library id (UUID bytes)
//!     40   16 device id (UUID bytes)
//!     56    8 first seq covered (u64 LE)
//!     64    8 last seq covered (u64 LE)
//!     72    4 payload length (u32 LE)
//!     76    4 payload CRC-32 (IEEE)
//!     80    4 header CRC-32 over bytes 0..80
//!     84    … payload (engine bytes)
//! ```
//! Decoding checks lengths before anything else is trusted and checksums before the payload is
//! handed out, so an engine only ever sees bytes that arrived intact.

use crate::ids::{DeviceId, LibraryId};

/// The four magic bytes at the start of every segment.
pub const MAGIC: [u8; 4] = *b"OFSG";
/// The segment format version this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 84;
/// Longest engine id a header can hold.
pub const MAX_ENGINE_ID: usize = 16;
const HEADER_CRC_AT: usize = HEADER_LEN - 4;
/// Default cap on a payload (64 MiB); larger segments are rejected before reading.
pub const DEFAULT_MAX_PAYLOAD: u32 = 64 * 1024 * 1024;

/// Delta (a range of edits) or snapshot (the whole state up to a seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    /// Changes made by one device in the covered seq range.
    Delta,
    /// The device's view of the whole document up to `seq_end`.
    Snapshot,
}

/// A decoded segment header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SegmentHeader {
    /// Format version.
    pub version: u16,
    /// Delta or snapshot.
    pub kind: SegmentKind,
    /// Engine id (e.g. `"yrs"`).
    pub engine: String,
    /// Library the segment belongs to.
    pub library: LibraryId,
    /// Device that wrote it.
    pub device: DeviceId,
    /// First seq covered.
    pub seq_start: u64,
    /// Last seq covered.
    pub seq_end: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// CRC-32 of the payload.
    pub payload_crc: u32,
}

/// Why a segment was rejected. Each kind is distinct so callers and tests can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// Shorter than its header or its declared payload (partial download, still being written).
    #[error("truncated segment: {have} bytes, need {need}")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes required.
        need: usize,
    },
    /// Not a segment at all.
    #[error("not a segment (bad magic)")]
    BadMagic,
    /// Written by a newer (or unknown) format version.
    #[error("unsupported segment format version {0} (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// Header bytes do not match their checksum.
    #[error("segment header checksum mismatch")]
    HeaderChecksum,
    /// Payload bytes do not match their checksum.
    #[error("segment payload checksum mismatch")]
    PayloadChecksum,
    /// The payload length is over the cap.
    #[error("segment payload of {len} bytes is over the {cap}-byte limit")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// Cap.
        cap: u64,
    },
    /// Bytes after the declared payload.
    #[error("{0} unexpected bytes after the segment payload")]
    TrailingBytes(usize),
    /// The segment belongs to another library.
    #[error("segment of another library ({found}, expected {expected})")]
    WrongLibrary {
        /// Library in the header.
        found: LibraryId,
        /// Our library.
        expected: LibraryId,
    },
    /// The segment was written by another engine.
    #[error("segment written by engine {found:?}, this library uses {expected:?}")]
    WrongEngine {
        /// Engine in the header.
        found: String,
        /// Our engine.
        expected: String,
    },
    /// Header fields are inconsistent (unknown kind, seq range reversed, bad engine id).
    #[error("malformed segment header: {0}")]
    Malformed(&'static str),
}

/// What a reader expects of a segment; anything else is rejected.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    /// The library.
    pub library: LibraryId,
    /// The engine id.
    pub engine: &'a str,
    /// Largest payload accepted.
    pub max_payload: u32,
}

/// A checked segment: header plus the payload borrowed from the input.
#[derive(Debug)]
pub struct Segment<'a> {
    /// The header.
    pub header: SegmentHeader,
    /// The payload, checksum verified.
    pub payload: &'a [u8],
}

/// Encodes a segment. Fails with [`SegmentError::TooLarge`] when the payload does not fit in
/// a `u32`, or [`SegmentError::Malformed`] for an engine id longer than 16 bytes or a reversed
/// seq range.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    kind: SegmentKind,
    engine: &str,
    library: LibraryId,
    device: DeviceId,
    seq_start: u64,
    seq_end: u64,
    payload: &[u8],
) -> Result<Vec<u8>, SegmentError> {
    if engine.is_empty() || engine.len() > MAX_ENGINE_ID || !engine.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SegmentError::Malformed("engine id must be 1-16 printable ASCII bytes"));
    }
    if seq_start > seq_end {
        return Err(SegmentError::Malformed("seq range reversed"));
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| SegmentError::TooLarge { len: payload.len() as u64, cap: u32::MAX as u64 })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.push(match kind {
        SegmentKind::Delta => 0,
        SegmentKind::Snapshot => 1,
    });
    out.push(0);
    let mut engine_bytes = [0u8; MAX_ENGINE_ID];
    engine_bytes[..engine.len()].copy_from_slice(engine.as_bytes());
    out.extend_from_slice(&engine_bytes);
    out.extend_from_slice(library.as_bytes());
    out.extend_from_slice(device.as_bytes());
    out.extend_from_slice(&seq_start.to_le_bytes());
    out.extend_from_slice(&seq_end.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(payload);
    Ok(out)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and checks a header alone (magic, version, length, header checksum, field sanity).
/// Used by `inspect`; it does not look at the payload.
pub fn decode_header(bytes: &[u8]) -> Result<SegmentHeader, SegmentError> {
    if bytes.len() < MAGIC.len() {
        return Err(SegmentError::Truncated { have: bytes.len(), need: HEADER_LEN });
    }
    if bytes[..4] != MAGIC {
        return Err(SegmentError::BadMagic);
    }
    if bytes.len() < 6 {
        return Err(SegmentError::Truncated { have: bytes.len(), need: HEADER_LEN });
    }
    let version = u16_at(bytes, 4);
    if version != FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion(version));
    }
    if bytes.len() < HEADER_LEN {
        return Err(SegmentError::Truncated { have: bytes.len(), need: HEADER_LEN });
    }
    if crc32fast::hash(&bytes[..HEADER_CRC_AT]) != u32_at(bytes, HEADER_CRC_AT) {
        return Err(SegmentError::HeaderChecksum);
    }
    let kind = match bytes[6] {
        0 => SegmentKind::Delta,
        1 => SegmentKind::Snapshot,
        _ => return Err(SegmentError::Malformed("unknown segment kind")),
    };
    if bytes[7] != 0 {
        return Err(SegmentError::Malformed("unknown flags"));
    }
    let engine_raw = &bytes[8..8 + MAX_ENGINE_ID];
    let engine_len = engine_raw.iter().position(|&b| b == 0).unwrap_or(MAX_ENGINE_ID);
    let engine = &engine_raw[..engine_len];
    if engine.is_empty()
        || !engine.iter().all(|b| b.is_ascii_graphic())
        || engine_raw[engine_len..].iter().any(|&b| b != 0)
    {
        return Err(SegmentError::Malformed("bad engine id"));
    }
    let seq_start = u64_at(bytes, 56);
    let seq_end = u64_at(bytes, 64);
    if seq_start > seq_end {
        return Err(SegmentError::Malformed("seq range reversed"));
    }
    Ok(SegmentHeader {
        version,
        kind,
        engine: String::from_utf8_lossy(engine).into_owned(),
        library: LibraryId::from_bytes(bytes[24..40].try_into().expect("16 bytes")),
        device: DeviceId::from_bytes(bytes[40..56].try_into().expect("16 bytes")),
        seq_start,
        seq_end,
        payload_len: u32_at(bytes, 72),
        payload_crc: u32_at(bytes, 76),
    })
}

/// Decodes a whole segment and checks it against `expect`. The payload is returned only when
/// every check passed.
pub fn decode<'a>(bytes: &'a [u8], expect: &Expect<'_>) -> Result<Segment<'a>, SegmentError> {
    let header = decode_header(bytes)?;
    if header.engine != expect.engine {
        return Err(SegmentError::WrongEngine { found: header.engine, expected: expect.engine.to_owned() });
    }
    if header.library != expect.library {
        return Err(SegmentError::WrongLibrary { found: header.library, expected: expect.library });
    }
    if header.payload_len > expect.max_payload {
        return Err(SegmentError::TooLarge { len: header.payload_len as u64, cap: expect.max_payload as u64 });
    }
    let need = HEADER_LEN + header.payload_len as usize;
    if bytes.len() < need {
        return Err(SegmentError::Truncated { have: bytes.len(), need });
    }
    if bytes.len() > need {
        return Err(SegmentError::TrailingBytes(bytes.len() - need));
    }
    let payload = &bytes[HEADER_LEN..];
    if crc32fast::hash(payload) != header.payload_crc {
        return Err(SegmentError::PayloadChecksum);
    }
    Ok(Segment { header, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> (LibraryId, DeviceId, Vec<u8>) {
        let lib = LibraryId::random();
        let dev = DeviceId::random();
        (lib, dev, encode(SegmentKind::Delta, "yrs", lib, dev, 3, 3, b"payload bytes").unwrap())
    }

    fn expect(lib: LibraryId) -> Expect<'static> {
        Expect { library: lib, engine: "yrs", max_payload: DEFAULT_MAX_PAYLOAD }
    }

    #[test]
    fn round_trip() {
        let (lib, dev, bytes) = sample();
        assert_eq!(bytes.len(), HEADER_LEN + 13);
        let seg = decode(&bytes, &expect(lib)).unwrap();
        assert_eq!(seg.payload, b"payload bytes");
        assert_eq!(seg.header.device, dev);
        assert_eq!((seg.header.seq_start, seg.header.seq_end), (3, 3));
        assert_eq!(seg.header.kind, SegmentKind::Delta);
    }

    #[test]
    fn each_defect_has_its_own_error() {
        let (lib, _, bytes) = sample();
        let e = expect(lib);
        assert!(matches!(decode(&[], &e), Err(SegmentError::Truncated { .. })));
        assert!(matches!(decode(&bytes[..40], &e), Err(SegmentError::Truncated { .. })));
        assert!(matches!(decode(&bytes[..bytes.len() - 1], &e), Err(SegmentError::Truncated { .. })));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(decode(&long, &e), Err(SegmentError::TrailingBytes(1))));
        assert!(matches!(decode(b"{\"json\": true}", &e), Err(SegmentError::BadMagic)));
        let mut v = bytes.clone();
        v[4] = 9;
        assert!(matches!(decode(&v, &e), Err(SegmentError::UnsupportedVersion(9))));
        let mut h = bytes.clone();
        h[58] ^= 1;
        assert!(matches!(decode(&h, &e), Err(SegmentError::HeaderChecksum)));
        let mut p = bytes.clone();
        *p.last_mut().unwrap() ^= 1;
        assert!(matches!(decode(&p, &e), Err(SegmentError::PayloadChecksum)));
        let other = Expect { library: LibraryId::random(), ..e.clone() };
        assert!(matches!(decode(&bytes, &other), Err(SegmentError::WrongLibrary { .. })));
        let auto = Expect { engine: "automerge", ..e.clone() };
        assert!(matches!(decode(&bytes, &auto), Err(SegmentError::WrongEngine { .. })));
        let small = Expect { max_payload: 4, ..e };
        assert!(matches!(decode(&bytes, &small), Err(SegmentError::TooLarge { .. })));
    }

    #[test]
    fn huge_declared_length_is_rejected_without_allocating() {
        let (lib, dev, _) = sample();
        let mut bytes = encode(SegmentKind::Delta, "yrs", lib, dev, 1, 1, b"").unwrap();
        bytes[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..HEADER_CRC_AT]);
        bytes[HEADER_CRC_AT..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(decode(&bytes, &expect(lib)), Err(SegmentError::TooLarge { .. })));
    }

    #[test]
    fn encode_rejects_bad_arguments() {
        let (lib, dev, _) = sample();
        assert!(encode(SegmentKind::Delta, "", lib, dev, 1, 1, b"").is_err());
        assert!(encode(SegmentKind::Delta, "seventeen-chars-x", lib, dev, 1, 1, b"").is_err());
        assert!(encode(SegmentKind::Delta, "yrs", lib, dev, 2, 1, b"").is_err());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes, &expect(LibraryId::random()));
        }

        #[test]
        fn any_single_bit_flip_is_detected(at in 0usize..(HEADER_LEN + 13), bit in 0u8..8) {
            let (lib, _, mut bytes) = sample();
            bytes[at] ^= 1 << bit;
            prop_assert!(decode(&bytes, &expect(lib)).is_err());
        }
    }
}
