//! Checking untrusted bytes completely before any of them reaches the document.
//!
//! automerge bytes are a sequence of *chunks*, each `85 6f 4a 83` (magic), a 4-byte checksum
//! (the first bytes of the chunk's SHA-256), a type byte (0 document, 1 change, 2 compressed
//! change, 3 bundle), a LEB128 length and the body. automerge 0.12's own
//! `load_incremental` stops at the first bad chunk, *keeps* the chunks before it and returns
//! `Ok` (it only logs a warning), and on a document with no changes yet it takes whatever
//! prefix loads as the whole document. So [`parse`] does the whole job up front:
//!
//! 1. it splits the input into chunks itself (magic, known type, length within the input), so a
//!    truncated or padded input is rejected as a whole;
//! 2. a change chunk goes through `Change::try_from`, which decodes and checks every op; its
//!    checksum is compared with the change hash (`try_from` does not), and every op must be one
//!    this adapter writes (see [`check_ops`]);
//! 3. a document chunk (a snapshot) is loaded on its own with `Automerge::load_with_options`,
//!    failing on any partial load and verifying the heads against the content;
//! 4. compressed-change and bundle chunks are rejected: this adapter never writes them (it
//!    sends `Change::raw_bytes`), and a compressed chunk is inflated without a size limit.
//!
//! Everything runs under `catch_unwind`. Only when every chunk passed does the caller touch its
//! document.

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{ActorId, Automerge, Change, ChangeHash, LoadOptions, OnPartialLoad, VerificationMode};

/// The four bytes every automerge chunk starts with.
pub const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Magic, checksum and type.
const FIXED_HEADER: usize = 9;

/// Chunk type bytes.
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;
const BUNDLE: u8 = 3;

/// Largest op counter accepted (2^31). automerge 0.12 keeps counters in 32 bits in places: a
/// change whose ops end near 2^32 applies, and every later local change then panics. No real
/// document comes near this.
pub(crate) const MAX_COUNTER: u64 = 1 << 31;

/// Input that passed every check, ready to integrate.
pub(crate) struct Parsed {
    /// Documents (snapshots), loaded.
    pub(crate) documents: Vec<Automerge>,
    /// The raw bytes of each document chunk, parallel to `documents`.
    pub(crate) document_bytes: Vec<Vec<u8>>,
    /// Changes, deduplicated by hash, in input order.
    pub(crate) changes: Vec<ParsedChange>,
}

/// One checked change chunk.
#[derive(Clone)]
pub(crate) struct ParsedChange {
    /// The decoded change.
    pub(crate) change: Change,
    /// Its chunk, as received.
    pub(crate) bytes: Vec<u8>,
    /// The ops its ops overwrite or delete, as (counter, actor).
    pub(crate) preds: Vec<(u64, ActorId)>,
    /// The root-map keys its ops write or delete.
    pub(crate) keys: Vec<String>,
}

/// One chunk of the input: its type byte and all its bytes (header included).
struct RawChunk<'a> {
    kind: u8,
    bytes: &'a [u8],
}

/// Splits `bytes` into chunks without decoding them.
fn split(bytes: &[u8]) -> Result<Vec<RawChunk<'_>>, String> {
    let mut chunks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < FIXED_HEADER {
            return Err(format!("{} stray bytes at offset {at}", rest.len()));
        }
        if rest[..4] != MAGIC {
            return Err(format!("no automerge chunk at offset {at} (magic {:02x?})", &rest[..4]));
        }
        let kind = rest[8];
        if kind > BUNDLE {
            return Err(format!("unknown chunk type {kind} at offset {at}"));
        }
        let (len, len_size) =
            read_uleb(&rest[FIXED_HEADER..]).ok_or_else(|| format!("bad chunk length at offset {at}"))?;
        let header = FIXED_HEADER + len_size;
        let available = (rest.len() - header) as u64;
        if len > available {
            return Err(format!("chunk at offset {at} declares {len} bytes, {available} left"));
        }
        let end = header + len as usize;
        chunks.push(RawChunk { kind, bytes: &rest[..end] });
        at += end;
    }
    Ok(chunks)
}

/// A LEB128 `u64` and the bytes it took; `None` when it is cut short, longer than 10 bytes or
/// overflows.
fn read_uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && part > 1 {
            return None;
        }
        value |= part << shift;
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// An op that an op overwrites or deletes, as (counter, actor).
type Pred = (u64, ActorId);

