//! The tag tree: effective parents (deterministic cycle breaking), subtrees and paths.

use std::collections::{BTreeMap, BTreeSet};

use onefolder_core::{Collection, Value};
use serde::Serialize;

use crate::{TAG_COPY_IMPLIED, TAG_IMPLIED, Tag, ids, int_field, set_field, str_field};

/// A tag with its children, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TagNode {
    /// The tag.
    pub tag: Tag,
    /// Its children, ordered by order key, then id.
    pub children: Vec<TagNode>,
}

/// The ids that some tag of `raw` names as its parent or an implied tag, but no tag has: a tag
/// created with one of them changes how [`effective_tags`] reads the tags that name it.
pub(crate) fn dangling_refs(raw: &Collection) -> BTreeSet<String> {
    raw.values()
        .flat_map(|r| str_field(r, "parent").into_iter().chain(set_field(r, TAG_IMPLIED)))
        .filter(|id| !id.is_empty() && !raw.contains_key(id))
        .collect()
}

/// Materialises tags with their *effective* parent:
/// 1. a parent that does not exist (deleted concurrently) becomes the root;
/// 2. every cycle (made by concurrent moves, e.g. X under Y on A and Y under X on B) is broken
///    by detaching the member with the smallest id to the root.
///
/// The rule depends only on the merged state, so every replica computes the same tree, and no
/// tag is lost.
pub(crate) fn effective_tags(raw: &Collection) -> BTreeMap<String, Tag> {
    let mut tags: BTreeMap<String, Tag> = raw
        .iter()
        .map(|(id, r)| {
            let tag = Tag {
                id: id.clone(),
                name: str_field(r, "name").unwrap_or_default(),
                color: str_field(r, "color"),
                parent: str_field(r, "parent").filter(|p| !p.is_empty()),
                order: str_field(r, "order").unwrap_or_default(),
                is_hidden: r.get("isHidden").and_then(Value::as_bool).unwrap_or(false),
                date_added: int_field(r, "dateAdded").unwrap_or(0),
                implied: set_field(r, TAG_IMPLIED),
                copy_implied: r.get(TAG_COPY_IMPLIED).and_then(Value::as_bool).unwrap_or(false),
            };
            (id.clone(), tag)
        })
        .collect();
    let ids: BTreeSet<String> = tags.keys().cloned().collect();
    for t in tags.values_mut() {
        if t.parent.as_ref().is_some_and(|p| !ids.contains(p) || p == &t.id) {
            t.parent = None;
        }
        t.implied.retain(|i| ids.contains(i) && i != &t.id);
    }
    // Walk up from every tag; a walk that meets itself found a cycle. Sorted iteration plus
    // the "smallest id" rule make the result independent of the replica.
    let mut done: BTreeSet<String> = BTreeSet::new();
    for start in ids.iter() {
        let mut path: Vec<String> = Vec::new();
        let mut on_path: BTreeSet<String> = BTreeSet::new();
        let mut cur = Some(start.clone());
        while let Some(id) = cur {
            if done.contains(&id) {
                break;
            }
            if on_path.contains(&id) {
                let pos = path.iter().position(|p| p == &id).expect("on path");
                let victim = path[pos..].iter().min().expect("non-empty cycle").clone();
                tags.get_mut(&victim).expect("exists").parent = None;
                break;
            }
            on_path.insert(id.clone());
            path.push(id.clone());
            cur = tags[&id].parent.clone();
        }
        done.extend(path);
    }
    tags
}

/// `root` and every tag below it.
pub fn subtree(tags: &BTreeMap<String, Tag>, root: &str) -> BTreeSet<String> {
    let mut children: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in tags.values() {
        if let Some(p) = &t.parent {
            children.entry(p.as_str()).or_default().push(&t.id);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if out.insert(id.to_owned()) {
            stack.extend(children.get(id).into_iter().flatten());
        }
    }
    out
}

fn sorted_children<'a>(tags: &'a BTreeMap<String, Tag>, parent: Option<&str>) -> Vec<&'a Tag> {
    let mut v: Vec<&Tag> = tags.values().filter(|t| t.parent.as_deref() == parent).collect();
    v.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
    v
}

/// The ordered forest.
pub(crate) fn build(tags: &BTreeMap<String, Tag>) -> Vec<TagNode> {
    let mut by_parent: BTreeMap<Option<&str>, Vec<&Tag>> = BTreeMap::new();
    for t in tags.values() {
        by_parent.entry(t.parent.as_deref()).or_default().push(t);
    }
    for v in by_parent.values_mut() {
        v.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.id.cmp(&b.id)));
    }
    fn node(t: &Tag, by_parent: &BTreeMap<Option<&str>, Vec<&Tag>>) -> TagNode {
        let children = by_parent.get(&Some(t.id.as_str())).map(|c| c.iter().map(|c| node(c, by_parent)).collect());
        TagNode { tag: t.clone(), children: children.unwrap_or_default() }
    }
    by_parent.get(&None).map(|roots| roots.iter().map(|t| node(t, &by_parent)).collect()).unwrap_or_default()
}

/// Finds a tag by a `/`-separated path of names, comparing normalised names. When two
/// siblings share a name (renames can cause it), the first in order wins.
pub(crate) fn find_path(tags: &BTreeMap<String, Tag>, path: &str) -> Option<String> {
    let mut parent: Option<String> = None;
    let names: Vec<&str> = path.split('/').filter(|s| !s.trim().is_empty()).collect();
    if names.is_empty() {
        return None;
    }
    for name in names {
        let key = ids::tag_name_key(name);
        let found = sorted_children(tags, parent.as_deref()).into_iter().find(|t| ids::tag_name_key(&t.name) == key)?;
        parent = Some(found.id.clone());
    }
    parent
}

#[cfg(test)]
mod tests {
    use super::*;
    use onefolder_core::Record;

    fn raw(tags: &[(&str, Option<&str>)]) -> Collection {
        tags.iter()
            .map(|(id, parent)| {
                let mut r = Record::new();
                r.insert("name".into(), Value::from(*id));
                r.insert("parent".into(), Value::from(parent.map(str::to_owned)));
                (id.to_string(), r)
            })
            .collect()
    }

    #[test]
    fn two_cycle_is_broken_at_smallest_id() {
        let t = effective_tags(&raw(&[("x", Some("y")), ("y", Some("x"))]));
        assert_eq!(t["x"].parent, None);
        assert_eq!(t["y"].parent.as_deref(), Some("x"));
    }

    #[test]
    fn long_cycle_with_tail_is_broken_once() {
        let t = effective_tags(&raw(&[("a", Some("b")), ("b", Some("c")), ("c", Some("d")), ("d", Some("b"))]));
        assert_eq!(t["b"].parent, None);
        assert_eq!(t["a"].parent.as_deref(), Some("b"));
        assert_eq!(t["c"].parent.as_deref(), Some("d"));
        assert_eq!(t["d"].parent.as_deref(), Some("b"));
        assert_eq!(build(&t).len(), 1, "one tree, no tag lost");
        assert_eq!(subtree(&t, "b").len(), 4);
    }

    #[test]
    fn missing_and_self_parents_become_root() {
        let t = effective_tags(&raw(&[("a", Some("gone")), ("b", Some("b"))]));
        assert_eq!(t["a"].parent, None);
        assert_eq!(t["b"].parent, None);
    }
}
