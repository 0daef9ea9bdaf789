//! `sync --once` and `sync --watch`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use onefolder_core::{DeviceId, FlushInfo, Replica, StatusEvent, Warning};
use onefolder_model::{Backup, Library, Rotation};
use serde::{Deserialize, Serialize};

use crate::cmd::backup::{AutoBackup, auto_backups_dir};
use crate::error::user;
use crate::host::{Host, Hosted};
use crate::out::{self, errln, outln};
use crate::session::{Global, Session};

/// The per-device setting where the last flush is remembered for `status`.
pub const LAST_FLUSH_SETTING: &str = "cli/last_flush";

/// A flush of this computer's edits to the shared folder, as commands report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flushed {
    /// The segment's seq.
    pub seq: u64,
    /// Its size in bytes, header included.
    pub bytes: u64,
    /// Local edits it carried.
    pub changes: usize,
    /// When, in ms since the epoch (this computer's clock).
    pub at_ms: i64,
    /// The whole library, published again because this computer's segments were damaged on
    /// the shared folder.
    #[serde(default)]
    pub snapshot: bool,
}

impl From<&FlushInfo> for Flushed {
    fn from(f: &FlushInfo) -> Self {
        Flushed { seq: f.seq, bytes: f.bytes, changes: f.changes, at_ms: f.at_ms, snapshot: f.snapshot }
    }
}

/// How a flush is told to people.
fn flushed_line(f: &FlushInfo) -> String {
    if f.snapshot {
        format!(
            "published the whole library again (segment {}, {}): this computer's segments were damaged or missing on \
             the shared folder",
            f.seq,
            out::size(f.bytes)
        )
    } else {
        format!("wrote {} to the shared folder (segment {}, {})", out::n(f.changes, "edit"), f.seq, out::size(f.bytes))
    }
}

/// Remembers a flush for `status` (the replica only knows the flushes of its own process).
pub fn record_flush(replica: &Replica, info: &FlushInfo) -> Result<()> {
    replica.set_setting(LAST_FLUSH_SETTING, Some(&serde_json::to_string(&Flushed::from(info))?))?;
    Ok(())
}

/// The last flush remembered by [`record_flush`].
pub fn last_flush(replica: &Replica) -> Result<Option<Flushed>> {
    Ok(replica.setting(LAST_FLUSH_SETTING)?.and_then(|text| serde_json::from_str(&text).ok()))
}

/// Options of `sync`.
#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["once", "watch"]))]
pub struct SyncArgs {
    /// Write this computer's pending edits to the shared folder, apply everything new from the
    /// other computers, and exit.
    #[arg(long)]
    pub once: bool,
    /// Keep syncing until Ctrl-C: edits are written after a quiet moment, the other computers'
    /// changes are applied as the sync client brings them, and each one is printed. Ctrl-C
    /// writes what is pending before exiting.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: seconds of quiet after an edit before it is written.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, requires = "watch")]
    pub debounce: f64,
    /// With --watch: seconds between two looks at the shared folder when the file system gives
    /// no change notifications (network drives).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, requires = "watch")]
    pub poll: f64,
    /// With --watch: seconds between two automatic backups of the library (taken only when it
    /// changed; into `<state dir>/backups`, on this computer); 0 turns them off.
    #[arg(long, value_name = "SECONDS", default_value_t = 600.0, requires = "watch")]
    pub backup_every: f64,
    /// Automatic backups kept: the newest N.
    #[arg(long, value_name = "N", default_value_t = Rotation::default().recent, requires = "watch")]
    pub keep_recent: usize,
    /// Automatic backups kept: the newest of each of the last N days.
    #[arg(long, value_name = "N", default_value_t = Rotation::default().daily, requires = "watch")]
    pub keep_daily: usize,
    /// Automatic backups kept: the newest of each of the last N weeks.
    #[arg(long, value_name = "N", default_value_t = Rotation::default().weekly, requires = "watch")]
    pub keep_weekly: usize,
}

fn seconds(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| user(format!("--{what} must be a number of seconds ≥ 0")))
}

