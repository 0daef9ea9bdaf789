//! `onefolder-sync`: keeps a OneFolder tag library in sync between computers through a folder
//! that a sync client (Google Drive, Dropbox, OneDrive, Syncthing) already shares.
//!
//! Exit codes: 0 success, 1 a user error (the one-line message says what to do), 2 corruption
//! found (a damaged segment or local store).

mod backend;
mod cmd;
mod criteria;
mod demo;
mod error;
mod host;
mod out;
mod remote;
mod session;
mod state;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd::{auth, backup, data, devices, index, inspect, location, prototype, search, setup, sync, tags};
use crate::session::Global;

const AFTER_HELP: &str = "\
Getting started (the library folder is one your sync client shares):
  onefolder-sync init ~/Dropbox/Pictures       # on the first computer
  onefolder-sync index                         # add the pictures to the library
  onefolder-sync tag create Animals/Cats --color orange
  onefolder-sync tag add 2026/tom.jpg Animals/Cats
  onefolder-sync sync --once                   # share the edits
  onefolder-sync join ~/Dropbox/Pictures       # on every other computer

Exit codes: 0 success, 1 user error, 2 corruption found.";

/// Sync a OneFolder tag library between computers through a shared folder — no server.
#[derive(Parser, Debug)]
#[command(name = "onefolder-sync", version, about, long_about = None, after_help = AFTER_HELP)]
struct Cli {
    /// This computer's local state for one library (default: the current library's state in
    /// the OS data directory). Two --state folders on one machine act as two computers.
    #[arg(long, global = true, env = "ONEFOLDER_SYNC_STATE", value_name = "DIR")]
    state: Option<PathBuf>,

    /// Use the library in FOLDER (its default local state on this computer); also tells a
    /// state where its library folder moved to.
    #[arg(long, global = true, env = "ONEFOLDER_SYNC_LIBRARY", value_name = "FOLDER")]
    library: Option<PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a library in a folder your sync client shares, with this computer as its first device.
    Init(setup::InitArgs),
    /// Use on this computer a library created on another one (once the folder has synced here).
    Join(setup::JoinArgs),
    /// After two computers both ran `init` on one folder: move this computer's library into the
    /// one the folder holds now (its edits merged, this computer joining it).
    MergeLibrary(setup::MergeLibraryArgs),
    /// Manage the folders whose files are in the library.
    #[command(subcommand)]
    Location(location::LocationCommand),
    /// Add new files, update changed ones, follow moves and renames, mark vanished files.
    Index(index::IndexArgs),
    /// Create, rename, move, delete, merge and colour tags; tag and untag files.
    #[command(subcommand)]
    Tag(tags::TagCommand),
    /// List the tags.
    Tags(tags::TagsArgs),
    /// List files, optionally only those with a tag, or without any.
    Files(tags::FilesArgs),
    /// Saved searches.
    #[command(subcommand)]
    Search(search::SearchCommand),
    /// Share this computer's edits and apply the other computers' (once, or continuously).
    Sync(sync::SyncArgs),
    /// Pending edits, the last flush, what was applied from each computer, skipped files.
    Status,
    /// The computers of this library.
    Devices(devices::DevicesArgs),
    /// Print the whole library as canonical JSON (the same bytes on converged computers).
    Export(data::ExportArgs),
    /// Restore an export or a backup: the library becomes equal to it, on every computer.
    Import(data::ImportArgs),
    /// Import the tags of OneFolder's JavaScript prototype (its
    /// onefolder_tags/database/<session>/database.yjs.db files) into this library, merging its
    /// duplicates; shared with the other computers by the next sync.
    ImportPrototype(prototype::ImportPrototypeArgs),
    /// Write a backup file of the library (or list the backups).
    Backup(backup::BackupArgs),
    /// Show what a backup file holds and when it was taken (no library needed).
    Peek(backup::PeekArgs),
    /// Sign in to Google Drive or Dropbox (for `--transport gdrive:PATH` / `dropbox:PATH`),
    /// show the sign-ins, sign out.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Show library.json, the device folders, every segment and its check, document statistics.
    Inspect(inspect::InspectArgs),
    /// Check every segment and the local store; exit code 2 if anything is corrupt.
    Verify,
    /// Two simulated computers edit one library (concurrently, too) through a temporary shared
    /// folder, sync, and show that they converge.
    Demo(demo::DemoArgs),
}

impl Command {
    /// Whether the command works on an existing local state, and so runs inside a `sync
    /// --watch` that holds it (see [`host`]).
    fn hostable(&self) -> bool {
        match self {
            Command::Init(_)
            | Command::Join(_)
            | Command::MergeLibrary(_)
            | Command::Peek(_)
            | Command::Auth(_)
            | Command::Demo(_) => false,
            Command::Inspect(args) => !args.is_segment(),
            _ => true,
        }
    }

    /// Whether the command reads its standard input (`import -`).
    fn reads_stdin(&self) -> bool {
        matches!(self, Command::Import(args) if args.file.as_os_str() == "-")
    }