/// Fails unless every op of `change` is one this adapter writes: a `put` of a scalar or a
/// `delete`, of a string key of the root map.
///
/// automerge 0.12 applies a batch of changes by first recording every change in its history
/// and then merging their ops into each object they touch; an op on an object the document
/// does not have makes it panic half-way (`Obj … Missing from Index`), after the history was
/// updated. A document this adapter writes has no object but the root, so nothing else is
/// accepted. Returns the preds of every op, as (counter, actor), and the keys the ops touch.
fn check_ops(change: &Change) -> Result<(Vec<Pred>, Vec<String>), String> {
    let mut preds = Vec::new();
    let mut keys = Vec::new();
    for op in change.decode().operations {
        let Key::Map(key) = &op.key else {
            return Err("an op outside the root map".to_owned());
        };
        if op.obj != ObjectId::Root || op.insert {
            return Err("an op outside the root map".to_owned());
        }
        match op.action {
            OpType::Put(_) | OpType::Delete => {}
            other => return Err(format!("an op this engine never writes ({other:?})")),
        }
        keys.push(key.to_string());
        preds.extend(op.pred.iter().map(|id| (id.0, id.1.clone())));
    }
    Ok((preds, keys))
}

/// Decodes one change chunk and checks its checksum, counters and ops.
fn parse_change(bytes: &[u8]) -> Result<ParsedChange, String> {
    let change = Change::try_from(bytes).map_err(|e| e.to_string())?;
    // The header checksum is the start of the SHA-256 the hash is; `try_from` does not compare.
    if change.hash().0[..4] != bytes[4..8] {
        return Err("change checksum mismatch".to_owned());
    }
    if change.start_op().get() + change.len() as u64 > MAX_COUNTER {
        return Err(format!("op counters beyond {MAX_COUNTER}"));
    }
    let (preds, keys) = check_ops(&change)?;
    Ok(ParsedChange { change, bytes: bytes.to_vec(), preds, keys })
}

/// Loads one document chunk strictly; its op counters must stay below [`MAX_COUNTER`].
fn parse_document(bytes: &[u8]) -> Result<Automerge, String> {
    let options = LoadOptions::new().on_partial_load(OnPartialLoad::Error).verification_mode(VerificationMode::Check);
    let doc = Automerge::load_with_options(bytes, options).map_err(|e| e.to_string())?;
    // Every change is an ancestor of a head, and counters grow along dependencies.
    let max_op = doc.get_heads().iter().filter_map(|h| doc.get_change_meta_by_hash(h)).map(|m| m.max_op).max();
    if max_op.is_some_and(|m| m >= MAX_COUNTER) {
        return Err(format!("op counters beyond {MAX_COUNTER}"));
    }
    Ok(doc)
}

/// Checks and decodes `bytes` (a change, a merge of changes, a snapshot, or any concatenation of
/// them). An empty input is a valid empty sequence of chunks.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let chunks = split(bytes)?;
    let mut parsed = Parsed { documents: Vec::new(), document_bytes: Vec::new(), changes: Vec::new() };
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| match chunk.kind {
            DOCUMENT => parse_document(chunk.bytes).map(|doc| {
                parsed.documents.push(doc);
                parsed.document_bytes.push(chunk.bytes.to_vec());
            }),
            CHANGE => parse_change(chunk.bytes).map(|change| {
                if seen.insert(change.change.hash()) {
                    parsed.changes.push(change);
                }
            }),
            COMPRESSED_CHANGE => Err("compressed change chunks are not accepted".to_owned()),
            _ => Err("bundle chunks are not accepted".to_owned()),
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("chunk {i} (type {}): {e}", chunk.kind)),
            Err(panic) => {
                return Err(format!("chunk {i} (type {}): automerge panicked: {}", chunk.kind, panic_message(&*panic)));
            }
        }
    }
    Ok(parsed)
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uleb() {
        assert_eq!(read_uleb(&[0]), Some((0, 1)));
        assert_eq!(read_uleb(&[0x7f]), Some((127, 1)));
        assert_eq!(read_uleb(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(read_uleb(&[0x80]), None);
        assert_eq!(read_uleb(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), Some((u64::MAX, 10)));
        assert_eq!(read_uleb(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
        assert_eq!(read_uleb(&[0x80; 11]), None);
    }

    #[test]
    fn split_checks_framing() {
        assert!(split(&[]).unwrap().is_empty());
        let mut one = MAGIC.to_vec();
        one.extend_from_slice(&[0, 0, 0, 0, CHANGE, 2, 7, 7]);
        let chunks = split(&one).unwrap();
        assert_eq!((chunks.len(), chunks[0].kind, chunks[0].bytes.len()), (1, CHANGE, 12));
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(split(&two).unwrap().len(), 2);
        assert!(split(&one[..11]).is_err(), "truncated body");
        assert!(split(&[&one[..], &[0]].concat()).is_err(), "a stray byte");
        let mut bad_type = one.clone();
        bad_type[8] = 4;
        assert!(split(&bad_type).is_err());
        assert!(split(b"OFSG\x01\x00\x00\x00\x00\x00").is_err());
    }
}