/// Runs `sync`.
pub async fn run(args: SyncArgs, global: &Global) -> Result<()> {
    if args.watch && crate::host::hosted().is_some() {
        return Err(user(
            "a `sync --watch` is already running for this local state: it shares every edit as you make it \
             (`sync --once` makes it sync right now)",
        ));
    }
    if args.watch { watch(args, global).await } else { once(global).await }
}

fn print_warnings(warnings: &[Warning]) {
    for w in warnings {
        let file = w.file.as_deref().map(|f| format!("/{f}")).unwrap_or_default();
        errln!("warning: {}{file}: {}", w.folder, w.message);
    }
    if warnings.iter().any(|w| w.message.starts_with("segment of another library")) {
        errln!(
            "note: a computer of another library writes into this folder (did two computers both run `init` on it?); \
             on that computer, `onefolder-sync merge-library` moves its library into this one"
        );
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OnceReport {
    /// The flush, if there was anything to write.
    flushed: Option<Flushed>,
    /// Segments applied, copies of applied ones recognised, files skipped, files read.
    applied: usize,
    duplicates: usize,
    skipped: usize,
    reads: usize,
    pending_edits: usize,
    warnings: Vec<Warning>,
}

async fn once(global: &Global) -> Result<()> {
    let s = Session::open(global).await?;
    let report = s.replica.sync_once().await?;
    if let Some(f) = &report.flushed {
        record_flush(&s.replica, f)?;
    }
    let status = s.replica.status();
    if global.json {
        let i = &report.ingest;
        return out::json(&OnceReport {
            flushed: report.flushed.as_ref().map(Flushed::from),
            applied: i.applied,
            duplicates: i.duplicates,
            skipped: i.skipped,
            reads: i.reads,
            pending_edits: status.pending_edits,
            warnings: status.warnings,
        });
    }
    match &report.flushed {
        Some(f) => out::line(flushed_line(f)),
        None => outln!("no edits to write"),
    }
    let i = &report.ingest;
    if i.applied == 0 {
        outln!("nothing new from the other computers");
    } else {
        outln!("applied {} from the other computers", out::n(i.applied, "segment"));
    }
    if i.skipped > 0 {
        outln!("skipped {} (retried on the next sync; see the warnings)", out::n(i.skipped, "file"));
    }
    print_warnings(&status.warnings);
    Ok(())
}

/// Prints the events of `sync --watch` and remembers each flush.
struct Printer {
    replica: std::sync::Arc<Replica>,
    json: bool,
    names: BTreeMap<DeviceId, String>,
}

impl Printer {
    async fn name_of(&mut self, device: DeviceId) -> String {
        if !self.names.contains_key(&device) {
            let info = crate::cmd::devices::device_info(self.replica.transport().as_ref(), &device).await;
            self.names.insert(device, info.map(|i| i.name).unwrap_or_default());
        }
        match self.names.get(&device).filter(|n| !n.is_empty()) {
            Some(name) => format!("{name} ({device})"),
            None => device.to_string(),
        }
    }

    async fn handle(&mut self, event: StatusEvent) {
        if let StatusEvent::Flushed(f) = &event
            && let Err(e) = record_flush(&self.replica, f)
        {
            errln!("warning: could not remember the last flush: {e}");
        }
        if self.json {
            if let Ok(text) = serde_json::to_string(&event) {
                out::line(text);
            }
            return;
        }
        match event {
            StatusEvent::Applied { device, file, seq, bytes } => {
                let who = self.name_of(device).await;
                outln!("applied {file} from {who}: seq {seq}, {}", out::size(bytes));
            }
            StatusEvent::Flushed(f) => out::line(flushed_line(&f)),
            StatusEvent::NewDeviceId { old, new } => {
                outln!("this local state was copied from another computer: device {old} is now {new}")
            }
            StatusEvent::Warning(w) => print_warnings(std::slice::from_ref(&w)),
            StatusEvent::Error { message } => errln!("warning: {message} (retrying)"),
            StatusEvent::Edited { .. } => {}
        }
    }
}

async fn watch(args: SyncArgs, global: &Global) -> Result<()> {
    let debounce = seconds(args.debounce, "debounce")?;
    let poll = seconds(args.poll, "poll")?.max(Duration::from_millis(100));
    let s = Session::open_with(global, |rc| {
        rc.debounce = debounce;
        rc.max_delay = rc.max_delay.max(debounce);
        rc.poll_interval = poll;
    })
    .await?;
    let mut events = s.replica.subscribe();
    let mut printer = Printer { replica: std::sync::Arc::clone(&s.replica), json: global.json, names: BTreeMap::new() };
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let printing = tokio::spawn(async move {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => printer.handle(event).await,
                    Err(RecvError::Lagged(n)) => errln!("warning: {n} sync events were not shown (too many at once)"),
                    Err(RecvError::Closed) => return,
                },
                _ = &mut stop_rx => break,
            }
        }
        // The loop has stopped: show what it sent last (the final flush).
        loop {
            match events.try_recv() {
                Ok(event) => printer.handle(event).await,
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => return,
            }
        }
    });
    let signal = shutdown_signal()?;
    // Other commands for this state run in this process while it syncs.
    let hosted = Hosted { dir: s.dir.clone(), config: s.config.clone(), replica: std::sync::Arc::clone(&s.replica) };
    let (host, note) = Host::start(hosted, crate::run_hosted);
    if let Some(note) = note {
        errln!("note: {note}");
    }
    // Commands in flight finish before the last flush.
    let shutdown = async move {
        signal.await;
        host.stop().await;
    };
    errln!("watching {} as {} (Ctrl-C to stop)", s.config.library.display(), s.config.device_name);
    if global.json {
        let hello =
            serde_json::json!({ "event": "watching", "library": s.config.library, "device": s.replica.device() });
        out::line(hello.to_string());
    } else {
        outln!("watching {}", s.config.library.display());
    }
    let backups = match seconds(args.backup_every, "backup-every")? {
        every if every.is_zero() => None,
        every => {
            let rotation = Rotation { recent: args.keep_recent, daily: args.keep_daily, weekly: args.keep_weekly };
            let auto = AutoBackup::new(auto_backups_dir(&s.dir), rotation);
            Some(tokio::spawn(auto_backups(std::sync::Arc::clone(&s.replica), auto, every, global.json)))
        }
    };
    let result = s.replica.run(shutdown).await;
    if let Some(task) = backups {
        task.abort();
    }
    let _ = stop_tx.send(());
    let _ = printing.await;
    result?;
    if !global.json {
        outln!("stopped");
    }
    Ok(())
}