    /// Makes the paths the user typed absolute against `cwd` (the caller's working directory,
    /// when the command runs inside a host).
    fn absolutize(&mut self, cwd: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() && p.as_os_str() != "-" {
                *p = cwd.join(&*p);
            }
        };
        match self {
            Command::Location(location::LocationCommand::Add { dir, .. }) => abs(dir),
            Command::Export(args) => args.output.iter_mut().for_each(abs),
            Command::Import(args) => abs(&mut args.file),
            Command::ImportPrototype(args) => abs(&mut args.folder),
            Command::Backup(args) => args.file.iter_mut().for_each(abs),
            _ => {}
        }
    }
}

/// Runs a command line sent by another process inside this `sync --watch` (see [`host`]):
/// parsed as here, with relative paths taken from the caller's `cwd`, on the host's library.
pub(crate) fn run_hosted(args: Vec<String>, cwd: PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = u8>>> {
    Box::pin(async move {
        let cli = match Cli::try_parse_from(&args) {
            Ok(cli) => cli,
            Err(e) => {
                out::err_line(e.render().to_string().trim_end());
                return if e.exit_code() == 0 { 0 } else { error::EXIT_USER };
            }
        };
        let Some(hosted) = host::hosted() else { return error::EXIT_USER };
        let mut command = cli.command;
        if !command.hostable() {
            out::err_line("error: this command does not run inside a running `sync --watch`; stop it first");
            return error::EXIT_USER;
        }
        command.absolutize(&cwd);
        let global = Global { state: Some(hosted.dir), library: None, json: cli.json };
        match dispatch(command, &global).await {
            Ok(_) => 0,
            Err(e) => {
                out::err_line(format!("error: {}", error::one_line(&e)));
                error::exit_code(&e)
            }
        }
    })
}

/// Sends the command to the `sync --watch` that holds its local state, if one does.
fn forward(global: &Global, args: Option<&Vec<String>>, stdin: bool) -> Option<ExitCode> {
    let args = args?;
    let dir = state::locate(global.state.as_deref(), global.library.as_deref()).ok()?.dir;
    host::forward(&dir, args.clone(), stdin).map(ExitCode::from)
}

fn init_logging(verbose: u8) {
    // Sync problems are reported by the commands themselves; logging is for diagnosis.
    let default = match verbose {
        0 => "error",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn dispatch(command: Command, global: &Global) -> anyhow::Result<ExitCode> {
    match command {
        Command::Init(args) => setup::init(args, global).await?,
        Command::Join(args) => setup::join(args, global).await?,
        Command::MergeLibrary(args) => setup::merge_library(args, global).await?,
        Command::Location(cmd) => location::run(cmd, global).await?,
        Command::Index(args) => index::run(args, global).await?,
        Command::Tag(cmd) => tags::run(cmd, global).await?,
        Command::Tags(args) => tags::list(args, global).await?,
        Command::Files(args) => tags::files(args, global).await?,
        Command::Search(cmd) => search::run(cmd, global).await?,
        Command::Sync(args) => sync::run(args, global).await?,
        Command::Status => devices::status(global).await?,
        Command::Devices(args) => devices::run(args, global).await?,
        Command::Export(args) => data::export(args, global).await?,
        Command::Import(args) => data::import(args, global).await?,
        Command::ImportPrototype(args) => prototype::run(args, global).await?,
        Command::Backup(args) => backup::backup(args, global).await?,
        Command::Peek(args) => backup::peek(args, global)?,
        Command::Auth(cmd) => auth::run(cmd, global).await?,
        Command::Inspect(args) => inspect::inspect(args, global).await?,
        Command::Verify => inspect::verify(global).await?,
        Command::Demo(args) => return demo::run(args, global.json).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// The process allocator: faster than the system's for the many small values yrs and the
/// model allocate (a tag query on a library of 100 000 files: 3 ms with glibc, 0.8 ms with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The command line as text, to send it to a running `sync --watch` (not when it is not
    // UTF-8: such a command runs here, once the watch has stopped).
    let args: Option<Vec<String>> = std::env::args_os().map(|a| a.into_string().ok()).collect();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and --version succeed; a usage mistake is a user error (1), not clap's 2.
            let _ = e.print();
            return if e.exit_code() == 0 { ExitCode::SUCCESS } else { ExitCode::from(error::EXIT_USER) };
        }
    };
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_USER);
        }
    };
    let global = Global { state: cli.state, library: cli.library, json: cli.json };
    let (hostable, stdin) = (cli.command.hostable(), cli.command.reads_stdin());
    if hostable && let Some(code) = forward(&global, args.as_ref(), stdin) {
        return code;
    }
    match runtime.block_on(dispatch(cli.command, &global)) {
        Ok(code) => code,
        // The watch started after the first try: the command has done nothing yet.
        Err(e) if hostable && e.downcast_ref::<host::UseHost>().is_some() => {
            forward(&global, args.as_ref(), stdin).unwrap_or_else(|| error::report(&e))
        }
        Err(e) => error::report(&e),
    }
}
