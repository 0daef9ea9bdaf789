//! `search save | list | run | delete`.

use anyhow::Result;
use clap::Subcommand;
use onefolder_model::SavedSearch;
use serde::Serialize;

use crate::criteria::{self, Criterion, Ctx};
use crate::error::user;
use crate::out::{self, outln};
use crate::session::{Global, Session};

/// `search …`.
#[derive(Subcommand, Debug)]
pub enum SearchCommand {
    /// Save a search (shared with every computer, and with the OneFolder app).
    ///
    /// Each --where is one criterion: FIELD OP VALUE, e.g.
    /// `--where tag contains Animals/Cats`, `--where tag contains-recursively Animals`,
    /// `--where tag not-contains Drafts`, `--where tag contains ''` (untagged),
    /// `--where name contains tom`, `--where ext = jpg`, `--where size '>' 2MB`,
    /// `--where added before 2026-01-01`, `--where modified '>=' 2026-03-01`.
    /// Fields: tag, name, ext, path, size, width, height, added, modified, created.
    /// Operators are OneFolder's (contains, notContains, containsRecursively,
    /// containsNotRecursively, equals, notEqual, startsWith, …, smallerThan, greaterThan, …) or
    /// the shorthands = != < <= > >= before after.
    Save {
        /// The search's name.
        name: String,
        /// A criterion (repeatable).
        #[arg(long = "where", num_args = 3, value_names = ["FIELD", "OP", "VALUE"], action = clap::ArgAction::Append)]
        criteria: Vec<String>,
        /// The criteria as OneFolder JSON (a list of {key, valueType, operator, value}), instead
        /// of or in addition to --where.
        #[arg(long, value_name = "JSON")]
        criteria_json: Option<String>,
        /// Match files that satisfy any criterion (default: all).
        #[arg(long)]
        any: bool,
    },
    /// List the saved searches.
    List,
    /// Run a saved search: print the files it finds.
    Run {
        /// The search's name or id.
        search: String,
    },
    /// Delete a saved search.
    Delete {
        /// The search's name or id.
        search: String,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchRow {
    id: String,
    name: String,
    match_any: bool,
    criteria: serde_json::Value,
    description: Vec<String>,
}

fn find(s: &Session, arg: &str) -> Result<SavedSearch> {
    let all = s.lib.searches()?;
    if let Some(found) = all.get(arg) {
        return Ok(found.clone());
    }
    let named: Vec<&SavedSearch> = all.values().filter(|x| x.name == arg).collect();
    match named.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(user(format!("unknown saved search {arg:?} (see `onefolder-sync search list`)"))),
        _ => Err(user(format!("{} saved searches are named {arg:?}; give its id", named.len()))),
    }
}

/// Runs `search …`.
pub async fn run(cmd: SearchCommand, global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let json = global.json;
    match cmd {
        SearchCommand::Save { name, criteria, criteria_json, any } => {
            let name = name.trim().to_owned();
            if name.is_empty() {
                return Err(user("a saved search needs a name"));
            }
            if s.lib.searches()?.values().any(|x| x.name == name) {
                return Err(user(format!(
                    "a saved search named {name:?} exists already; delete it first (`onefolder-sync search delete {name:?}`)"
                )));
            }
            let mut list: Vec<Criterion> = match &criteria_json {
                Some(text) => criteria::parse(text).map_err(user)?,
                None => Vec::new(),
            };
            for w in criteria.chunks(3) {
                list.push(criteria::from_words(&w[0], &w[1], &w[2], |t| s.tag(t))?);
            }
            for c in &list {
                c.kind().map_err(user)?;
            }
            if list.is_empty() {
                return Err(user("give at least one criterion with --where FIELD OP VALUE (see --help)"));
            }
            let value = serde_json::to_value(&list)?;
            let id = s.lib.save_search(&name, &value, any)?;
            if json {
                return out::json(&serde_json::json!({ "id": id, "name": name }));
            }
            outln!("saved search {name:?} ({id})");
            Ok(())
        }
        SearchCommand::List => {
            let paths = s.tag_paths()?;
            let mut rows: Vec<SearchRow> = s
                .lib
                .searches()?
                .into_values()
                .map(|x| {
                    let parsed = criteria::parse(&x.criteria).unwrap_or_default();
                    SearchRow {
                        description: parsed.iter().map(|c| c.describe(&paths)).collect(),
                        criteria: serde_json::from_str(&x.criteria).unwrap_or(serde_json::Value::Null),
                        id: x.id,
                        name: x.name,
                        match_any: x.match_any,
                    }
                })
                .collect();
            rows.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            if json {
                return out::json(&rows);
            }
            if rows.is_empty() {
                outln!("no saved searches (save one with `onefolder-sync search save NAME --where …`)");
            }
            for r in rows {
                let join = if r.match_any { " or " } else { " and " };
                outln!("{}  {}: {}", r.id, r.name, r.description.join(join));
            }
            Ok(())
        }
        SearchCommand::Run { search } => {
            let found = find(&s, &search)?;
            let list =
                criteria::parse(&found.criteria).map_err(|e| user(format!("saved search {:?}: {e}", found.name)))?;
            let files = s.lib.files()?;
            let tags = s.lib.tags()?;
            let prefixes = s.display_paths()?;
            let ctx = Ctx { tags: &tags, prefixes: &prefixes };
            let hits = criteria::filter(&list, found.match_any, files.values(), &ctx)
                .map_err(|e| user(format!("saved search {:?}: {e}", found.name)))?;
            crate::cmd::tags::print_files(&s, &hits, json)
        }
        SearchCommand::Delete { search } => {
            let found = find(&s, &search)?;
            s.lib.delete_search(&found.id)?;
            if json {
                return out::json(&serde_json::json!({ "deleted": found.id, "name": found.name }));
            }
            outln!("deleted saved search {:?}", found.name);
            Ok(())
        }
    }
}
