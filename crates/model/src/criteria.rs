//! Search criteria as OneFolder stores them (`FileSearchDTO.criteria`), and their evaluation.
//!
//! A criterion is `{"key", "valueType", "operator", "value"}`:
//!
//! | key | value | operators |
//! |---|---|---|
//! | `tags` | `[]` or `[tagId]` | `contains`, `notContains`, `containsRecursively` (the tag or a tag below it), `containsNotRecursively` (neither); `[]` means "no tag" |
//! | `name`, `extension`, `path`, `absolutePath`, `relativePath` (location-relative), `locationId` | string | `equals`, `equalsIgnoreCase`, `notEqual`, `startsWith`, `startsWithIgnoreCase`, `notStartsWith`, `contains`, `notContains` (the last two ignore case) |
//! | `size`, `width`, `height` | number | `equals`, `notEqual`, `smallerThan`, `smallerThanOrEquals`, `greaterThan`, `greaterThanOrEquals` |
//! | `dateAdded`, `dateModified`, `dateCreated`, `dateLastIndexed` | ISO date string or ms | the number operators, by UTC day: `equals` is "on that day", `smallerThan` "before that day" |
//!
//! `extension` always ignores case and a leading dot. `path` / `absolutePath` match the path
//! `files` shows (relative to the library folder).

use std::collections::{BTreeMap, BTreeSet};

use crate::{File, Tag, dates, tree};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// One criterion of a saved search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Criterion {
    /// The file field.
    pub key: String,
    /// `array`, `string`, `number` or `date` (derived from the key when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// The operator.
    pub operator: String,
    /// The value.
    pub value: Json,
}

/// The kind of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The tag set.
    Tags,
    /// A string.
    Text,
    /// A number.
    Number,
    /// A date (ms since the epoch).
    Date,
}

impl Kind {
    /// The kind of a OneFolder file field, if criteria can name it.
    pub fn of(key: &str) -> Option<Kind> {
        Some(match key {
            "tags" => Kind::Tags,
            "name" | "extension" | "path" | "absolutePath" | "relativePath" | "locationId" => Kind::Text,
            "size" | "width" | "height" => Kind::Number,
            "dateAdded" | "dateModified" | "dateCreated" | "dateLastIndexed" => Kind::Date,
            _ => return None,
        })
    }

    /// OneFolder's `valueType` for this kind.
    pub fn value_type(self) -> &'static str {
        match self {
            Kind::Tags => "array",
            Kind::Text => "string",
            Kind::Number => "number",
            Kind::Date => "date",
        }
    }

    /// The operators OneFolder defines for this kind.
    pub fn operators(self) -> &'static [&'static str] {
        match self {
            Kind::Tags => &["contains", "notContains", "containsRecursively", "containsNotRecursively"],
            Kind::Text => &[
                "equals",
                "equalsIgnoreCase",
                "notEqual",
                "startsWith",
                "startsWithIgnoreCase",
                "notStartsWith",
                "contains",
                "notContains",
            ],
            Kind::Number | Kind::Date => {
                &["equals", "notEqual", "smallerThan", "smallerThanOrEquals", "greaterThan", "greaterThanOrEquals"]
            }
        }
    }
}

/// What evaluation needs besides the file.
pub struct Ctx<'a> {
    /// Every tag (effective parents).
    pub tags: &'a BTreeMap<String, Tag>,
    /// Location id → prefix of its files' shown paths.
    pub prefixes: &'a BTreeMap<String, String>,
}

fn subtrees(tags: &BTreeMap<String, Tag>, roots: &[String]) -> BTreeSet<String> {
    roots.iter().flat_map(|r| tree::subtree(tags, r)).collect()
}

fn tag_ids(value: &Json) -> Result<Vec<String>, String> {
    match value {
        Json::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "tag criteria hold a list of tag ids".to_owned()))
            .collect(),
        Json::String(s) => Ok(vec![s.clone()]),
        Json::Null => Ok(Vec::new()),
        _ => Err("tag criteria hold a list of tag ids".into()),
    }
}

fn number(value: &Json) -> Result<f64, String> {
    value.as_f64().ok_or_else(|| format!("{value} is not a number"))
}

fn date(value: &Json) -> Result<i64, String> {
    match value {
        Json::Number(n) => n.as_i64().ok_or_else(|| format!("{n} is not a date")),
        Json::String(s) => dates::parse_time(s).ok_or_else(|| format!("{s:?} is not a date (use YYYY-MM-DD)")),
        other => Err(format!("{other} is not a date")),
    }
}

impl Criterion {
    /// The field kind, or why the criterion is not understood.
    pub fn kind(&self) -> Result<Kind, String> {
        let kind = Kind::of(&self.key).ok_or_else(|| format!("unknown search field {:?}", self.key))?;
        if !kind.operators().contains(&self.operator.as_str()) {
            return Err(format!(
                "operator {:?} does not apply to {} (use one of: {})",
                self.operator,
                self.key,
                kind.operators().join(", ")
            ));
        }
        Ok(kind)
    }

