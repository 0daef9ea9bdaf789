//! The engine-neutral data model: collections of records with fields.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A field value as read from (or written to) an [`Engine`](crate::Engine).
///
/// Scalars are last-writer-wins registers inside the engine; [`Value::Set`] is an add-wins set
/// of string members and is only changed through [`Op::SetAdd`] / [`Op::SetRemove`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// Explicit null.
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// An add-wins set of string members (read only; write it with set operations).
    Set(BTreeSet<String>),
}

impl Value {
    /// The string inside, if this is a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is a [`Value::Int`].
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean inside, if this is a [`Value::Bool`].
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The float inside, if this is a [`Value::Float`] (integers are widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The members inside, if this is a [`Value::Set`].
    pub fn as_set(&self) -> Option<&BTreeSet<String>> {
        match self {
            Value::Set(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// One record: field name → value. Ordered so that materialised records compare and print
/// deterministically.
pub type Record = BTreeMap<String, Value>;

/// A materialised collection: record id → record.
pub type Collection = BTreeMap<String, Record>;

/// One write operation. A batch of operations is applied by [`Engine::write`](crate::Engine::write)
/// in one engine transaction.
///
/// A record exists once it was [`Op::Create`]d and until it is [`Op::Delete`]d. Field writes to
/// a record that does not exist are kept by the engine but invisible to readers, so a write that
/// races a delete never resurrects a half record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// Make the record visible (idempotent; concurrent creates of one id merge field by field).
    Create {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
    },
    /// Remove the record and clear its fields and sets.
    Delete {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
    },
    /// Set one scalar field (last writer wins). A [`Value::Set`] here is rejected.
    Put {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
        /// Field name.
        field: String,
        /// New value (not a set).
        value: Value,
    },
    /// Remove one field.
    Clear {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
        /// Field name.
        field: String,
    },
    /// Add a member to a set field (add wins over a concurrent remove).
    SetAdd {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
        /// Field name.
        field: String,
        /// Member to add.
        member: String,
    },
    /// Remove a member from a set field.
    SetRemove {
        /// Collection name.
        collection: String,
        /// Record id.
        id: String,
        /// Field name.
        field: String,
        /// Member to remove.
        member: String,
    },
}

impl Op {
    /// `Op::Create`.
    pub fn create(collection: &str, id: &str) -> Self {
        Op::Create { collection: collection.into(), id: id.into() }
    }
    /// `Op::Delete`.
    pub fn delete(collection: &str, id: &str) -> Self {
        Op::Delete { collection: collection.into(), id: id.into() }
    }
    /// `Op::Put`.
    pub fn put(collection: &str, id: &str, field: &str, value: impl Into<Value>) -> Self {
        Op::Put { collection: collection.into(), id: id.into(), field: field.into(), value: value.into() }
    }
    /// `Op::Clear`.
    pub fn clear(collection: &str, id: &str, field: &str) -> Self {
        Op::Clear { collection: collection.into(), id: id.into(), field: field.into() }
    }
    /// `Op::SetAdd`.
    pub fn set_add(collection: &str, id: &str, field: &str, member: &str) -> Self {
        Op::SetAdd { collection: collection.into(), id: id.into(), field: field.into(), member: member.into() }
    }
    /// `Op::SetRemove`.
    pub fn set_remove(collection: &str, id: &str, field: &str, member: &str) -> Self {
        Op::SetRemove { collection: collection.into(), id: id.into(), field: field.into(), member: member.into() }
    }
    /// The collection and id of the record the operation touches.
    pub fn record(&self) -> (&str, &str) {
        match self {
            Op::Create { collection, id }
            | Op::Delete { collection, id }
            | Op::Put { collection, id, .. }
            | Op::Clear { collection, id, .. }
            | Op::SetAdd { collection, id, .. }
            | Op::SetRemove { collection, id, .. } => (collection, id),
        }
    }
}
