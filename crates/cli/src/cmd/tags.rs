//! `tag …`, `tags` and `files`.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::{Args, Subcommand};
use onefolder_model::{File, ModelError, Tag, TagNode, subtree};
use serde::Serialize;

use crate::criteria::{self, Ctx};
use crate::error::user;
use crate::out::{self, outln};
use crate::session::{Global, Session, tag_paths};

/// `tag …`.
#[derive(Subcommand, Debug)]
pub enum TagCommand {
    /// Create a tag, and any missing parent (`Animals/Cats`). An existing tag is left as it is.
    Create {
        /// `/`-separated names from the root.
        path: String,
        /// A colour (any CSS colour, e.g. `orange` or `#ffa500`).
        #[arg(long, value_name = "C")]
        color: Option<String>,
    },
    /// Rename a tag (it keeps its place, colour and files).
    Rename {
        /// The tag (path or id).
        path: String,
        /// The new name.
        name: String,
    },
    /// Move a tag (and what is below it) under another tag; `/` moves it to the root.
    Move {
        /// The tag (path or id).
        path: String,
        /// The new parent (path or id), or `/`.
        new_parent: String,
    },
    /// Delete a tag and the tags below it, and remove them from every file.
    Delete {
        /// The tag (path or id).
        path: String,
    },
    /// Merge a tag into another: its files get INTO, its children move under INTO, it is deleted.
    Merge {
        /// The tag that disappears.
        from: String,
        /// The tag that stays.
        into: String,
    },
    /// Set a tag's colour (`none` clears it).
    Color {
        /// The tag (path or id).
        path: String,
        /// A colour (any CSS colour), or `none`.
        color: String,
    },
    /// Tag a file.
    Add {
        /// The file: a path relative to the library folder, or an absolute path in a location.
        file: String,
        /// Tags (paths or ids).
        #[arg(required = true, value_name = "TAGPATH")]
        tags: Vec<String>,
    },
    /// Untag a file.
    Remove {
        /// The file: a path relative to the library folder, or an absolute path in a location.
        file: String,
        /// Tags (paths or ids).
        #[arg(required = true, value_name = "TAGPATH")]
        tags: Vec<String>,
    },
}

fn check_color(color: &str) -> Result<()> {
    if color.trim().is_empty() || color.len() > 64 || color.chars().any(char::is_control) {
        return Err(user(format!("{color:?} is not a colour (use a CSS colour like `orange` or `#ffa500`)")));
    }
    Ok(())
}

#[derive(Serialize)]
struct TagResult {
    id: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
}

