//! `init` and `join`: set up this computer's local state for a library.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use onefolder_core::{DeviceId, LibraryId, OpenMode, Replica, ReplicaConfig};
use onefolder_model::Library;
use serde::Serialize;

use crate::backend;
use crate::cmd::sync::record_flush;
use crate::error::user;
use crate::out::outln;
use crate::remote::{self, TransportSpec};
use crate::session::{Global, explain_open_error};
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
        setup(&folder, &args.engine, &args.store, &args.transport, args.name, &target, OpenMode::Create, global).await;
    if let (Err(_), Target::Default { staging }) = (&result, &target) {
        let _ = std::fs::remove_dir_all(staging);
    }
    result
}

/// Runs `join`.
pub async fn join(args: JoinArgs, global: &Global) -> Result<()> {
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
    setup(&folder, &manifest.engine, &args.store, &args.transport, args.name, &target, OpenMode::Join, global).await
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
) -> Result<()> {
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
    if global.json {
        return crate::out::json(&report);
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
    Ok(())
}
