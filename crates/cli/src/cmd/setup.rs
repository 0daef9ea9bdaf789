//! `init` and `join`: set up this computer's local state for a library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use clap::Args;
use onefolder_core::{DeviceId, LibraryId, OpenMode, Replica, ReplicaConfig};
use onefolder_model::{Export, ImportMode, Library};
use serde::Serialize;

use crate::backend;
use crate::cmd::sync::record_flush;
use crate::error::user;
use crate::out::outln;
use crate::remote::{self, TransportSpec};
use crate::session::{Global, Session, explain_open_error, path_setting};
use crate::state::{self, StateConfig};

/// Options of `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The library folder: the folder of pictures that Dropbox, Drive, OneDrive or Syncthing
    /// shares between your computers. It becomes the library's primary location.
    pub folder: PathBuf,
    /// The CRDT engine of the library (yrs or automerge); every computer uses the one named here.
    #[arg(long, value_name = "ENGINE", default_value = backend::DEFAULT_ENGINE)]
    pub engine: String,
    /// How this computer keeps its local state (sqlite or lmdb).
    #[arg(long, value_name = "STORE", default_value = backend::DEFAULT_STORE)]
    pub store: String,
    /// This computer's name as the other computers see it (default: the host name).
    #[arg(long, value_name = "DEVICE_NAME")]
    pub name: Option<String>,
    /// Where the library's database travels: `folder` (inside FOLDER, shared by your sync
    /// client), or a provider's API: `gdrive:PATH`, `dropbox:PATH` (PATH: the library folder
    /// at the provider; sign in first with `onefolder-sync auth`), `s3://BUCKET/PREFIX`,
    /// `webdav://HOST/PATH`.
    #[arg(long, value_name = "TRANSPORT", default_value = "folder", value_parser = remote::parse_spec)]
    pub transport: TransportSpec,
}

