//! Commands while `sync --watch` runs: the watching process *hosts* its open library on a
//! local socket, `<state dir>/sync.sock`, and every other command for the same state runs
//! inside it instead of opening the store a second time.
//!
//! A command first tries the socket. When a host answers, the command line (with the caller's
//! working directory, so relative paths mean what the user typed) is sent over; the host
//! parses it with the same parser, runs it on its own replica — the edit is committed to the
//! local store before the answer comes back, and the running sync shares it — and streams the
//! output back: stdout lines, stderr lines, then the exit code. Nothing is re-implemented for
//! the hosted case: the command's code is the same, only [`Session::open`] hands it the host's
//! replica and [`crate::out`] sends its lines to the caller.
//!
//! When no host answers and the store is held by another short command, the command waits
//! for it ([`wait_budget`]) instead of failing. A crashed holder blocks nobody: the store's lock
//! dies with its process, and a socket nobody listens on is refused at once.
//!
//! The socket is Unix-only (Linux, macOS); elsewhere commands wait for the lock.
//!
//! [`Session::open`]: crate::session::Session::open

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::Replica;
use serde::{Deserialize, Serialize};

use crate::state::StateConfig;

/// The socket's file name in the state directory.
pub const SOCKET_FILE: &str = "sync.sock";

/// How long a command waits for another command to release the local state: 120 s, or the
/// seconds in `ONEFOLDER_SYNC_WAIT` (0 fails at once).
pub fn wait_budget() -> Duration {
    std::env::var("ONEFOLDER_SYNC_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(Duration::from_secs(120))
}

/// The socket of a state directory.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_FILE)
}

/// What a command sends to the host: one JSON line.
#[derive(Serialize, Deserialize, Debug)]
struct Request {
    /// The caller's program version: a host of another version refuses (its parser may differ).
    version: String,
    /// The whole command line, program name first.
    args: Vec<String>,
    /// The caller's working directory: relative paths are taken from it.
    cwd: PathBuf,
    /// For `import -`: a file holding what the caller read from its standard input.
    stdin: Option<PathBuf>,
}

/// What the host sends back, one JSON line each: output lines in order, then the exit code.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
enum Frame {
    /// A line for the caller's stdout.
    Out(String),
    /// A line for the caller's stderr.
    Err(String),
    /// The command finished with this exit code.
    Exit(u8),
}

/// The library a host serves, shared by every command it runs.
#[derive(Clone)]
pub struct Hosted {
    /// The state directory.
    pub dir: PathBuf,
    /// Its `state.json`.
    pub config: StateConfig,
    /// The host's replica.
    pub replica: Arc<Replica>,
}

/// A command running inside the host on behalf of a caller.
#[derive(Clone)]
struct Forwarded {
    hosted: Hosted,
    frames: tokio::sync::mpsc::UnboundedSender<Frame>,
    stdin: Option<PathBuf>,
}

tokio::task_local! {
    static FORWARDED: Forwarded;
}

/// The host's library, when the current command runs inside a host.
pub fn hosted() -> Option<Hosted> {
    FORWARDED.try_with(|f| f.hosted.clone()).ok()
}

/// Sends an output line to the caller when the current command runs inside a host; gives the
/// line back otherwise.
pub(crate) fn send_out(line: String, to_stderr: bool) -> Option<String> {
    match FORWARDED.try_with(|f| f.frames.clone()) {
        Ok(frames) => {
            // A caller that went away (Ctrl-C) no longer reads: its output is dropped.
            let _ = frames.send(if to_stderr { Frame::Err(line) } else { Frame::Out(line) });
            None
        }
        Err(_) => Some(line),
    }
}