/// Runs `tag …`.
pub async fn run(cmd: TagCommand, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let json = global.json;
    let done = |id: &str, verb: &str, created: Option<bool>| -> Result<()> {
        let path = s.tag_paths()?.get(id).cloned().unwrap_or_default();
        if json {
            out::json(&TagResult { id: id.to_owned(), path, created })
        } else {
            outln!("{verb} {path}");
            Ok(())
        }
    };
    match cmd {
        TagCommand::Create { path, color } => {
            if let Some(c) = &color {
                check_color(c)?;
            }
            let existed = s.lib.tag_by_path(&path)?;
            let id = s.lib.create_tag_path(&path, color.as_deref())?;
            if existed.is_some()
                && let Some(c) = &color
            {
                s.lib.set_tag_color(&id, Some(c))?;
            }
            done(&id, if existed.is_some() { "tag already exists:" } else { "created tag" }, Some(existed.is_none()))
        }
        TagCommand::Rename { path, name } => {
            let id = s.tag(&path)?;
            s.lib.rename_tag(&id, &name).map_err(|e| match e {
                ModelError::NameTaken { name, existing } => user(format!(
                    "there is already a tag {name:?} next to it; to combine them run `onefolder-sync tag merge {path} {}`",
                    shown_path(&s, &existing)
                )),
                other => other.into(),
            })?;
            done(&id, "renamed to", None)
        }
        TagCommand::Move { path, new_parent } => {
            let id = s.tag(&path)?;
            let parent = if new_parent.trim() == "/" { None } else { Some(s.tag(&new_parent)?) };
            s.lib.move_tag(&id, parent.as_deref()).map_err(|e| match e {
                ModelError::Cycle(name) => user(format!("cannot move {name:?} under itself or one of its own sub-tags")),
                ModelError::NameTaken { name, existing } => user(format!(
                    "{new_parent} already has a tag named {name:?}; to combine them run `onefolder-sync tag merge {path} {}`",
                    shown_path(&s, &existing)
                )),
                other => other.into(),
            })?;
            done(&id, "moved to", None)
        }
        TagCommand::Delete { path } => {
            let id = s.tag(&path)?;
            let tags = s.lib.tags()?;
            let doomed = subtree(&tags, &id);
            let files = s.lib.file_ids_with_tag(&id, true)?.len();
            let shown = tag_paths(&tags)[&id].clone();
            s.lib.delete_tag(&id)?;
            if json {
                return out::json(&serde_json::json!({ "deleted": doomed, "path": shown, "files": files }));
            }
            let below = doomed.len() - 1;
            let below = if below > 0 { format!(" and {} below it", out::n(below, "tag")) } else { String::new() };
            outln!("deleted tag {shown}{below}; removed from {}", out::n(files, "file"));
            Ok(())
        }
        TagCommand::Merge { from, into } => {
            let (from_id, into_id) = (s.tag(&from)?, s.tag(&into)?);
            let tags = s.lib.tags()?;
            if from_id == into_id || subtree(&tags, &from_id).contains(&into_id) {
                return Err(user(format!("cannot merge {from} into itself or into one of its own sub-tags")));
            }
            let files = s.lib.file_ids_with_tag(&from_id, false)?.len();
            s.lib.merge_tags(&from_id, &into_id)?;
            if json {
                return out::json(&serde_json::json!({ "merged": from_id, "into": into_id, "files": files }));
            }
            outln!("merged {from} into {} ({} retagged)", tag_paths(&s.lib.tags()?)[&into_id], out::n(files, "file"));
            Ok(())
        }
        TagCommand::Color { path, color } => {
            let id = s.tag(&path)?;
            let color = if color.eq_ignore_ascii_case("none") || color.is_empty() { None } else { Some(color) };
            if let Some(c) = &color {
                check_color(c)?;
            }
            s.lib.set_tag_color(&id, color.as_deref())?;
            done(&id, "recoloured", None)
        }
        TagCommand::Add { file, tags } => assign(&s, &file, &tags, true, json),
        TagCommand::Remove { file, tags } => assign(&s, &file, &tags, false, json),
    }
}

fn assign(s: &Session, file: &str, tags: &[String], add: bool, json: bool) -> Result<()> {
    let file_id = s.file(file)?;
    // Resolve everything first: an unknown tag changes nothing.
    let tag_ids: Vec<String> = tags.iter().map(|t| s.tag(t)).collect::<Result<_>>()?;
    for t in &tag_ids {
        if add {
            s.lib.assign(&file_id, t)?;
        } else {
            s.lib.unassign(&file_id, t)?;
        }
    }
    let f = s.lib.file(&file_id)?.ok_or_else(|| user(format!("{file} was removed meanwhile")))?;
    let paths = s.tag_paths()?;
    let now: Vec<&str> = f.tags.iter().filter_map(|t| paths.get(t)).map(String::as_str).collect();
    if json {
        return out::json(&serde_json::json!({ "file": file_id, "path": f.path, "tags": now }));
    }
    outln!("{}: {}", file, if now.is_empty() { "(no tags)".to_owned() } else { now.join(", ") });
    Ok(())
}