    /// Whether `file` satisfies the criterion.
    pub fn matches(&self, file: &File, ctx: &Ctx<'_>) -> Result<bool, String> {
        let op = self.operator.as_str();
        Ok(match self.kind()? {
            Kind::Tags => {
                let ids = tag_ids(&self.value)?;
                if ids.is_empty() {
                    // OneFolder: "contains no tag" = untagged.
                    return Ok(match op {
                        "contains" | "containsRecursively" => file.tags.is_empty(),
                        _ => !file.tags.is_empty(),
                    });
                }
                let wanted: BTreeSet<String> = match op {
                    "containsRecursively" | "containsNotRecursively" => subtrees(ctx.tags, &ids),
                    _ => ids.into_iter().collect(),
                };
                let has = !file.tags.is_disjoint(&wanted);
                if op.starts_with("contains") && op != "containsNotRecursively" { has } else { !has }
            }
            Kind::Text => {
                let want = self.value.as_str().ok_or_else(|| format!("{} needs a text value", self.key))?;
                let shown;
                let (have, want, fold) = match self.key.as_str() {
                    "name" => (file.name.as_str(), want, false),
                    "extension" => (file.extension.as_str(), want.trim_start_matches('.'), true),
                    "relativePath" => (file.path.as_str(), want, false),
                    "locationId" => (file.location.as_str(), want, false),
                    _ => {
                        shown = format!(
                            "{}{}",
                            ctx.prefixes.get(&file.location).map(String::as_str).unwrap_or(""),
                            file.path
                        );
                        (shown.as_str(), want, false)
                    }
                };
                let ci = fold || matches!(op, "equalsIgnoreCase" | "startsWithIgnoreCase" | "contains" | "notContains");
                let (have, want) =
                    if ci { (have.to_lowercase(), want.to_lowercase()) } else { (have.to_owned(), want.to_owned()) };
                match op {
                    "equals" | "equalsIgnoreCase" => have == want,
                    "notEqual" => have != want,
                    "startsWith" | "startsWithIgnoreCase" => have.starts_with(&want),
                    "notStartsWith" => !have.starts_with(&want),
                    "contains" => have.contains(&want),
                    _ => !have.contains(&want),
                }
            }
            Kind::Number => {
                let have = match self.key.as_str() {
                    "size" => Some(file.size),
                    "width" => file.width,
                    _ => file.height,
                };
                let Some(have) = have.map(|v| v as f64) else { return Ok(false) };
                let want = number(&self.value)?;
                match op {
                    "equals" => have == want,
                    "notEqual" => have != want,
                    "smallerThan" => have < want,
                    "smallerThanOrEquals" => have <= want,
                    "greaterThan" => have > want,
                    _ => have >= want,
                }
            }
            Kind::Date => {
                let have = match self.key.as_str() {
                    "dateAdded" => file.date_added,
                    "dateModified" => file.date_modified,
                    "dateLastIndexed" => file.date_last_indexed.unwrap_or(file.date_added),
                    _ => file.date_created,
                };
                let start = dates::day_start(date(&self.value)?);
                let end = start + dates::DAY_MS;
                match op {
                    "equals" => (start..end).contains(&have),
                    "notEqual" => !(start..end).contains(&have),
                    "smallerThan" => have < start,
                    "smallerThanOrEquals" => have < end,
                    "greaterThan" => have >= end,
                    _ => have >= start,
                }
            }
        })
    }

    /// For people: `tags containsRecursively Animals/Cats`.
    pub fn describe(&self, tag_paths: &BTreeMap<String, String>) -> String {
        let value = match Kind::of(&self.key) {
            Some(Kind::Tags) => match tag_ids(&self.value) {
                Ok(ids) if ids.is_empty() => "(no tag)".to_owned(),
                Ok(ids) => ids
                    .iter()
                    .map(|id| tag_paths.get(id).cloned().unwrap_or_else(|| format!("(deleted tag {id})")))
                    .collect::<Vec<_>>()
                    .join(", "),
                Err(_) => self.value.to_string(),
            },
            Some(Kind::Date) => date(&self.value).map(|ms| dates::iso_time(ms)[..10].to_owned()).unwrap_or_default(),
            _ => match &self.value {
                Json::String(s) => format!("{s:?}"),
                other => other.to_string(),
            },
        };
        format!("{} {} {value}", self.key, self.operator)
    }
}

/// Parses saved criteria (a JSON list).
pub fn parse(text: &str) -> Result<Vec<Criterion>, String> {
    serde_json::from_str(text).map_err(|e| format!("the criteria are not a list of OneFolder search criteria: {e}"))
}

