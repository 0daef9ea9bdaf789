//! The deterministic OneFolder workload: W = 100 000 files, 2 000 tags five levels deep and
//! 300 000 tag assignments (DESIGN.md §6), or a fraction of it (`quick`: W/20).
//!
//! Nothing is stored: every file, tag and assignment is a pure function of its index and the
//! seed, so a generator costs a few kilobytes (the tag ids) whatever its size, and two
//! processes that make the same [`Workload`] see the same library. The same edits can be
//! written two ways:
//! - through the model ([`Workload::apply_model`]: `onefolder_model::Library` calls, as the app
//!   makes them), or
//! - as the [`Op`] batches the model would write ([`Workload::ops`]), for the raw engine API.
//!
//! A test checks that both give the same document (timestamps aside).

use std::collections::HashMap;

use fractional_index::FractionalIndex;
use onefolder_core::{Document, Op, Value};
use onefolder_model::{FILES, FileMeta, LOCATIONS, Library, TAGS, ids, layout};
use serde::Serialize;

/// Fixed `dateAdded` written by the raw path (the model writes the current time, which has the
/// same encoded size).
pub const RAW_DATE_ADDED: i64 = 1_750_000_000_000;

/// Tag assignments per file, on average; the assignment count is `files × 3`.
pub const ASSIGNMENTS_PER_FILE: usize = 3;

/// Depth of the tag tree.
pub const TAG_LEVELS: usize = 5;

/// Share of the tags on each level, in percent (root level first).
const LEVEL_PERCENT: [usize; TAG_LEVELS] = [1, 4, 10, 25, 60];

/// The two locations of the library: `(display name, path relative to the library folder)`.
pub const LOCATIONS_SPEC: [(&str, &str); 2] = [("Pictures", "Pictures"), ("Archive", "Archive")];

/// Assignment rounds: round `r` gives every file with more than `r` tags its `r`-th tag.
/// Rounds [`ROUND_EXTRA`].. make assignments that the workload itself never makes.
const MAX_TAGS_PER_FILE: usize = 5;

/// First assignment round the workload never uses: measurements take their new edits from
/// rounds `ROUND_EXTRA..ROUND_EXTRA + EXTRA_ROUNDS`.
pub const ROUND_EXTRA: usize = MAX_TAGS_PER_FILE;
/// How many extra rounds exist (each gives one new assignment per file).
pub const EXTRA_ROUNDS: usize = 3;

/// Sizes of one benchmark run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preset {
    /// `"full"`, `"quick"` or `"custom"`.
    pub name: String,
    /// Files in the workload.
    pub files: usize,
    /// Tags in the workload (five levels).
    pub tags: usize,
    /// Edits in the peer segment that measurement 3 ingests.
    pub ingest_edits: usize,
    /// Edits timed from segment visible to applied (measurement 4).
    pub propagation_edits: usize,
    /// Peers of the idle pass (measurement 5).
    pub idle_peers: usize,
    /// Segments each idle-pass peer has written.
    pub idle_segments_per_peer: usize,
    /// Devices of the convergence run (measurement 6).
    pub converge_devices: usize,
    /// Edits each device makes before the convergence run.
    pub converge_edits: usize,
    /// Files of the library the convergence devices share before they edit.
    pub converge_base_files: usize,
    /// Local edits between two flushes while building (the debounce of a busy import).
    pub flush_every: usize,
    /// Wall-time budget, in seconds, of the timed loop of the propagation step and of the
    /// prototype baseline of the idle step: an engine whose apply cost grows with the document
    /// would otherwise take hours on W. Reports say how many iterations fit.
    pub budget_secs: u64,
}

impl Preset {
    /// The workload W of DESIGN.md §6 and the sizes named in the benchmark issue.
    pub fn full() -> Self {
        Preset {
            name: "full".into(),
            files: 100_000,
            tags: 2_000,
            ingest_edits: 10_000,
            propagation_edits: 200,
            idle_peers: 10,
            idle_segments_per_peer: 5,
            converge_devices: 20,
            converge_edits: 1_000,
            converge_base_files: 1_000,
            flush_every: 1_000,
            budget_secs: 180,
        }
    }