/// Takes an automatic backup every `every` (the first right away) while the library changes.
async fn auto_backups(replica: std::sync::Arc<Replica>, mut auto: AutoBackup, every: Duration, json: bool) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let replica = replica.clone();
        let taken = tokio::task::spawn_blocking(move || {
            let attempt = (|| -> Result<Option<std::path::PathBuf>> {
                let manifest = replica.manifest();
                let export = Library::new(replica.clone()).export()?;
                let now = onefolder_core::manifest::now_ms();
                let device = replica.device().to_string();
                let backup = Backup::new(export, &manifest.engine, &manifest.library_id.to_string(), &device, now);
                auto.take(&backup)
            })();
            (attempt, auto)
        })
        .await;
        let Ok((attempt, back)) = taken else { return };
        auto = back;
        match attempt {
            Ok(Some(file)) if json => out::line(serde_json::json!({ "event": "backup", "file": file }).to_string()),
            Ok(Some(file)) => outln!("automatic backup {}", file.display()),
            Ok(None) => {}
            // Syncing goes on; the next backup is tried at the next interval.
            Err(e) => errln!("warning: automatic backup failed: {}", crate::error::one_line(&e)),
        }
    }
}

/// A future that completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM. On Unix the handlers are
/// installed here, before the future is first polled, so a signal sent as soon as `watching`
/// is printed is never missed.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
