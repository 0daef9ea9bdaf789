//! Where a record lives in the document, and how a [`Value`] is stored as an automerge scalar.
//!
//! Every entry is a key of the automerge **root map**; see the crate docs for why. Keys are
//! built from a one-letter kind and the names, joined with [`SEPARATOR`]:
//!
//! | key | value |
//! |---|---|
//! | `i/<collection>/<id>` | `true`: the record exists (the collection index) |
//! | `f/<collection>/<id>/<field>` | a scalar field |
//! | `s/<collection>/<id>/<field>/<member>` | any scalar: `member` is in the set `field` |
//!
//! Collection names, record ids and field names never contain the separator (checked by
//! [`check_name`]), so the prefix of a record (`f/<collection>/<id>/`) or of a collection
//! (`f/<collection>/`) holds exactly its entries, and the root map — ordered by key — reads it
//! with one range scan from the prefix up to [`prefix_end`]. A set member is the last part of
//! its key and may be any string.
//!
//! Record ids and set members are written *packed* ([`pack`]): OneFolder's ids are 32 lowercase
//! hex digits (16 hashed bytes), which take 23 characters as `~` + unpadded base64url instead of
//! 32. A tag assignment holds two ids, so this saves 18 of the ~80 bytes of its key — about a
//! tenth of the change. Any other string is kept as it is, except that a leading `~` is doubled,
//! so the mapping is one to one and [`unpack`] restores every name exactly.
//!
//! Scalars map one to one: `Null` ↔ null, `Bool` ↔ boolean, `Int` ↔ int, `Float` ↔ f64,
//! `Str` ↔ str, `Bytes` ↔ bytes. automerge keeps int and f64 apart on the wire and stores an
//! f64 as its 8 IEEE-754 bytes, so kinds and bits (`-0.0`, NaN) survive.

use std::borrow::Cow;

use automerge::{ScalarValue, ScalarValueRef, Value as AmValue, ValueRef};
use onefolder_core::{EngineError, Value};

/// Joins the parts of a root-map key.
pub const SEPARATOR: char = '/';

/// Kind letter of index entries.
const INDEX: &str = "i";
/// Kind letter of field entries.
const FIELD: &str = "f";
/// Kind letter of set-member entries.
const MEMBER: &str = "s";

/// First character of a packed name (and, doubled, of a name that starts with it).
const PACKED: char = '~';
/// The base64url alphabet (RFC 4648 §5); it holds neither [`SEPARATOR`] nor [`PACKED`].
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Length of 16 bytes in unpadded base64.
const PACKED_LEN: usize = 22;

/// What a field entry holds, as read back.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    /// A scalar field.
    Scalar(Value),
    /// Something no OneFolder writer stores (an object, a counter, a timestamp, …).
    Unsupported,
}

/// A name as written in a key: 32 lowercase hex digits become `~` + 22 base64url characters,
/// a name starting with `~` gets a second one, anything else is unchanged.
pub(crate) fn pack(name: &str) -> Cow<'_, str> {
    if let Some(bytes) = hex32(name) {
        let mut out = String::with_capacity(1 + PACKED_LEN);
        out.push(PACKED);
        out.push_str(&base64url(&bytes));
        Cow::Owned(out)
    } else if name.starts_with(PACKED) {
        Cow::Owned(format!("{PACKED}{name}"))
    } else {
        Cow::Borrowed(name)
    }
}

/// The name a key part was [`pack`]ed from.
pub(crate) fn unpack(part: &str) -> Cow<'_, str> {
    if let Some(rest) = part.strip_prefix(PACKED) {
        if rest.starts_with(PACKED) {
            return Cow::Borrowed(rest);
        }
        if let Some(bytes) = unbase64url(rest) {
            return Cow::Owned(bytes.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
    // Not something `pack` writes (only another writer could have); taken as it is.
    Cow::Borrowed(part)
}

/// The 16 bytes of 32 lowercase hex digits.
fn hex32(name: &str) -> Option<[u8; 16]> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let raw = name.as_bytes();
    if raw.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in raw.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Unpadded base64url of 16 bytes.
fn base64url(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(PACKED_LEN);
    let mut bits = 0u32;
    let mut held = 0u32;
    for &b in bytes {
        bits = bits << 8 | u32::from(b);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(BASE64URL[(bits >> held & 0x3f) as usize] as char);
        }
    }
    out.push(BASE64URL[(bits << (6 - held) & 0x3f) as usize] as char);
    out
}

/// The 16 bytes of a canonical [`base64url`] string.
fn unbase64url(text: &str) -> Option<[u8; 16]> {
    if text.len() != PACKED_LEN {
        return None;
    }
    let mut out = [0u8; 16];
    let mut bits = 0u32;
    let mut held = 0u32;
    let mut n = 0;
    for c in text.bytes() {
        let v = BASE64URL.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6 | v) & 0xfff;
        held += 6;
        if held >= 8 {
            held -= 8;
            out[n] = (bits >> held) as u8;
            n += 1;
        }
    }
    // 22 characters hold 132 bits; the last 4 must be zero, or the text is not canonical.
    (bits & ((1 << held) - 1) == 0).then_some(out)
}