    /// W/20 for CI (5 000 files, 100 tags, 15 000 assignments), with the per-step counts and the
    /// time budget cut down so that `cargo xtask bench --quick` measures every engine × store in a
    /// few minutes on 2 cores; still 10 idle peers and 20 converging devices. (W/10 took 5.6 min
    /// for the four pairs, most of it in the automerge steps.)
    pub fn quick() -> Self {
        Preset {
            name: "quick".into(),
            files: 5_000,
            tags: 100,
            ingest_edits: 500,
            propagation_edits: 30,
            idle_peers: 10,
            idle_segments_per_peer: 5,
            converge_devices: 20,
            converge_edits: 50,
            converge_base_files: 250,
            flush_every: 1_000,
            budget_secs: 10,
        }
    }

    /// Sizes of the history-growth measurement: overwrites of the same fields, and records
    /// deleted and re-added (100 000 and 10 000 for W, a twentieth for the quick preset).
    pub fn history_sizes(&self) -> (usize, usize) {
        if self.name == "quick" { (5_000, 500) } else { (100_000, 10_000) }
    }

    /// The preset called `name` (`full` or `quick`).
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "full" => Some(Self::full()),
            "quick" => Some(Self::quick()),
            _ => None,
        }
    }

    /// Tag assignments in the workload.
    pub fn assignments(&self) -> usize {
        self.files * ASSIGNMENTS_PER_FILE
    }

    /// Edits that build the workload: locations, tags, files, assignments.
    pub fn edits(&self) -> usize {
        LOCATIONS_SPEC.len() + self.tags + self.files + self.assignments()
    }
}

/// SplitMix64: a tiny, stable, seedable mixer (stable across Rust and crate versions, unlike
/// `rand`'s generators).
pub fn mix(seed: u64, x: u64) -> u64 {
    let mut z = seed ^ x.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x6A09_E667_F3BC_C909);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A tag of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagSpec {
    /// Level, 0 = root.
    pub level: usize,
    /// Index of the parent tag.
    pub parent: Option<usize>,
    /// Display name (unique among its siblings).
    pub name: String,
    /// Colour, for one tag in five.
    pub color: Option<String>,
}

/// A file of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSpec {
    /// Index into [`LOCATIONS_SPEC`].
    pub location: usize,
    /// Location-relative path.
    pub path: String,
    /// What the indexer knows about it.
    pub meta: FileMeta,
}

/// One edit of the workload, in the order it is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Add location `i` of [`LOCATIONS_SPEC`].
    Location(usize),
    /// Create tag `i`.
    Tag(usize),
    /// Index file `i`.
    File(usize),
    /// Assign tag `tag` to file `file`.
    Assign {
        /// File index.
        file: usize,
        /// Tag index.
        tag: usize,
    },
}

/// The deterministic workload of one preset.
#[derive(Clone, Debug)]
pub struct Workload {
    preset: Preset,
    seed: u64,
    tags: Vec<TagSpec>,
    tag_ids: Vec<String>,
    location_ids: Vec<String>,
    level_start: [usize; TAG_LEVELS + 1],
    perm_step: usize,
}