/// The files that match all (or with `match_any`, any) of the criteria; all files when there
/// are none.
pub fn filter<'f>(
    criteria: &[Criterion],
    match_any: bool,
    files: impl IntoIterator<Item = &'f File>,
    ctx: &Ctx<'_>,
) -> Result<Vec<&'f File>, String> {
    for c in criteria {
        c.kind()?;
    }
    let mut out = Vec::new();
    for f in files {
        let keep = if criteria.is_empty() {
            true
        } else if match_any {
            let mut any = false;
            for c in criteria {
                any |= c.matches(f, ctx)?;
            }
            any
        } else {
            let mut all = true;
            for c in criteria {
                all &= c.matches(f, ctx)?;
            }
            all
        };
        if keep {
            out.push(f);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(id: &str, parent: Option<&str>) -> (String, Tag) {
        let t = Tag {
            id: id.into(),
            name: id.into(),
            color: None,
            parent: parent.map(Into::into),
            order: String::new(),
            is_hidden: false,
            date_added: 0,
            implied: BTreeSet::new(),
            copy_implied: false,
        };
        (id.to_owned(), t)
    }

    fn file(name: &str, tags: &[&str], size: i64, added: &str) -> File {
        File {
            id: name.into(),
            location: "loc".into(),
            path: format!("2026/{name}"),
            name: name.into(),
            extension: name.rsplit('.').next().unwrap().to_lowercase(),
            size,
            width: None,
            height: None,
            date_added: dates::parse_time(added).unwrap(),
            date_modified: 0,
            date_created: 0,
            fingerprint: None,
            date_last_indexed: None,
            annotations: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn crit(key: &str, op: &str, value: Json) -> Criterion {
        Criterion { key: key.into(), value_type: None, operator: op.into(), value }
    }

    fn names<'a>(v: &[&'a File]) -> Vec<&'a str> {
        v.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn criteria_select_like_onefolder() {
        let tags: BTreeMap<String, Tag> =
            [tag("animals", None), tag("cats", Some("animals")), tag("rome", None)].into_iter().collect();
        let prefixes = BTreeMap::from([("loc".to_owned(), "Pics/".to_owned())]);
        let ctx = Ctx { tags: &tags, prefixes: &prefixes };
        let files = [
            file("Tom.JPG", &["cats"], 2_000_000, "2026-01-10"),
            file("rex.png", &["animals"], 500, "2026-02-01"),
            file("forum.jpg", &["rome"], 3_000_000, "2026-01-10T23:59:59Z"),
            file("blank.gif", &[], 10, "2025-12-31"),
        ];
        let run = |cs: &[Criterion], any: bool| names(&filter(cs, any, &files, &ctx).unwrap());

        assert_eq!(run(&[crit("tags", "contains", serde_json::json!(["animals"]))], false), ["rex.png"]);
        assert_eq!(
            run(&[crit("tags", "containsRecursively", serde_json::json!(["animals"]))], false),
            ["Tom.JPG", "rex.png"]
        );
        assert_eq!(
            run(&[crit("tags", "containsNotRecursively", serde_json::json!(["animals"]))], false),
            ["forum.jpg", "blank.gif"]
        );
        assert_eq!(
            run(&[crit("tags", "notContains", serde_json::json!(["animals"]))], false),
            ["Tom.JPG", "forum.jpg", "blank.gif"]
        );
        assert_eq!(run(&[crit("tags", "contains", serde_json::json!([]))], false), ["blank.gif"]);
        assert_eq!(run(&[crit("extension", "equals", serde_json::json!(".jpg"))], false), ["Tom.JPG", "forum.jpg"]);
        assert_eq!(run(&[crit("name", "contains", serde_json::json!("TOM"))], false), ["Tom.JPG"]);
        assert_eq!(run(&[crit("name", "startsWith", serde_json::json!("tom"))], false), Vec::<&str>::new());
        assert_eq!(run(&[crit("path", "startsWith", serde_json::json!("Pics/2026/f"))], false), ["forum.jpg"]);
        assert_eq!(run(&[crit("size", "greaterThan", serde_json::json!(1_000_000))], false), ["Tom.JPG", "forum.jpg"]);
        assert_eq!(
            run(&[crit("dateAdded", "equals", serde_json::json!("2026-01-10"))], false),
            ["Tom.JPG", "forum.jpg"]
        );
        assert_eq!(run(&[crit("dateAdded", "smallerThan", serde_json::json!("2026-01-10"))], false), ["blank.gif"]);
        assert_eq!(run(&[crit("dateAdded", "greaterThan", serde_json::json!("2026-01-10"))], false), ["rex.png"]);
        let two = [
            crit("size", "smallerThan", serde_json::json!(1000)),
            crit("tags", "contains", serde_json::json!(["rome"])),
        ];
        assert_eq!(run(&two, false), Vec::<&str>::new());
        assert_eq!(run(&two, true), ["rex.png", "forum.jpg", "blank.gif"]);
        assert_eq!(run(&[], false).len(), 4);
    }

    #[test]
    fn bad_criteria_are_reported_not_guessed() {
        let tags = BTreeMap::new();
        let prefixes = BTreeMap::new();
        let ctx = Ctx { tags: &tags, prefixes: &prefixes };
        let f = [file("a.jpg", &[], 1, "2026-01-01")];
        assert!(filter(&[crit("colour", "equals", Json::from("red"))], false, &f, &ctx).is_err());
        assert!(filter(&[crit("size", "startsWith", Json::from(1))], false, &f, &ctx).is_err());
        assert!(parse("{\"not\": \"a list\"}").is_err());
    }
}
