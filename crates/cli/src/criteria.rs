//! `--where FIELD OP VALUE` words as OneFolder search criteria; the criteria themselves and
//! their evaluation are the model's (`onefolder_model::criteria`).

use onefolder_model::criteria::Kind;
use serde_json::Value as Json;

use crate::out;

pub use onefolder_model::criteria::{Criterion, Ctx, filter, parse};

fn field_key(field: &str) -> Option<&'static str> {
    Some(match field.to_lowercase().replace(['-', '_'], "").as_str() {
        "tag" | "tags" => "tags",
        "name" => "name",
        "ext" | "extension" => "extension",
        "path" => "path",
        "absolutepath" => "absolutePath",
        "size" => "size",
        "width" => "width",
        "height" => "height",
        "added" | "dateadded" => "dateAdded",
        "modified" | "datemodified" => "dateModified",
        "created" | "datecreated" => "dateCreated",
        _ => return None,
    })
}

fn operator(kind: Kind, op: &str) -> Option<&'static str> {
    let norm = op.to_lowercase().replace(['-', '_', ' '], "");
    let found = kind.operators().iter().find(|o| o.to_lowercase() == norm).copied();
    found.or(match (kind, norm.as_str()) {
        (Kind::Tags, "has" | "is") => Some("contains"),
        (Kind::Tags, "not" | "hasnot" | "isnot" | "!=") => Some("notContains"),
        (Kind::Tags, "under" | "in" | "recursive") => Some("containsRecursively"),
        (Kind::Tags, "notunder" | "notin" | "notcontainsrecursively") => Some("containsNotRecursively"),
        (_, "=" | "==" | "is") => Some("equals"),
        (_, "!=" | "isnot") => Some("notEqual"),
        (Kind::Number | Kind::Date, "<" | "lt" | "before") => Some("smallerThan"),
        (Kind::Number | Kind::Date, "<=" | "le") => Some("smallerThanOrEquals"),
        (Kind::Number | Kind::Date, ">" | "gt" | "after") => Some("greaterThan"),
        (Kind::Number | Kind::Date, ">=" | "ge") => Some("greaterThanOrEquals"),
        (Kind::Text, "notcontains" | "has not") => Some("notContains"),
        _ => None,
    })
}

/// Builds a criterion from `--where FIELD OP VALUE`; `tag` turns a tag path (or id) into an id.
pub fn from_words(
    field: &str,
    op: &str,
    value: &str,
    tag: impl Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Criterion> {
    use crate::error::user;
    let key = field_key(field).ok_or_else(|| {
        user(format!(
            "unknown search field {field:?} (use tag, name, ext, path, size, width, height, added, modified, created)"
        ))
    })?;
    let kind = Kind::of(key).expect("known key");
    let operator = operator(kind, op).ok_or_else(|| {
        user(format!("operator {op:?} does not apply to {field} (use one of: {})", kind.operators().join(", ")))
    })?;
    let value = match kind {
        Kind::Tags if value.is_empty() => Json::Array(Vec::new()),
        Kind::Tags => Json::Array(vec![Json::String(tag(value)?)]),
        Kind::Text => Json::String(value.to_owned()),
        Kind::Number => {
            let n = if key == "size" { out::parse_size(value) } else { value.trim().parse().ok() };
            Json::from(n.ok_or_else(|| {
                user(format!(
                    "{value:?} is not a number{}",
                    if key == "size" { " of bytes (e.g. 1500, 2MB, 3MiB)" } else { "" }
                ))
            })?)
        }
        Kind::Date => Json::String(out::iso_time(
            out::parse_time(value).ok_or_else(|| user(format!("{value:?} is not a date (use YYYY-MM-DD)")))?,
        )),
    };
    Ok(Criterion {
        key: key.to_owned(),
        value_type: Some(kind.value_type().to_owned()),
        operator: operator.to_owned(),
        value,
    })
}

#[cfg(test)]
mod tests {
    use onefolder_model::criteria::parse;

    use super::*;

    #[test]
    fn words_become_onefolder_criteria() {
        let tag = |p: &str| Ok(format!("id-of-{p}"));
        let c = from_words("tag", "contains-recursively", "Animals/Cats", tag).unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"key": "tags", "valueType": "array", "operator": "containsRecursively", "value": ["id-of-Animals/Cats"]})
        );
        let c = from_words("size", ">", "2MB", tag).unwrap();
        assert_eq!((c.operator.as_str(), c.value.clone()), ("greaterThan", Json::from(2_000_000)));
        let c = from_words("added", "before", "2026-01-02", tag).unwrap();
        assert_eq!((c.operator.as_str(), c.value.clone()), ("smallerThan", Json::from("2026-01-02T00:00:00.000Z")));
        assert!(from_words("size", "contains", "3", tag).is_err());
        assert!(from_words("colour", "=", "red", tag).is_err());
        assert!(from_words("added", "=", "soon", tag).is_err());
        let round = parse(&serde_json::to_string(&vec![c.clone()]).unwrap()).unwrap();
        assert_eq!(round, vec![c]);
    }
}