/// `i/<collection>/<id>`.
pub(crate) fn index_key(collection: &str, id: &str) -> String {
    format!("{INDEX}{SEPARATOR}{collection}{SEPARATOR}{}", pack(id))
}

/// `i/<collection>/`: every index entry of a collection.
pub(crate) fn index_prefix(collection: &str) -> String {
    format!("{INDEX}{SEPARATOR}{collection}{SEPARATOR}")
}

/// `f/<collection>/<id>/<field>`.
pub(crate) fn field_key(collection: &str, id: &str, field: &str) -> String {
    format!("{FIELD}{SEPARATOR}{collection}{SEPARATOR}{}{SEPARATOR}{field}", pack(id))
}

/// `f/<collection>/<id>/`: every field of a record.
pub(crate) fn record_fields_prefix(collection: &str, id: &str) -> String {
    format!("{FIELD}{SEPARATOR}{collection}{SEPARATOR}{}{SEPARATOR}", pack(id))
}

/// `f/<collection>/`: every field of every record of a collection.
pub(crate) fn collection_fields_prefix(collection: &str) -> String {
    format!("{FIELD}{SEPARATOR}{collection}{SEPARATOR}")
}

/// `s/<collection>/<id>/<field>/<member>`.
pub(crate) fn member_key(collection: &str, id: &str, field: &str, member: &str) -> String {
    format!("{MEMBER}{SEPARATOR}{collection}{SEPARATOR}{}{SEPARATOR}{field}{SEPARATOR}{}", pack(id), pack(member))
}

/// `s/<collection>/<id>/<field>/`: every member of one set field.
pub(crate) fn members_prefix(collection: &str, id: &str, field: &str) -> String {
    format!("{MEMBER}{SEPARATOR}{collection}{SEPARATOR}{}{SEPARATOR}{field}{SEPARATOR}", pack(id))
}

/// `s/<collection>/<id>/`: every member of every set field of a record.
pub(crate) fn record_members_prefix(collection: &str, id: &str) -> String {
    format!("{MEMBER}{SEPARATOR}{collection}{SEPARATOR}{}{SEPARATOR}", pack(id))
}

/// `s/<collection>/`: every member of every set of a collection.
pub(crate) fn collection_members_prefix(collection: &str) -> String {
    format!("{MEMBER}{SEPARATOR}{collection}{SEPARATOR}")
}

/// The record (collection, id) a root-map key of any kind belongs to; `None` for a key this
/// layout never writes.
pub(crate) fn record_of_key(key: &str) -> Option<(String, String)> {
    let mut parts = key.splitn(4, SEPARATOR);
    let kind = parts.next()?;
    let (collection, id) = (parts.next()?, parts.next()?);
    let rest = parts.next();
    let complete = match kind {
        INDEX => rest.is_none(),
        FIELD | MEMBER => rest.is_some(),
        _ => false,
    };
    complete.then(|| (collection.to_owned(), unpack(id).into_owned()))
}

/// The smallest string greater than every string starting with `prefix`, which ends with
/// [`SEPARATOR`]: the separator is replaced by the next character (`'/'` → `'0'`).
pub(crate) fn prefix_end(prefix: &str) -> String {
    let stem = prefix.strip_suffix(SEPARATOR).expect("prefixes end with the separator");
    let next = char::from_u32(SEPARATOR as u32 + 1).expect("the separator is not the last char");
    format!("{stem}{next}")
}