/// Options of `join`.
#[derive(Args, Debug)]
pub struct JoinArgs {
    /// The library folder as synced onto this computer (it holds `onefolder_tags/library.json`).
    pub folder: PathBuf,
    /// How this computer keeps its local state (sqlite or lmdb).
    #[arg(long, value_name = "STORE", default_value = backend::DEFAULT_STORE)]
    pub store: String,
    /// This computer's name as the other computers see it (default: the host name).
    #[arg(long, value_name = "DEVICE_NAME")]
    pub name: Option<String>,
    /// Fail unless the library uses this engine (the engine always comes from `library.json`).
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Where the library's database travels: `folder` (inside FOLDER, shared by your sync
    /// client), or a provider's API: `gdrive:PATH`, `dropbox:PATH` (PATH: the library folder
    /// at the provider; sign in first with `onefolder-sync auth`), `s3://BUCKET/PREFIX`,
    /// `webdav://HOST/PATH`.
    #[arg(long, value_name = "TRANSPORT", default_value = "folder", value_parser = remote::parse_spec)]
    pub transport: TransportSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SetupReport {
    library: PathBuf,
    library_id: LibraryId,
    engine: String,
    store: String,
    transport: TransportSpec,
    device: DeviceId,
    device_name: String,
    state: PathBuf,
    current: bool,
    primary_location: String,
    files: usize,
    tags: usize,
}

/// Where the state goes: the `--state` directory, or the default one (staged under a temporary
/// name while the library id is not known yet).
enum Target {
    Explicit(PathBuf),
    Default { staging: PathBuf },
}

impl Target {
    fn dir(&self) -> &Path {
        match self {
            Target::Explicit(dir) => dir,
            Target::Default { staging } => staging,
        }
    }
}

fn check_state_dir(dir: &Path, library: &Path) -> Result<()> {
    if state::is_inside(dir, library) {
        return Err(user(format!(
            "the local state {} must not be inside the synced library folder {}; pass a --state outside it",
            dir.display(),
            library.display()
        )));
    }
    if let Some(existing) = state::read_config(dir)? {
        return Err(user(format!(
            "{} already holds the local state of the library in {}; one library per state: pass another --state",
            dir.display(),
            existing.library.display()
        )));
    }
    Ok(())
}

/// The library manifest at the provider (`None` when there is none yet).
async fn remote_manifest(spec: &TransportSpec) -> Result<Option<onefolder_core::LibraryManifest>> {
    let transport = backend::transport(spec, Path::new("."))?;
    let Some(bytes) = transport.read_manifest().await.with_context(|| format!("reading library.json at {spec}"))?
    else {
        return Ok(None);
    };
    let manifest = serde_json::from_slice(&bytes)
        .map_err(|e| user(format!("library.json at {spec} is not a valid library manifest: {e}")))?;
    Ok(Some(manifest))
}

/// Runs `init`.
pub async fn init(args: InitArgs, global: &Global) -> Result<()> {
    let folder = state::existing_folder(&args.folder)?;
    if args.transport.is_folder() && state::read_manifest(&folder)?.is_some() {
        return Err(user(format!(
            "{} is already a OneFolder library (it has {}); to use it on this computer run `onefolder-sync join {}`",
            folder.display(),
            state::manifest_path(&folder).display(),
            args.folder.display()
        )));
    }
    if !args.transport.is_folder() && remote_manifest(&args.transport).await?.is_some() {
        return Err(user(format!(
            "{} already holds a OneFolder library; to use it on this computer run `onefolder-sync join {} \
             --transport {}`",
            args.transport,
            args.folder.display(),
            args.transport
        )));
    }
    backend::check_engine(&args.engine)?;
    backend::check_store(&args.store)?;
    let target = match &global.state {
        Some(dir) => Target::Explicit(state::absolute(dir)?),
        None => {
            let id = DeviceId::random();
            Target::Default { staging: state::data_dir()?.join("libraries").join(format!(".new-{id}")) }
        }
    };
    check_state_dir(target.dir(), &folder)?;
    let result =
        setup(&folder, &args.engine, &args.store, &args.transport, args.name, &target, OpenMode::Create, global, true)
            .await
            .map(drop);
    if let (Err(_), Target::Default { staging }) = (&result, &target) {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

/// Runs `join`.
pub async fn join(args: JoinArgs, global: &Global) -> Result<()> {
    join_reporting(args, global, true).await.map(drop)
}

/// `join`, printing its report or not; returns it.
async fn join_reporting(args: JoinArgs, global: &Global, print: bool) -> Result<SetupReport> {
    let folder = state::existing_folder(&args.folder)?;
    let manifest = if args.transport.is_folder() {
        state::read_manifest(&folder)?.ok_or_else(|| {
            user(format!(
                "{} is not a OneFolder library yet (no {}); wait until your sync client has downloaded the \
                 onefolder_tags folder, or create a library with `onefolder-sync init {}`",
                folder.display(),
                state::manifest_path(&folder).display(),
                args.folder.display()
            ))
        })?
    } else {
        remote_manifest(&args.transport).await?.ok_or_else(|| {
            user(format!(
                "{} holds no OneFolder library (no onefolder_tags/library.json); create one with \
                 `onefolder-sync init {} --transport {}`",
                args.transport,
                args.folder.display(),
                args.transport
            ))
        })?
    };
    if let Some(wanted) = &args.engine
        && *wanted != manifest.engine
    {
        return Err(user(format!(
            "wrong engine: the library in {} uses the {} engine, not {wanted}",
            folder.display(),
            manifest.engine
        )));
    }
    backend::check_engine(&manifest.engine).map_err(|e| {
        user(format!("this library uses the {} engine: {}", manifest.engine, crate::error::one_line(&e)))
    })?;
    backend::check_store(&args.store)?;
    let target = match &global.state {
        Some(dir) => Target::Explicit(state::absolute(dir)?),
        None => {
            let dir = state::default_state_dir(manifest.library_id)?;
            if state::read_config(&dir)?.is_some() {
                return Err(user(format!(
                    "this computer already joined the library in {} (local state in {}); to set up a second \
                     device on this computer pass --state DIR",
                    folder.display(),
                    dir.display()
                )));
            }
            Target::Explicit(dir)
        }
    };
    check_state_dir(target.dir(), &folder)?;
    setup(&folder, &manifest.engine, &args.store, &args.transport, args.name, &target, OpenMode::Join, global, print)
        .await
}

#[allow(clippy::too_many_arguments)]
async fn setup(
    folder: &Path,
    engine: &str,
    store: &str,
    transport: &TransportSpec,
    name: Option<String>,
    target: &Target,
    mode: OpenMode,
    global: &Global,
    print: bool,
) -> Result<SetupReport> {
    let device_name = name.unwrap_or_else(state::host_name);
    let dir = target.dir().to_path_buf();
    let rc = ReplicaConfig { device_name: device_name.clone(), mode, ..Default::default() };
    let replica: Arc<Replica> = Arc::new(
        backend::open(engine, store, &dir, folder, transport, rc)
            .await
            .map_err(|e| explain_open_error(e, folder, &dir))?,
    );
    let lib = Library::new(replica.clone());
    // A joining computer first takes in what the others wrote, so the primary location is
    // matched rather than created twice.
    let first = replica.sync_once().await?;
    let location_name =
        folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Library".into());
    let primary = lib.add_location(&location_name, Some("")).context("adding the primary location")?;
    let last = replica.sync_once().await?;
    for flushed in first.flushed.iter().chain(last.flushed.iter()) {
        record_flush(&replica, flushed)?;
    }
    let manifest = replica.manifest().clone();
    let device = replica.device();
    let (files, tags) = (lib.file_counts()?.files, lib.tags()?.len());
    drop(lib);
    drop(replica);

    let final_dir = match target {
        Target::Explicit(dir) => dir.clone(),
        Target::Default { staging } => {
            let dir = state::default_state_dir(manifest.library_id)?;
            std::fs::rename(staging, &dir)
                .with_context(|| format!("moving the new local state {} to {}", staging.display(), dir.display()))?;
            dir
        }
    };
    let config = StateConfig {
        format: state::STATE_FORMAT,
        library: folder.to_path_buf(),
        library_id: manifest.library_id,
        engine: engine.to_owned(),
        store: store.to_owned(),
        device_name: device_name.clone(),
        device_id: Some(device),
        transport: transport.clone(),
    };
    state::write_config(&final_dir, &config)?;
    let current = global.state.is_none();
    if current {
        state::set_current(&final_dir)?;
    }

    let report = SetupReport {
        library: folder.to_path_buf(),
        library_id: manifest.library_id,
        engine: engine.to_owned(),
        store: store.to_owned(),
        transport: transport.clone(),
        device,
        device_name,
        state: final_dir,
        current,
        primary_location: primary,
        files,
        tags,
    };
    if !print {
        return Ok(report);
    }
    if global.json {
        crate::out::json(&report)?;
        return Ok(report);
    }
    match mode {
        OpenMode::Create => outln!("Created library {} in {}", report.library_id, report.library.display()),
        _ => outln!(
            "Joined library {} in {} ({} files, {} tags so far)",
            report.library_id,
            report.library.display(),
            report.files,
            report.tags
        ),
    }
    outln!(
        "This computer: {} ({}), engine {}, store {}",
        report.device_name,
        report.device,
        report.engine,
        report.store
    );
    outln!("Local state: {}", report.state.display());
    if !report.transport.is_folder() {
        outln!("Database: {}/onefolder_tags (through the provider's API)", report.transport);
    }
    outln!();
    match mode {
        OpenMode::Create => {
            outln!("Next: `onefolder-sync index` adds the pictures; `onefolder-sync sync --once` shares your edits.");
            outln!("On another computer, once the folder has synced there: `onefolder-sync join FOLDER`.");
        }
        _ => {
            outln!("Next: `onefolder-sync index` checks this computer's copy of the pictures;");
            outln!("`onefolder-sync sync --watch` keeps the library in sync while it runs.");
        }
    }
    Ok(report)
}

/// Options of `merge-library`.
#[derive(Args, Debug)]
pub struct MergeLibraryArgs {
    /// Where this computer's new local state goes (default: the OS data directory, as for
    /// `join`).
    #[arg(long, value_name = "DIR")]
    pub new_state: Option<PathBuf>,
}

/// The library a local state holds, read from its store alone (the shared folder is not
/// needed), with this computer's paths of the locations outside the library folder.
fn stored_library(config: &StateConfig, dir: &Path) -> Result<(Export, BTreeMap<String, String>)> {
    let store = backend::store(&config.store, dir)?;
    let stored = store.load().context("reading the old local state")?;
    let mut engine = backend::engine(&config.engine)?;
    let log: Vec<&[u8]> = stored.log.iter().map(|e| e.payload.as_slice()).collect();
    engine.replay(stored.snapshot.as_deref(), &log).context("reading the old local state")?;
    let export = Library::new(Mutex::new(engine)).export()?;
    let mut paths = BTreeMap::new();
    for id in export.locations.iter().filter(|(_, l)| l.rel_path.is_none()).map(|(id, _)| id) {
        if let Some(path) = store.get_meta(&format!("setting/{}", path_setting(id)))? {
            paths.insert(id.clone(), String::from_utf8_lossy(&path).into_owned());
        }
    }
    Ok((export, paths))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MergeReport {
    /// The library this computer is in now.
    joined: SetupReport,
    /// The library it was in, merged into that one.
    merged_library: LibraryId,
    /// The old local state, kept as it was.
    old_state: PathBuf,
    /// What the merge added.
    tags: usize,
    files: usize,
    /// Files of the old device's folder removed from the shared folder.
    retired_files: usize,
}

/// Runs `merge-library`: for a computer whose library lost the race for `library.json`
/// (two computers ran `init` on one folder before the sync client had carried the other's
/// over). Its library is read from its local state, the library the folder holds now is
/// joined, and everything is imported into it as a merge; the old device's folder (segments
/// of the other library, which the other computers skip) is removed from the shared folder.
pub async fn merge_library(args: MergeLibraryArgs, global: &Global) -> Result<()> {
    let old = state::locate_state(global.state.as_deref())?;
    let folder = old.config.library.clone();
    if !old.config.transport.is_folder() {
        return Err(user(
            "merge-library is for a library folder shared by a sync client; a provider's API never keeps two libraries",
        ));
    }
    let manifest = state::read_manifest(&folder)?.ok_or_else(|| {
        user(format!("{} holds no library.json (yet?); there is nothing to merge into", folder.display()))
    })?;
    if manifest.library_id == old.config.library_id {
        return Err(user(format!(
            "the local state in {} belongs to the library in {}; there is nothing to merge",
            old.dir.display(),
            folder.display()
        )));
    }
    let (export, paths) = stored_library(&old.config, &old.dir)?;
    let join = JoinArgs {
        folder: folder.clone(),
        store: old.config.store.clone(),
        name: Some(old.config.device_name.clone()),
        engine: None,
        transport: TransportSpec::Folder,
    };
    let joined_global = Global { state: args.new_state.clone(), library: None, json: global.json };
    let joined = join_reporting(join, &joined_global, false).await?;
    let s = Session::open(&Global { state: Some(joined.state.clone()), library: None, json: global.json }).await?;
    let before = s.lib.export()?;
    s.lib.import(&export, ImportMode::Merge).context("merging the old library")?;
    for (id, path) in &paths {
        s.replica.set_setting(&path_setting(id), Some(path))?;
    }
    let after = s.lib.export()?;
    let report = s.replica.sync_once().await?;
    if let Some(f) = &report.flushed {
        record_flush(&s.replica, f)?;
    }
    // The old device's segments are of the other library: every computer skips them.
    let mut retired_files = 0;
    if let Some(device) = old.config.device_id {
        let transport = s.replica.transport();
        for file in transport.list(&device).await.context("listing the old device's folder")? {
            transport.delete(&device, &file.name).await.with_context(|| format!("removing {}", file.name))?;
            retired_files += 1;
        }
    }
    retire_manifest_copies(&folder, old.config.library_id);
    let merged = MergeReport {
        merged_library: old.config.library_id,
        old_state: old.dir.clone(),
        tags: after.tags.len() - before.tags.len().min(after.tags.len()),
        files: after.files.len() - before.files.len().min(after.files.len()),
        retired_files,
        joined,
    };
    if global.json {
        return crate::out::json(&merged);
    }
    outln!(
        "Merged library {} into library {} in {}: {} and {} added",
        merged.merged_library,
        merged.joined.library_id,
        folder.display(),
        crate::out::n(merged.tags, "tag"),
        crate::out::n(merged.files, "file")
    );
    outln!("This computer: {} ({})", merged.joined.device_name, merged.joined.device);
    outln!(
        "Local state: {} (the old one, {}, is kept; delete it when you like)",
        merged.joined.state.display(),
        merged.old_state.display()
    );
    outln!("`onefolder-sync sync --once` (or a running `sync --watch`) shares the merge with the other computers.");
    Ok(())
}

/// Removes the sync client's conflict copies of `library.json` that name the merged library
/// (`library.sync-conflict-….json`, `library (… conflicted copy …).json`): they would keep
/// saying that two libraries share the folder.
fn retire_manifest_copies(folder: &Path, merged: LibraryId) {
    let dir = state::manifest_path(folder).parent().map(Path::to_path_buf).unwrap_or_default();
    for copy in manifest_copies(&dir) {
        let names_merged = std::fs::read(&copy)
            .ok()
            .and_then(|b| serde_json::from_slice::<onefolder_core::LibraryManifest>(&b).ok())
            .is_some_and(|m| m.library_id == merged);
        if names_merged && let Err(e) = std::fs::remove_file(&copy) {
            tracing::warn!(file = %copy.display(), error = %e, "could not remove a conflict copy of library.json");
        }
    }
}

/// The sync client's conflict copies of `library.json` in `onefolder_tags/`.
pub fn manifest_copies(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n != "library.json" && n.starts_with("library") && n.to_ascii_lowercase().ends_with(".json")
            })
        })
        .collect()
}