/// The bytes a command reads as its standard input: the caller's, when the command runs
/// inside a host.
pub fn read_stdin() -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if let Ok(Some(file)) = FORWARDED.try_with(|f| f.stdin.clone()) {
        return std::fs::read(file);
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The error a command stops with when the store it needs is held by a host: the caller
/// sends the command to the host instead (see `main`).
#[derive(Debug, thiserror::Error)]
#[error("the local state in {} is in use by a running `onefolder-sync sync --watch`; stop it to run this command", dir.display())]
pub struct UseHost {
    /// The state directory.
    pub dir: PathBuf,
}

/// Whether a host is listening on the state directory's socket.
pub fn is_hosted(state_dir: &Path) -> bool {
    imp::connect(&socket_path(state_dir)).is_some()
}

/// Sends the command line to the host of `state_dir`, prints what it answers, and returns the
/// command's exit code; `None` when no host answers (the caller runs the command itself).
pub fn forward(state_dir: &Path, args: Vec<String>, stdin: bool) -> Option<u8> {
    imp::forward(state_dir, args, stdin)
}

/// Runs a caller's command line inside the host: the `main` side of [`Host`].
/// It runs on a blocking-pool thread of its own, so a command's disk work (hashing during
/// `index`) never holds up the sync loop.
pub type Runner = fn(Vec<String>, PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = u8>>>;

/// A running host: the socket and the commands in flight.
pub struct Host {
    #[cfg(unix)]
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    #[cfg(unix)]
    task: Option<tokio::task::JoinHandle<()>>,
    #[cfg(unix)]
    path: PathBuf,
}

impl Host {
    /// Starts serving `hosted` on its state directory's socket. A socket that cannot be made
    /// (a path too long for one, an unsupported platform) is not an error: commands then
    /// wait for the store instead, and the returned message says so.
    pub fn start(hosted: Hosted, run: Runner) -> (Host, Option<String>) {
        imp::start(hosted, run)
    }

    /// Stops taking commands and waits (up to 30 s) for those in flight to finish.
    pub async fn stop(mut self) {
        #[cfg(unix)]
        {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(task) = self.task.take() {
                let _ = task.await;
            }
        }
    }
}

#[cfg(unix)]
impl Drop for Host {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
mod imp {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream as StdStream;
    use std::path::Path;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as AsyncBufReader};
    use tokio::net::{UnixListener, UnixStream};
    use tokio::task::JoinSet;

    use super::{FORWARDED, Forwarded, Frame, Host, Hosted, Request, Runner, socket_path};

    /// Longest request line accepted (a command line, not data).
    const MAX_REQUEST: u64 = 1 << 20;
    /// How long a stopping host waits for the commands in flight.
    const DRAIN: Duration = Duration::from_secs(30);

    pub(super) fn connect(path: &Path) -> Option<StdStream> {
        StdStream::connect(path).ok()
    }

    pub(super) fn forward(state_dir: &Path, args: Vec<String>, stdin: bool) -> Option<u8> {
        let stream = connect(&socket_path(state_dir))?;
        let fail = |message: String| {
            eprintln!("error: {message}");
            Some(crate::error::EXIT_USER)
        };
        let cwd = std::env::current_dir().unwrap_or_default();
        // `import -`: what the caller's stdin holds goes to the host as a private file.
        let stdin_file = match stdin.then(|| stdin_to_file(state_dir)).transpose() {
            Ok(file) => file,
            Err(e) => return fail(format!("reading standard input: {e}")),
        };
        let request = Request {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            args,
            cwd,
            stdin: stdin_file.as_ref().map(|f| f.path().to_path_buf()),
        };
        let mut line = serde_json::to_string(&request).expect("a request serializes");
        line.push('\n');
        let mut writer = &stream;
        if let Err(e) = writer.write_all(line.as_bytes()) {
            return fail(format!("sending the command to the running `sync --watch`: {e}"));
        }
        for line in BufReader::new(&stream).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Frame>(&line) {
                Ok(Frame::Out(text)) => crate::out::line(text),
                Ok(Frame::Err(text)) => eprintln!("{text}"),
                Ok(Frame::Exit(code)) => return Some(code),
                Err(_) => break,
            }
        }
        fail(
            "the running `sync --watch` stopped before the command finished; check whether it took effect, then run it \
             again"
                .to_owned(),
        )
    }

    fn stdin_to_file(state_dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
        let mut file = tempfile::Builder::new().prefix(".stdin-").tempfile_in(state_dir)?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file)?;
        file.flush()?;
        Ok(file)
    }

    pub(super) fn start(hosted: Hosted, run: Runner) -> (Host, Option<String>) {
        let path = socket_path(&hosted.dir);
        let no_host = |why: String| {
            let host = Host { stop: None, task: None, path: std::path::PathBuf::new() };
            (host, Some(why))
        };
        // Whoever holds the store owns the socket: one left by a crashed host is stale.
        let _ = std::fs::remove_file(&path);
        let listener = match UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                return no_host(format!(
                    "other commands cannot reach this sync while it runs (they wait for it instead): {}: {e}",
                    path.display()
                ));
            }
        };
        if let Err(e) = restrict(&path) {
            drop(listener);
            let _ = std::fs::remove_file(&path);
            return no_host(format!("other commands cannot reach this sync while it runs: {}: {e}", path.display()));
        }
        let owner = std::fs::metadata(&hosted.dir).map(|m| m.uid()).ok();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(listener, hosted, run, owner, stop_rx));
        (Host { stop: Some(stop_tx), task: Some(task), path }, None)
    }

    /// The socket is the state's owner's alone.
    fn restrict(path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    async fn serve(
        listener: UnixListener,
        hosted: Hosted,
        run: Runner,
        owner: Option<u32>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let peer = stream.peer_cred().ok().map(|c| c.uid());
                        if owner.is_some() && peer != owner {
                            tracing::warn!(?peer, "refused a command from another user");
                            continue;
                        }
                        running.spawn(handle(stream, hosted.clone(), run));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: calm down, then go on.
                        tracing::warn!(error = %e, "accepting a command failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        drop(listener);
        let drain = async { while running.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN, drain).await.is_err() {
            tracing::warn!("commands still running when sync stopped were cut short");
        }
    }

    async fn handle(stream: UnixStream, hosted: Hosted, run: Runner) {
        let (read, mut write) = stream.into_split();
        let mut line = String::new();
        let mut reader = AsyncBufReader::new(read.take(MAX_REQUEST));
        if reader.read_line(&mut line).await.is_err() {
            return;
        }
        let (frames, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                let mut text = serde_json::to_string(&frame).expect("a frame serializes");
                text.push('\n');
                if write.write_all(text.as_bytes()).await.is_err() {
                    // The caller went away; the command still runs to its end.
                    while rx.recv().await.is_some() {}
                    return;
                }
            }
        });
        let code = match serde_json::from_str::<Request>(&line) {
            Err(e) => {
                let _ = frames.send(Frame::Err(format!("error: not a onefolder-sync command: {e}")));
                crate::error::EXIT_USER
            }
            Ok(r) if r.version != env!("CARGO_PKG_VERSION") => {
                let _ = frames.send(Frame::Err(format!(
                    "error: the running `sync --watch` is onefolder-sync {}, this is {}; restart it to use this version",
                    env!("CARGO_PKG_VERSION"),
                    r.version
                )));
                crate::error::EXIT_USER
            }
            Ok(r) => {
                let forwarded = Forwarded { hosted, frames: frames.clone(), stdin: r.stdin };
                let runtime = tokio::runtime::Handle::current();
                let ran = tokio::task::spawn_blocking(move || {
                    runtime.block_on(FORWARDED.scope(forwarded, run(r.args, r.cwd)))
                })
                .await;
                ran.unwrap_or_else(|_| {
                    let _ =
                        frames.send(Frame::Err("error: the command failed inside the running `sync --watch`".into()));
                    crate::error::EXIT_USER
                })
            }
        };
        let _ = frames.send(Frame::Exit(code));
        drop(frames);
        let _ = writer.await;
    }
}

#[cfg(not(unix))]
mod imp {
    use std::path::Path;

    use super::{Host, Hosted, Runner};

    pub(super) fn connect(_: &Path) -> Option<()> {
        None
    }

    pub(super) fn forward(_: &Path, _: Vec<String>, _: bool) -> Option<u8> {
        None
    }

    pub(super) fn start(_: Hosted, _: Runner) -> (Host, Option<String>) {
        (Host {}, Some("other commands wait for this sync to stop (this platform has no local sockets)".into()))
    }
}