const WORDS: [&str; 16] = [
    "Family", "Travel", "Nature", "City", "Portrait", "Food", "Pets", "Sport", "Music", "Work", "Friends", "Beach",
    "Mountain", "Winter", "Party", "Art",
];

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Workload {
    /// The workload of `preset` with the default seed.
    pub fn new(preset: Preset) -> Self {
        Self::with_seed(preset, 0x0F0F_2026)
    }

    /// The workload of `preset` drawn with `seed`.
    pub fn with_seed(preset: Preset, seed: u64) -> Self {
        assert!(preset.tags >= TAG_LEVELS * 2, "need at least {} tags", TAG_LEVELS * 2);
        assert!(preset.files >= 2, "need at least 2 files");
        let mut level_start = [0; TAG_LEVELS + 1];
        let mut start = 0;
        for (level, pct) in LEVEL_PERCENT.iter().enumerate() {
            level_start[level] = start;
            let size = if level + 1 == TAG_LEVELS { preset.tags - start } else { (preset.tags * pct / 100).max(1) };
            start += size;
        }
        level_start[TAG_LEVELS] = preset.tags;
        let mut tags = Vec::with_capacity(preset.tags);
        for j in 0..preset.tags {
            let level = (0..TAG_LEVELS).rfind(|&l| level_start[l] <= j).expect("level 0 starts at 0");
            let parent = (level > 0).then(|| {
                let (lo, hi) = (level_start[level - 1], level_start[level]);
                lo + (mix(seed, j as u64) as usize) % (hi - lo)
            });
            let word = WORDS[(mix(seed ^ 1, j as u64) % WORDS.len() as u64) as usize];
            let color = (j % 5 == 0).then(|| format!("#{:06x}", mix(seed ^ 2, j as u64) & 0xff_ffff));
            tags.push(TagSpec { level, parent, name: format!("{word} {j}"), color });
        }
        let mut tag_ids: Vec<String> = Vec::with_capacity(tags.len());
        for t in &tags {
            let parent = t.parent.map(|p| tag_ids[p].as_str());
            let name = ids::clean_tag_name(&t.name).expect("generated tag names are valid");
            tag_ids.push(ids::tag_id(parent, &name));
        }
        let location_ids =
            LOCATIONS_SPEC.iter().map(|(_, rel)| ids::library_location_id(rel).expect("valid location path")).collect();
        let mut perm_step = 7919 % preset.files.max(2);
        while perm_step == 0 || gcd(perm_step, preset.files) != 1 {
            perm_step += 1;
        }
        Workload { preset, seed, tags, tag_ids, location_ids, level_start, perm_step }
    }

    /// The preset.
    pub fn preset(&self) -> &Preset {
        &self.preset
    }

    /// Tag `j`.
    pub fn tag(&self, j: usize) -> &TagSpec {
        &self.tags[j]
    }

    /// The deterministic id of tag `j`.
    pub fn tag_id(&self, j: usize) -> &str {
        &self.tag_ids[j]
    }

    /// First tag index of each level, then the tag count.
    pub fn level_starts(&self) -> &[usize; TAG_LEVELS + 1] {
        &self.level_start
    }

    /// The shared id of location `i`.
    pub fn location_id(&self, i: usize) -> &str {
        &self.location_ids[i]
    }

    /// File `i`.
    pub fn file(&self, i: usize) -> FileSpec {
        let h = mix(self.seed ^ 3, i as u64);
        let year = 2005 + h % 20;
        let month = 1 + (h >> 8) % 12;
        let location = usize::from(i % 5 == 4);
        let ext = if (h >> 16) % 10 == 0 { "png" } else { "jpg" };
        let path = format!("{year}/{month:02}/IMG_{i:06}.{ext}");
        let modified = 1_100_000_000_000 + ((h >> 20) % 600_000_000_000) as i64;
        let meta = FileMeta {
            size: 200_000 + ((h >> 24) % 12_000_000) as i64,
            date_modified: modified,
            date_created: modified - ((h >> 30) % 86_400_000) as i64,
            fingerprint: Some(format!("{:016x}{:016x}", mix(self.seed ^ 4, i as u64), h)),
            width: Some(640 + ((h >> 34) % 5376) as i64),
            height: Some(480 + ((h >> 40) % 3552) as i64),
            date_last_indexed: None,
        };
        FileSpec { location, path, meta }
    }

    /// The deterministic id of file `i`.
    pub fn file_id(&self, i: usize) -> String {
        let f = self.file(i);
        ids::file_id(&self.location_ids[f.location], &f.path).expect("valid generated path")
    }

    /// How many tags file `i` gets: 1..=5 for the first of a pair and 6 minus that for the
    /// second, so the average is exactly 3 (a last unpaired file gets 3).
    pub fn tags_of_file(&self, i: usize) -> usize {
        if i + 1 == self.preset.files && self.preset.files % 2 == 1 {
            return ASSIGNMENTS_PER_FILE;
        }
        let k = 1 + (mix(self.seed ^ 5, (i / 2) as u64) % MAX_TAGS_PER_FILE as u64) as usize;
        if i % 2 == 0 { k } else { 2 * ASSIGNMENTS_PER_FILE - k }
    }

    /// The `round`-th tag of file `i`: popular tags (low indices) are picked more often, and
    /// rounds `0..ROUND_EXTRA + EXTRA_ROUNDS` give distinct tags for one file.
    pub fn assignment_tag(&self, i: usize, round: usize) -> usize {
        let t = self.preset.tags;
        let u = (mix(self.seed ^ 6, i as u64) >> 11) as f64 / (1u64 << 53) as f64;
        let base = ((t as f64) * u * u) as usize;
        let max_stride = ((t - 1) / (ROUND_EXTRA + EXTRA_ROUNDS)).max(1);
        let stride = 1 + (mix(self.seed ^ 7, i as u64) as usize) % max_stride;
        (base + round * stride) % t
    }

    /// The `q`-th file of a fixed permutation of all files (assignments visit files in this
    /// order, so consecutive assignments touch unrelated records).
    pub fn permuted_file(&self, q: usize) -> usize {
        (q * self.perm_step + 17) % self.preset.files
    }

    /// Every edit that builds the workload, in order: locations, tags (parents first), files,
    /// then the assignments round by round over the permuted files.
    pub fn edits(&self) -> impl Iterator<Item = Edit> + '_ {
        let locations = (0..LOCATIONS_SPEC.len()).map(Edit::Location);
        let tags = (0..self.preset.tags).map(Edit::Tag);
        let files = (0..self.preset.files).map(Edit::File);
        let assignments = (0..MAX_TAGS_PER_FILE).flat_map(move |round| {
            (0..self.preset.files).filter_map(move |q| {
                let file = self.permuted_file(q);
                (self.tags_of_file(file) > round).then(|| Edit::Assign { file, tag: self.assignment_tag(file, round) })
            })
        });
        locations.chain(tags).chain(files).chain(assignments)
    }

    /// `n` assignments the workload does not make (one per file, over the permuted files),
    /// from extra round `extra` (`0..EXTRA_ROUNDS`), skipping the first `skip` files.
    pub fn new_assignments(&self, extra: usize, skip: usize, n: usize) -> impl Iterator<Item = Edit> + '_ {
        assert!(extra < EXTRA_ROUNDS, "only {EXTRA_ROUNDS} extra rounds");
        (skip..skip + n).map(move |q| {
            let file = self.permuted_file(q % self.preset.files);
            Edit::Assign { file, tag: self.assignment_tag(file, ROUND_EXTRA + extra) }
        })
    }

    /// The op batch the model writes for `edit` on a library that holds every earlier edit of
    /// [`Workload::edits`]. `orders` carries the last sibling order key per parent between
    /// calls (start with an empty map).
    pub fn ops(&self, edit: Edit, orders: &mut HashMap<Option<usize>, FractionalIndex>) -> Vec<Op> {
        match edit {
            Edit::Location(i) => {
                let (name, rel) = LOCATIONS_SPEC[i];
                let id = self.location_id(i);
                vec![
                    Op::create(LOCATIONS, id),
                    Op::put(LOCATIONS, id, "name", name),
                    Op::put(LOCATIONS, id, "dateAdded", RAW_DATE_ADDED),
                    Op::put(LOCATIONS, id, "relPath", ids::normalize_rel_path(rel).expect("valid path")),
                ]
            }
            Edit::Tag(j) => {
                let t = &self.tags[j];
                let id = self.tag_id(j);
                let order = match orders.get(&t.parent) {
                    Some(last) => FractionalIndex::new_after(last),
                    None => FractionalIndex::default(),
                };
                let order_string = order.to_string();
                orders.insert(t.parent, order);
                let name = ids::clean_tag_name(&t.name).expect("valid tag name");
                let mut ops = vec![
                    Op::create(TAGS, id),
                    Op::put(TAGS, id, "name", name),
                    Op::put(TAGS, id, "parent", Value::from(t.parent.map(|p| self.tag_id(p).to_owned()))),
                    Op::put(TAGS, id, "order", order_string),
                    Op::put(TAGS, id, "dateAdded", RAW_DATE_ADDED),
                ];
                if let Some(c) = &t.color {
                    ops.push(Op::put(TAGS, id, "color", c.as_str()));
                }
                ops
            }
            Edit::File(i) => {
                let f = self.file(i);
                let location = self.location_id(f.location);
                let path = ids::normalize_rel_path(&f.path).expect("valid path");
                let id = ids::file_id(location, &path).expect("valid path");
                layout::create_file_ops(&id, &layout::Meta::new(location, &path, &f.meta, RAW_DATE_ADDED))
            }
            Edit::Assign { file, tag } => {
                vec![Op::set_add(FILES, &self.file_id(file), layout::FILE_TAGS, self.tag_id(tag))]
            }
        }
    }

    /// Makes `edit` through the model, as the app would.
    pub fn apply_model<D: Document>(&self, lib: &Library<D>, edit: Edit) -> onefolder_model::Result<()> {
        self.model_edit(edit).apply(lib)
    }

    /// The arguments of the model call that makes `edit`: what an app holds when it calls the
    /// model (its files' ids, the indexer's paths and metadata). The timed builds make them
    /// before their timer starts, as the raw baseline makes its ops ([`Workload::ops`]).
    pub fn model_edit(&self, edit: Edit) -> ModelEdit<'_> {
        match edit {
            Edit::Location(i) => {
                let (name, rel) = LOCATIONS_SPEC[i];
                ModelEdit::Location { name, rel }
            }
            Edit::Tag(j) => {
                let t = &self.tags[j];
                ModelEdit::Tag { parent: t.parent.map(|p| self.tag_id(p)), name: &t.name, color: t.color.as_deref() }
            }
            Edit::File(i) => {
                let f = self.file(i);
                ModelEdit::File { location: self.location_id(f.location), path: f.path, meta: f.meta }
            }
            Edit::Assign { file, tag } => ModelEdit::Assign { file: self.file_id(file), tag: self.tag_id(tag) },
        }
    }
}