/// Options of `tags`.
#[derive(Args, Debug)]
pub struct TagsArgs {
    /// Show the tree, indented.
    #[arg(long)]
    pub tree: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagRow {
    id: String,
    name: String,
    path: String,
    parent: Option<String>,
    color: Option<String>,
    hidden: bool,
    files: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    children: Option<Vec<TagRow>>,
}

/// Runs `tags`.
pub async fn list(args: TagsArgs, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let tags = s.lib.tags()?;
    let paths = tag_paths(&tags);
    let counts = s.lib.tag_file_counts()?;
    fn row(n: &TagNode, paths: &BTreeMap<String, String>, counts: &BTreeMap<String, usize>, nested: bool) -> TagRow {
        let t: &Tag = &n.tag;
        TagRow {
            id: t.id.clone(),
            name: t.name.clone(),
            path: paths[&t.id].clone(),
            parent: t.parent.clone(),
            color: t.color.clone(),
            hidden: t.is_hidden,
            files: counts.get(t.id.as_str()).copied().unwrap_or(0),
            children: nested.then(|| n.children.iter().map(|c| row(c, paths, counts, true)).collect()),
        }
    }
    fn flatten<'a>(nodes: &'a [TagNode], out: &mut Vec<(usize, &'a TagNode)>, depth: usize) {
        for n in nodes {
            out.push((depth, n));
            flatten(&n.children, out, depth + 1);
        }
    }
    let tree = s.lib.tag_tree()?;
    let mut flat = Vec::new();
    flatten(&tree, &mut flat, 0);
    if global.json {
        if args.tree {
            let rows: Vec<TagRow> = tree.iter().map(|n| row(n, &paths, &counts, true)).collect();
            return out::json(&rows);
        }
        let rows: Vec<TagRow> = flat.iter().map(|(_, n)| row(n, &paths, &counts, false)).collect();
        return out::json(&rows);
    }
    if flat.is_empty() {
        outln!("no tags yet (create one with `onefolder-sync tag create NAME`)");
    }
    for (depth, n) in flat {
        let r = row(n, &paths, &counts, false);
        let color = r.color.map(|c| format!(" [{c}]")).unwrap_or_default();
        let label = if args.tree { format!("{}{}", "  ".repeat(depth), r.name) } else { r.path };
        outln!("{label}{color}  ({})", out::n(r.files, "file"));
    }
    Ok(())
}

/// Options of `files`.
#[derive(Args, Debug)]
pub struct FilesArgs {
    /// Only files with this tag (path or id).
    #[arg(long, value_name = "PATH")]
    pub tag: Option<String>,
    /// With --tag: also files with a tag below it.
    #[arg(long, requires = "tag")]
    pub recursive: bool,
    /// Only files without any tag.
    #[arg(long, conflicts_with = "tag")]
    pub untagged: bool,
    /// Only files matching a criterion, as in `search save` (repeatable; all must match unless --any).
    #[arg(long = "where", num_args = 3, value_names = ["FIELD", "OP", "VALUE"], action = clap::ArgAction::Append)]
    pub criteria: Vec<String>,
    /// With --where: any criterion may match.
    #[arg(long)]
    pub any: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileRow {
    id: String,
    location: String,
    path: String,
    shown: String,
    name: String,
    extension: String,
    size: i64,
    date_added: i64,
    date_modified: i64,
    date_created: i64,
    missing: bool,
    tags: Vec<String>,
    tag_ids: Vec<String>,
}

/// Prints files as `files` does.
pub(crate) fn print_files(s: &Session, files: &[&File], json: bool) -> Result<()> {
    let paths = s.tag_paths()?;
    let prefixes = s.display_paths()?;
    let missing = crate::cmd::index::missing_here(&s.replica)?;
    let mut rows: Vec<FileRow> = files
        .iter()
        .map(|f| {
            let mut tags: Vec<String> = f.tags.iter().filter_map(|t| paths.get(t).cloned()).collect();
            tags.sort();
            FileRow {
                id: f.id.clone(),
                location: f.location.clone(),
                path: f.path.clone(),
                shown: format!("{}{}", prefixes.get(&f.location).map(String::as_str).unwrap_or(""), f.path),
                name: f.name.clone(),
                extension: f.extension.clone(),
                size: f.size,
                date_added: f.date_added,
                date_modified: f.date_modified,
                date_created: f.date_created,
                missing: missing.contains(&f.id),
                tags,
                tag_ids: f.tags.iter().cloned().collect(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.shown.cmp(&b.shown));
    if json {
        return out::json(&rows);
    }
    for r in &rows {
        let missing = if r.missing { " (missing)" } else { "" };
        outln!("{}{missing}\t{}", r.shown, r.tags.join(", "));
    }
    Ok(())
}

/// Runs `files`.
pub async fn files(args: FilesArgs, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    // Files that vanished from this computer's disk at its last index are listed too, marked
    // "(missing)".
    let all: Vec<File> = match &args.tag {
        Some(tag) => s.lib.files_with_tag(&s.tag(tag)?, args.recursive)?,
        None if args.untagged => s.lib.untagged_files()?,
        None => s.lib.files()?.into_values().collect(),
    };
    let mut selected: Vec<&File> = all.iter().collect();
    if !args.criteria.is_empty() {
        let list: Vec<criteria::Criterion> = args
            .criteria
            .chunks(3)
            .map(|w| criteria::from_words(&w[0], &w[1], &w[2], |t| s.tag(t)))
            .collect::<Result<_>>()?;
        let tags = s.lib.tags()?;
        let prefixes = s.display_paths()?;
        let ctx = Ctx { tags: &tags, prefixes: &prefixes };
        selected = criteria::filter(&list, args.any, selected, &ctx).map_err(user)?;
    }
    print_files(&s, &selected, global.json)
}

/// How a tag is shown: its path, or its id when the tags cannot be read.
fn shown_path(s: &Session, id: &str) -> String {
    s.tag_paths().ok().and_then(|mut paths| paths.remove(id)).unwrap_or_else(|| id.to_owned())
}
