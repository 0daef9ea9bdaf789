//! How a [`Value`] is stored as a yrs [`Any`], and read back.
//!
//! lib0 (the Yjs binary format) has one number type: yrs 0.28 writes an `i64` as a var-int
//! only when it fits 31 bits, otherwise as a float32/float64 (or a bigint when no float holds it
//! exactly), and a peer decodes those floats as `Number::Float`. An `f64` with an integral
//! value is written the same way. So the number type does not survive the wire on its own:
//!
//! - [`Value::Int`] is stored as a plain number (what a JavaScript client expects for sizes and
//!   millisecond timestamps). On read, a number with an integral value in the `i64` range is an
//!   `Int`.
//! - [`Value::Float`] is stored as a plain number when its value is *not* integral in that
//!   range (1.5, NaN, ±inf, 1e300). An integral float (3.0, -0.0, 1e18) is stored tagged, as the
//!   array `["f64", 3.0]`, so it reads back as a `Float`. JavaScript Yjs reads it the same way
//!   but holds the number as a JavaScript number, and when Yjs encodes the record again (its own
//!   snapshot) lib0 writes a small integral number as a var-int, which yrs decodes as an
//!   integer: the tag still makes it a `Float`. Only `-0.0` changes: lib0 writes it as a
//!   "negative zero" var-int, which yrs decodes as the integer 0, so after a JavaScript client
//!   re-encoded it, it reads back as `0.0`. (`cargo xtask interop` checks `-0.0` from yrs to Yjs,
//!   the others both ways.)
//!
//! Other values map directly: `Null` ↔ null (undefined also reads as `Null`), `Bool` ↔ bool,
//! `Str` ↔ string, `Bytes` ↔ `Uint8Array`. [`Value`] has no maps, so a map (or any nested type)
//! in a record map was written by another client and is skipped on read.

use std::sync::Arc;

use onefolder_core::Value;
use yrs::{Any, Number};

/// First element of a tagged integral float.
const FLOAT_TAG: &str = "f64";
/// 2^63 as an `f64`: the `i64` range is `[-2^63, 2^63)`; 2^63 itself is included because yrs
/// writes `i64::MAX` as the float32 2^63 (it checks `(n as f32) as i64 == n`, which saturates).
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// What a record-map entry holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stored {
    /// A scalar field.
    Scalar(Value),
    /// Something no OneFolder writer stores (e.g. a nested type written by another client).
    Unsupported,
}

/// Whether a float is stored tagged: it would read back as an `Int` otherwise.
fn is_integral_in_i64_range(f: f64) -> bool {
    f.fract() == 0.0 && (-TWO_POW_63..=TWO_POW_63).contains(&f)
}

/// The yrs value for a scalar; `None` for [`Value::Set`].
pub(crate) fn encode_scalar(value: &Value) -> Option<Any> {
    Some(match value {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Int(i) => Any::Number(Number::Int(*i)),
        Value::Float(f) if is_integral_in_i64_range(*f) => {
            Any::Array(Arc::from([Any::String(Arc::from(FLOAT_TAG)), Any::Number(Number::Float(*f))]))
        }
        Value::Float(f) => Any::Number(Number::Float(*f)),
        Value::Str(s) => Any::String(Arc::from(s.as_str())),
        Value::Bytes(b) => Any::Buffer(Arc::from(b.as_slice())),
        Value::Set(_) => return None,
    })
}

/// Reads a record-map entry.
pub(crate) fn decode_stored(any: &Any) -> Stored {
    Stored::Scalar(match any {
        Any::Null | Any::Undefined => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(Number::Int(i)) => Value::Int(*i),
        // `as` saturates: 2^63 (how yrs writes i64::MAX) reads as i64::MAX.
        Any::Number(Number::Float(f)) if is_integral_in_i64_range(*f) => Value::Int(*f as i64),
        Any::Number(Number::Float(f)) => Value::Float(*f),
        Any::String(s) => Value::Str(s.to_string()),
        Any::Buffer(b) => Value::Bytes(b.to_vec()),
        Any::Map(_) => return Stored::Unsupported,
        Any::Array(items) => match &items[..] {
            [Any::String(tag), Any::Number(n)] if &**tag == FLOAT_TAG => Value::Float(match n {
                Number::Float(f) => *f,
                Number::Int(i) => *i as f64,
            }),
            _ => return Stored::Unsupported,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn round_trip(v: Value) -> Value {
        match decode_stored(&encode_scalar(&v).expect("scalar")) {
            Stored::Scalar(v) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scalars_round_trip_in_memory() {
        for v in [
            Value::Null,
            Value::Bool(true),
            Value::Int(-5),
            Value::Int(i64::MAX),
            Value::Float(2.5),
            Value::Float(3.0),
            Value::Str("x".into()),
            Value::Bytes(vec![0, 255]),
        ] {
            assert_eq!(round_trip(v.clone()), v);
        }
    }

    #[test]
    fn sets_and_maps_are_not_scalars() {
        assert_eq!(encode_scalar(&Value::Set(Default::default())), None);
        assert_eq!(decode_stored(&Any::Map(Arc::new(HashMap::new()))), Stored::Unsupported);
    }
}