/// One [`Edit`] as the arguments of its model call ([`Workload::model_edit`]).
#[derive(Clone, Debug)]
pub enum ModelEdit<'w> {
    /// `Library::add_location(name, Some(rel))`.
    Location {
        /// Display name.
        name: &'static str,
        /// Library-relative path.
        rel: &'static str,
    },
    /// `Library::create_tag(parent, name, color)`.
    Tag {
        /// Parent tag id.
        parent: Option<&'w str>,
        /// Tag name.
        name: &'w str,
        /// Color.
        color: Option<&'w str>,
    },
    /// `Library::upsert_file(location, path, meta)`.
    File {
        /// Location id.
        location: &'w str,
        /// Location-relative path.
        path: String,
        /// What the indexer knows about it.
        meta: FileMeta,
    },
    /// `Library::assign(file, tag)`.
    Assign {
        /// File id.
        file: String,
        /// Tag id.
        tag: &'w str,
    },
}

impl ModelEdit<'_> {
    /// Makes the model call.
    pub fn apply<D: Document>(&self, lib: &Library<D>) -> onefolder_model::Result<()> {
        match self {
            ModelEdit::Location { name, rel } => {
                lib.add_location(name, Some(rel))?;
            }
            ModelEdit::Tag { parent, name, color } => {
                lib.create_tag(*parent, name, *color)?;
            }
            ModelEdit::File { location, path, meta } => {
                lib.upsert_file(location, path, meta)?;
            }
            ModelEdit::Assign { file, tag } => lib.assign(file, tag)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Preset {
        Preset { name: "custom".into(), files: 60, tags: 20, ..Preset::quick() }
    }

    #[test]
    fn sizes_match_the_preset() {
        for preset in [tiny(), Preset::quick()] {
            let w = Workload::new(preset.clone());
            let mut counts = [0usize; 4];
            for e in w.edits() {
                counts[match e {
                    Edit::Location(_) => 0,
                    Edit::Tag(_) => 1,
                    Edit::File(_) => 2,
                    Edit::Assign { .. } => 3,
                }] += 1;
            }
            assert_eq!(counts, [LOCATIONS_SPEC.len(), preset.tags, preset.files, preset.assignments()]);
            assert_eq!(w.edits().count(), preset.edits());
            // Five levels, each parent one level up.
            assert_eq!(w.tag(preset.tags - 1).level, TAG_LEVELS - 1);
            for j in 0..preset.tags {
                let t = w.tag(j);
                assert_eq!(t.parent.map(|p| w.tag(p).level + 1).unwrap_or(0), t.level);
            }
        }
    }

    #[test]
    fn assignments_are_distinct_and_extra_ones_are_new() {
        let w = Workload::new(Preset::quick());
        let mut seen = std::collections::HashSet::new();
        for e in w.edits() {
            if let Edit::Assign { file, tag } = e {
                assert!(seen.insert((file, tag)), "duplicate assignment {file} {tag}");
            }
        }
        for extra in 0..EXTRA_ROUNDS {
            for e in w.new_assignments(extra, 0, 1000) {
                let Edit::Assign { file, tag } = e else { unreachable!() };
                assert!(seen.insert((file, tag)), "extra assignment {file} {tag} is not new");
            }
        }
    }

    #[test]
    fn same_seed_same_workload() {
        let a = Workload::new(Preset::quick());
        let b = Workload::new(Preset::quick());
        assert!(a.edits().zip(b.edits()).all(|(x, y)| x == y));
        assert_eq!(a.file(1234), b.file(1234));
        assert_eq!(a.tag_id(50), b.tag_id(50));
        let c = Workload::with_seed(Preset::quick(), 1);
        assert_ne!(a.file(1234), c.file(1234));
    }
}