/// Fails unless `name` is a non-empty string without [`SEPARATOR`].
pub(crate) fn check_name(kind: &str, name: &str) -> Result<(), EngineError> {
    if name.is_empty() {
        return Err(EngineError::InvalidOp(format!("empty {kind}")));
    }
    if name.contains(SEPARATOR) {
        return Err(EngineError::InvalidOp(format!("{kind} {name:?} contains {SEPARATOR:?}")));
    }
    Ok(())
}

/// The automerge value of a scalar; `None` for [`Value::Set`].
pub(crate) fn encode_scalar(value: &Value) -> Option<ScalarValue> {
    Some(match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Int(i) => ScalarValue::Int(*i),
        Value::Float(f) => ScalarValue::F64(*f),
        Value::Str(s) => ScalarValue::Str(s.as_str().into()),
        Value::Bytes(b) => ScalarValue::Bytes(b.clone()),
        Value::Set(_) => return None,
    })
}

/// The value of the index entry of an existing record.
pub(crate) fn exists() -> ScalarValue {
    ScalarValue::Boolean(true)
}

/// A member value that differs from every value in `current` (the values the member's key
/// holds now, conflicts included).
///
/// automerge writes nothing for a `put` of the value a key already holds, and for a `put` of the
/// winning value of a conflict it only deletes the losers. Either way no *new* entry would
/// exist, and a concurrent remove (which deletes the entries it saw) would win over the add.
/// A value nobody holds yet always makes a new entry, so the add survives the remove.
pub(crate) fn fresh_member_value(current: &[AmValue<'_>]) -> ScalarValue {
    if current.is_empty() {
        return exists();
    }
    let next = current
        .iter()
        .filter_map(|v| match v {
            AmValue::Scalar(s) => match s.as_ref() {
                ScalarValue::Uint(n) => Some(n.saturating_add(1)),
                _ => None,
            },
            AmValue::Object(_) => None,
        })
        .max()
        .unwrap_or(0);
    ScalarValue::Uint(next)
}

/// Whether writing `new` over `old` changes nothing: the same kind and, for floats, the same
/// bits (so `-0.0` over `0.0` is a change, and NaN over the same NaN is not).
pub(crate) fn same_value(old: &Value, new: &Value) -> bool {
    match (old, new) {
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        _ => old == new,
    }
}

/// Reads a field entry (from [`automerge::ReadDoc::get`]).
pub(crate) fn decode_value(value: &AmValue<'_>) -> Stored {
    match value {
        AmValue::Object(_) => Stored::Unsupported,
        AmValue::Scalar(s) => decode_owned(s.as_ref()),
    }
}

fn decode_owned(s: &ScalarValue) -> Stored {
    Stored::Scalar(match s {
        ScalarValue::Null => Value::Null,
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Int(i) => Value::Int(*i),
        ScalarValue::F64(f) => Value::Float(*f),
        ScalarValue::Str(s) => Value::Str(s.to_string()),
        ScalarValue::Bytes(b) => Value::Bytes(b.clone()),
        _ => return Stored::Unsupported,
    })
}

/// Reads a field entry (from [`automerge::ReadDoc::map_range`]).
pub(crate) fn decode_ref(value: &ValueRef<'_>) -> Stored {
    let ValueRef::Scalar(s) = value else {
        return Stored::Unsupported;
    };
    Stored::Scalar(match s {
        ScalarValueRef::Null => Value::Null,
        ScalarValueRef::Boolean(b) => Value::Bool(*b),
        ScalarValueRef::Int(i) => Value::Int(*i),
        ScalarValueRef::F64(f) => Value::Float(*f),
        ScalarValueRef::Str(s) => Value::Str(s.to_string()),
        ScalarValueRef::Bytes(b) => Value::Bytes(b.to_vec()),
        _ => return Stored::Unsupported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn prefixes_bound_exactly_their_keys() {
        let prefix = record_fields_prefix("files", "f1");
        let end = prefix_end(&prefix);
        assert_eq!(prefix, "f/files/f1/");
        assert_eq!(end, "f/files/f10");
        for inside in [field_key("files", "f1", "name"), field_key("files", "f1", "~")] {
            assert!(prefix <= inside && inside < end, "{inside}");
        }
        // Another record whose id extends this one, another kind, a packed id.
        for outside in [
            field_key("files", "f10", "name"),
            field_key("files", "f1.x", "a"),
            index_key("files", "f1"),
            field_key("files", HEX, "a"),
        ] {
            assert!(!(prefix <= outside && outside < end), "{outside}");
        }
        assert_eq!(member_key("tags", "t", "sub", "a/b"), "s/tags/t/sub/a/b");
        assert!(member_key("tags", "t", "sub", "x").starts_with(&members_prefix("tags", "t", "sub")));
        assert!(member_key("tags", "t", "sub", "x").starts_with(&record_members_prefix("tags", "t")));
        assert!(member_key("tags", "t", "sub", "x").starts_with(&collection_members_prefix("tags")));
        assert!(index_key("tags", "t").starts_with(&index_prefix("tags")));
        assert!(field_key("tags", "t", "n").starts_with(&collection_fields_prefix("tags")));
    }

    #[test]
    fn hex_ids_are_packed() {
        let key = member_key("files", HEX, "tags", "fedcba9876543210fedcba9876543210");
        assert_eq!(key, "s/files/~ASNFZ4mrze8BI0VniavN7w/tags/~_ty6mHZUMhD-3LqYdlQyEA");
        assert_eq!(key.len(), 60);
        assert_eq!(pack(HEX).len(), 23);
        assert_eq!(unpack("~ASNFZ4mrze8BI0VniavN7w"), HEX);
    }

    #[test]
    fn pack_is_one_to_one() {
        let names = [
            HEX,
            "00000000000000000000000000000000",
            "ffffffffffffffffffffffffffffffff",
            "0123456789ABCDEF0123456789ABCDEF", // upper case: kept as it is
            "0123456789abcdef0123456789abcde",  // 31 digits
            "0123456789abcdef0123456789abcdef0",
            "g123456789abcdef0123456789abcdef",
            "",
            "~",
            "~~",
            "~ASNFZ4mrze8BI0VniavN7w", // looks packed: must not unpack to HEX
            "~ASNFZ4mrze8BI0VniavN7x", // not canonical base64
            "plain",
            "a/b",
            "héllo",
        ];
        let mut packed = std::collections::HashSet::new();
        for name in names {
            let p = pack(name);
            assert_eq!(unpack(&p), name, "{name:?} packed as {p:?}");
            assert!(!p.contains(SEPARATOR) || name.contains(SEPARATOR), "{name:?}");
            assert!(packed.insert(p.into_owned()), "{name:?} collides");
        }
        // Every 16-byte value survives (walk the bit positions).
        for bit in 0..128 {
            let mut bytes = [0u8; 16];
            bytes[bit / 8] = 0x80 >> (bit % 8);
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(unpack(&pack(&hex)), hex);
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("id", "abc").is_ok());
        assert!(matches!(check_name("id", ""), Err(EngineError::InvalidOp(_))));
        assert!(matches!(check_name("id", "a/b"), Err(EngineError::InvalidOp(_))));
    }

    #[test]
    fn scalars_round_trip_in_memory() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::Float(-0.0),
            Value::Str("x".into()),
            Value::Bytes(vec![0, 255]),
        ] {
            let stored = encode_scalar(&v).expect("a scalar");
            let read = decode_value(&AmValue::Scalar(Cow::Owned(stored)));
            match read {
                Stored::Scalar(got) => assert!(same_value(&got, &v), "{v:?} read as {got:?}"),
                other => panic!("{v:?} read as {other:?}"),
            }
        }
        assert_eq!(encode_scalar(&Value::Set(Default::default())), None);
        assert_eq!(decode_value(&AmValue::Scalar(Cow::Owned(ScalarValue::Timestamp(1)))), Stored::Unsupported);
        assert_eq!(decode_value(&AmValue::Scalar(Cow::Owned(ScalarValue::Uint(1)))), Stored::Unsupported);
    }

    #[test]
    fn fresh_member_values_differ_from_the_current_ones() {
        assert_eq!(fresh_member_value(&[]), exists());
        let one = [AmValue::Scalar(Cow::Owned(exists()))];
        assert_eq!(fresh_member_value(&one), ScalarValue::Uint(0));
        let two =
            [AmValue::Scalar(Cow::Owned(ScalarValue::Uint(0))), AmValue::Scalar(Cow::Owned(ScalarValue::Uint(4)))];
        assert_eq!(fresh_member_value(&two), ScalarValue::Uint(5));
    }
}
