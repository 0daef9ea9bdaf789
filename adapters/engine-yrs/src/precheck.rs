//! A cheap structural check of lib0 v1 update bytes, run before they reach yrs' decoder.
//!
//! It walks the bytes exactly as yrs 0.28 `Update::decode_v1` does (same field order, same
//! var-int rules, same content and type refs) but allocates nothing. It rejects an input when:
//!
//! - a declared count (clients, blocks, `Any` array / map entries, JSON strings) is larger than
//!   the bytes left could hold — yrs `try_reserve`s such counts *before* reading the entries,
//!   and a `HashMap` reservation writes its control bytes, so a 4-byte input can make yrs touch
//!   hundreds of MiB (see the crate docs);
//! - `Any` values nest deeper than [`MAX_ANY_DEPTH`] — yrs decodes them recursively and a deep
//!   enough nesting overflows the stack, which aborts the process (no `catch_unwind` helps);
//! - a client id does not fit in 53 bits, a var-int is too long for its type, or a clock range
//!   overflows `u32` — yrs panics on these in debug builds (and wraps in release);
//! - the bytes end early or hold a tag yrs does not know (yrs would fail too).
//!
//! Everything this check rejects, yrs would reject (or panic on, or abort on) as well, except
//! deeply nested `Any` values, which no OneFolder writer produces. What it accepts still goes
//! through yrs' own decoder, which has the final word. Trailing bytes are ignored, as yrs does.

use std::fmt;

/// Deepest nesting of `Any` arrays / maps accepted (OneFolder writes at most 1).
pub(crate) const MAX_ANY_DEPTH: usize = 64;

/// Largest client id: Yjs client ids are 53-bit (JavaScript safe integers).
const MAX_CLIENT: u64 = (1 << 53) - 1;

/// Why [`check_update_v1`] rejected an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrecheckError {
    /// Byte offset where the problem was found.
    pub(crate) offset: usize,
    /// What is wrong.
    pub(crate) reason: &'static str,
}

impl fmt::Display for PrecheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Walks `bytes` as a lib0 v1 update; see the module docs for what is rejected.
pub(crate) fn check_update_v1(bytes: &[u8]) -> Result<(), PrecheckError> {
    root_names_v1(bytes).map(drop)
}

/// [`check_update_v1`], returning the names of the root types that blocks of the update name
/// as their parent (a block that continues another one inherits its parent and names none).
/// A name may repeat (not twice in a row).
pub(crate) fn root_names_v1(bytes: &[u8]) -> Result<Vec<&[u8]>, PrecheckError> {
    let mut r = Reader { buf: bytes, pos: 0, roots: Vec::new() };
    r.update()?;
    Ok(r.roots)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Root names as found; a record's blocks usually follow each other, so a name that
    /// repeats the previous one is not pushed again.
    roots: Vec<&'a [u8]>,
}

impl Reader<'_> {
    fn err<T>(&self, reason: &'static str) -> Result<T, PrecheckError> {
        Err(PrecheckError { offset: self.pos, reason })
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless `count` entries of at least `min_size` bytes each fit in what is left.
    fn fits(&self, count: u64, min_size: u64, what: &'static str) -> Result<(), PrecheckError> {
        match count.checked_mul(min_size) {
            Some(need) if need <= self.remaining() as u64 => Ok(()),
            _ => self.err(what),
        }
    }

    fn u8(&mut self) -> Result<u8, PrecheckError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err("unexpected end of input"),
        }
    }

    fn skip(&mut self, n: u64) -> Result<(), PrecheckError> {
        if n > self.remaining() as u64 {
            return self.err("length runs past the end of input");
        }
        self.pos += n as usize;
        Ok(())
    }

    /// yrs `read_var_u64`: up to 10 bytes, wrapping shifts.
    fn var_u64(&mut self) -> Result<u64, PrecheckError> {
        let mut num = 0u64;
        let mut len = 0u32;
        loop {
            let b = self.u8()?;
            num |= u64::wrapping_shl(u64::from(b & 0x7f), len);
            len += 7;
            if b < 0x80 {
                return Ok(num);
            }
            if len > 70 {
                return self.err("var-int too long");
            }
        }
    }

    /// yrs `read_var_u32`: the same loop on a `u32` (yrs wraps, for Yjs compatibility).
    fn var_u32(&mut self) -> Result<u32, PrecheckError> {
        let mut num = 0u32;
        let mut len = 0u32;
        loop {
            let b = self.u8()?;
            num |= u32::wrapping_shl(u32::from(b & 0x7f), len);
            len += 7;
            if b < 0x80 {
                return Ok(num);
            }
            if len > 70 {
                return self.err("var-int too long");
            }
        }
    }

    /// yrs `read_var_i64`; rejects the lengths at which yrs would shift past 63 bits (a debug
    /// panic).
    fn var_i64(&mut self) -> Result<(), PrecheckError> {
        let b = self.u8()?;
        if b & 0x80 == 0 {
            return Ok(());
        }
        let mut len = 6u32;
        loop {
            if len >= 64 {
                return self.err("signed var-int too long");
            }
            let b = self.u8()?;
            len += 7;
            if b < 0x80 {
                return Ok(());
            }
        }
    }

    fn client(&mut self) -> Result<u64, PrecheckError> {
        let client = self.var_u64()?;
        if client > MAX_CLIENT {
            return self.err("client id wider than 53 bits");
        }
        Ok(client)
    }

    fn id(&mut self) -> Result<(), PrecheckError> {
        self.client()?;
        self.var_u32()?;
        Ok(())
    }

    /// A length-prefixed buffer or string (UTF-8 validity is left to yrs).
    fn buf(&mut self) -> Result<(), PrecheckError> {
        let len = self.var_u32()?;
        self.skip(u64::from(len))
    }

    fn update(&mut self) -> Result<(), PrecheckError> {
        let clients = self.var_u32()?;
        // Each client section holds at least three var-ints.
        self.fits(u64::from(clients), 3, "client count larger than the input")?;
        for _ in 0..clients {
            let blocks = self.var_u32()?;
            self.client()?;
            let mut clock = self.var_u32()?;
            self.fits(u64::from(blocks), 1, "block count larger than the input")?;
            for _ in 0..blocks {
                let len = self.block()?;
                clock = match clock.checked_add(len) {
                    Some(c) => c,
                    None => return self.err("block clock overflows u32"),
                };
            }
        }
        self.delete_set()
    }

    /// One block; returns a lower bound of its length in clock units.
    fn block(&mut self) -> Result<u32, PrecheckError> {
        const SKIP: u8 = 10;
        const GC: u8 = 0;
        const HAS_ORIGIN: u8 = 0b1000_0000;
        const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
        const HAS_PARENT_SUB: u8 = 0b0010_0000;
        let info = self.u8()?;
        match info {
            SKIP | GC => {
                let len = self.var_u32()?;
                if len == 0 {
                    return self.err("empty block");
                }
                Ok(len)
            }
            info => {
                let cant_copy_parent_info = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0;
                if info & HAS_ORIGIN != 0 {
                    self.id()?;
                }
                if info & HAS_RIGHT_ORIGIN != 0 {
                    self.id()?;
                }
                if cant_copy_parent_info {
                    if self.var_u32()? == 1 {
                        // The parent root name.
                        let len = self.var_u32()?;
                        let start = self.pos;
                        self.skip(u64::from(len))?;
                        let name = &self.buf[start..self.pos];
                        if self.roots.last() != Some(&name) {
                            self.roots.push(name);
                        }
                    } else {
                        self.id()?; // parent item id
                    }
                    if info & HAS_PARENT_SUB != 0 {
                        self.buf()?; // map key
                    }
                }
                self.content(info & 0b1111)
            }
        }
    }

    /// Item content by ref number (yrs `ItemContent::decode`); returns a lower bound of its
    /// length.
    fn content(&mut self, ref_num: u8) -> Result<u32, PrecheckError> {
        match ref_num {
            // Deleted
            1 => self.var_u32(),
            // JSON: yrs reads `len + 1` strings (`while remaining >= 0`)
            2 => {
                let len = self.var_u32()?;
                if len > i32::MAX as u32 {
                    return self.err("JSON count out of range");
                }
                self.fits(u64::from(len) + 1, 1, "JSON count larger than the input")?;
                for _ in 0..=len {
                    self.buf()?;
                }
                Ok(len + 1)
            }
            // Binary, String, Embed
            3..=5 => {
                self.buf()?;
                Ok(0)
            }
            // Format: key + JSON
            6 => {
                self.buf()?;
                self.buf()?;
                Ok(1)
            }
            // Type
            7 => {
                match self.u8()? {
                    // XmlElement carries its tag name.
                    3 => self.buf()?,
                    0..=2 | 4..=6 | 9 | 15 => {}
                    _ => return self.err("unknown type ref"),
                }
                Ok(1)
            }
            // Any
            8 => {
                let len = self.var_u32()?;
                self.fits(u64::from(len), 1, "value count larger than the input")?;
                for _ in 0..len {
                    self.any(0)?;
                }
                Ok(len)
            }
            // Doc: guid + options
            9 => {
                self.buf()?;
                self.any(0)?;
                Ok(1)
            }
            _ => self.err("unknown content ref"),
        }
    }

    /// One lib0 `Any` value (yrs `Any::decode`).
    fn any(&mut self, depth: usize) -> Result<(), PrecheckError> {
        if depth >= MAX_ANY_DEPTH {
            return self.err("values nested too deep");
        }
        match self.u8()? {
            // undefined, null, false, true
            127 | 126 | 121 | 120 => Ok(()),
            125 => self.var_i64(),
            124 => self.skip(4),
            123 | 122 => self.skip(8),
            119 | 116 => self.buf(),
            118 => {
                let len = self.var_u64()?;
                // Each entry is a key (at least its length byte) and a value (at least its tag).
                self.fits(len, 2, "map size larger than the input")?;
                for _ in 0..len {
                    self.buf()?;
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            117 => {
                let len = self.var_u64()?;
                self.fits(len, 1, "array length larger than the input")?;
                for _ in 0..len {
                    self.any(depth + 1)?;
                }
                Ok(())
            }
            _ => self.err("unknown value tag"),
        }
    }

    /// The delete set (yrs `IdSet::decode`).
    fn delete_set(&mut self) -> Result<(), PrecheckError> {
        let clients = self.var_u32()?;
        self.fits(u64::from(clients), 2, "delete-set client count larger than the input")?;
        for _ in 0..clients {
            self.client()?;
            let ranges = self.var_u32()?;
            self.fits(u64::from(ranges), 2, "delete-set range count larger than the input")?;
            for _ in 0..ranges {
                let clock = self.var_u32()?;
                let len = self.var_u32()?;
                if clock.checked_add(len).is_none() {
                    return self.err("delete range overflows u32");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use onefolder_core::{Engine, Op, Value};
    use proptest::prelude::*;
    use yrs::updates::decoder::Decode;

    use super::*;
    use crate::YrsEngine;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            "[a-zé/]{0,6}".prop_map(Value::Str),
            proptest::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bytes),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let coll = prop::sample::select(vec!["files", "tags"]);
        let id = prop::sample::select(vec!["a", "b", "0123456789abcdef0123456789abcdef"]);
        let field = prop::sample::select(vec!["name", "size", "tags"]);
        let member = prop::sample::select(vec!["m1", "m2", ""]);
        (0u8..6, coll, id, field, member, value()).prop_map(|(kind, c, i, f, m, v)| match kind {
            0 => Op::create(c, i),
            1 => Op::delete(c, i),
            2 => Op::put(c, i, f, v),
            3 => Op::clear(c, i, f),
            4 => Op::set_add(c, i, f, m),
            _ => Op::set_remove(c, i, f, m),
        })
    }

    /// Every change, merge and snapshot two engines produce for these batches.
    fn corpus(batches: &[(bool, Vec<Op>)]) -> Vec<Vec<u8>> {
        let mut a = YrsEngine::new();
        let mut b = YrsEngine::new();
        let mut out = Vec::new();
        for (on_a, ops) in batches {
            let (from, to) = if *on_a { (&mut a, &mut b) } else { (&mut b, &mut a) };
            from.write(ops).expect("valid ops");
            if let Some(change) = from.take_local_changes().expect("take") {
                to.apply_remote(&change).expect("apply");
                out.push(change);
            }
        }
        let parts: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
        out.push(a.merge_changes(&parts).expect("merge"));
        out.push(a.snapshot().expect("snapshot"));
        out.push(b.snapshot().expect("snapshot"));
        out
    }

    /// Rejections for which yrs itself returns an error (it panics or allocates on the others).
    fn yrs_fails_too(reason: &str) -> bool {
        matches!(
            reason,
            "unexpected end of input"
                | "length runs past the end of input"
                | "var-int too long"
                | "empty block"
                | "JSON count out of range"
                | "unknown type ref"
                | "unknown content ref"
                | "unknown value tag"
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn valid_updates_pass(batches in proptest::collection::vec((any::<bool>(), proptest::collection::vec(op(), 1..6)), 1..8)) {
            for bytes in corpus(&batches) {
                prop_assert!(yrs::Update::decode_v1(&bytes).is_ok());
                prop_assert_eq!(check_update_v1(&bytes), Ok(()), "{:02x?}", bytes);
            }
        }

        #[test]
        fn rejections_are_yrs_rejections(
            batches in proptest::collection::vec((any::<bool>(), proptest::collection::vec(op(), 1..4)), 1..4),
            which in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let all = corpus(&batches);
            let mut bytes = all[which.index(all.len())].clone();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            if let Err(e) = check_update_v1(&bytes) {
                if yrs_fails_too(e.reason) {
                    let decoded = std::panic::catch_unwind(|| yrs::Update::decode_v1(&bytes).is_ok());
                    prop_assert!(!matches!(decoded, Ok(true)), "pre-check rejected ({}) what yrs accepts: {:02x?}", e, bytes);
                }
            }
        }
    }

    #[test]
    fn empty_update_passes() {
        assert_eq!(check_update_v1(&[0, 0]), Ok(()));
    }

    #[test]
    fn truncated_input_fails() {
        assert!(check_update_v1(&[]).is_err());
        assert!(check_update_v1(&[0]).is_err());
    }

    #[test]
    fn huge_client_count_fails_before_reading_entries() {
        // 0xff 0xff 0xff 0x0f declares 2^32 - 1 clients in four bytes.
        let err = check_update_v1(&[0xff, 0xff, 0xff, 0x0f]).unwrap_err();
        assert_eq!(err.reason, "client count larger than the input");
    }

    #[test]
    fn huge_any_map_fails() {
        // One client, one block at clock 0 of client 1: an Any item (ref 8) under root "m",
        // holding one map value that declares 2^28 entries.
        let bytes = [1, 1, 1, 0, 8, 1, 1, b'm', 1, 118, 0x80, 0x80, 0x80, 0x80, 0x01, 0];
        let err = check_update_v1(&bytes).unwrap_err();
        assert_eq!(err.reason, "map size larger than the input");
    }

    #[test]
    fn deep_nesting_fails() {
        let mut bytes = vec![1, 1, 1, 0, 8, 1, 1, b'm', 1];
        for _ in 0..10_000 {
            bytes.extend_from_slice(&[117, 1]);
        }
        bytes.push(126);
        bytes.push(0);
        let err = check_update_v1(&bytes).unwrap_err();
        assert_eq!(err.reason, "values nested too deep");
    }

    #[test]
    fn wide_client_id_fails() {
        // client id 2^53 (8 var-int bytes)
        let mut bytes = vec![1, 0];
        let mut v: u64 = 1 << 53;
        while v >= 0x80 {
            bytes.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        bytes.push(v as u8);
        bytes.extend_from_slice(&[0, 0]);
        let err = check_update_v1(&bytes).unwrap_err();
        assert_eq!(err.reason, "client id wider than 53 bits");
    }
}
