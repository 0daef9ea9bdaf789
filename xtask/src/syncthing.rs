//! `cargo xtask syncthing [--keep]`: OneFolder Sync end to end through two real Syncthing
//! instances on this machine.
//!
//! Two computers, "laptop" (A) and "desktop" (B), each with a library folder (`A/Pictures`,
//! `B/Pictures`), a `--state` directory and a home of its own, and a Syncthing instance that
//! shares its library folder with the other one. The instances listen on 127.0.0.1 only, with
//! global and local discovery, relays, NAT traversal, usage and crash reporting and upgrades
//! off, and know each other by an explicit `tcp://127.0.0.1:PORT` address: the only traffic is
//! between them. The scenario drives the `onefolder-sync` binary as a user would:
//!
//! 1. A: `init`, `index` of a few pictures, tags; Syncthing brings the folder to B; B: `join`,
//!    `index`; concurrent edits on both; `sync --once` until the exports are byte-equal.
//! 2. `sync --watch --json` on both; edits through the CLI while it runs (they run inside the
//!    watch), one direction at a time, timing each from the edit's return to the `applied`
//!    event on the other computer; then edits on both at once.
//! 3. A large picture that Syncthing holds back (`.stignore` on A) and then transfers slowly
//!    (B's download is throttled): B shows it missing, B indexes while the `.syncthing.*.tmp`
//!    is being written, A never shows it missing, B shows it present once it arrived.
//! 4. A Syncthing conflict: the connection paused on both sides, one picture changed
//!    differently on each, resumed; the `*.sync-conflict-*` copy is indexed as a picture on both.
//! 5. Both watches stopped with SIGINT (exit code 0), then a last convergence: exports equal,
//!    every tag created anywhere and every assignment made anywhere present on both.
//!
//! Syncthing's `ItemFinished` events (REST API) count the `device.json` and segment files each
//! instance received while the watches ran. The report (latency p50 / max, transfers, per hour
//! of watch) is printed and written to `target/syncthing-report.md`. Numbers never fail the
//! task; non-convergence, a lost tag or a misbehaving command does.
//!
//! Debian's `syncthing` package is installed when the command is missing (as root). Everything
//! lives under one temporary root, removed at the end (`--keep` keeps it); the processes started
//! here are stopped by their handles, also on failure, and no other.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// The Syncthing folder id both instances share.
const FOLDER_ID: &str = "onefolder-pictures";
/// How long the two computers may take to converge.
const CONVERGE: Duration = Duration::from_secs(120);
/// How long one awaited event may take (a file arriving, an edit applied, a connection).
const WAIT: Duration = Duration::from_secs(60);
/// How long one CLI command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(90);
/// Between two looks at a condition.
const POLL: Duration = Duration::from_millis(25);
/// The measurement window with both watches running and nothing edited.
const IDLE_WINDOW: Duration = Duration::from_secs(10);
/// Timed edits per direction while the watches run.
const LATENCY_ROUNDS: usize = 5;
/// The picture that is still being transferred while B indexes.
const BIG_PICTURE: &str = "big.jpg";
const BIG_PICTURE_BYTES: usize = 20 << 20;
/// B's download limit (KiB/s), so that the big picture takes seconds to arrive.
const THROTTLE_KIB: u32 = 4096;
/// The picture both computers change while disconnected.
const CONFLICTED: &str = "p3.jpg";

/// Runs the scenario; see the module documentation.
pub(crate) fn syncthing(args: &[String]) -> Result<()> {
    let keep = match args {
        [] => false,
        [flag] if flag == "--keep" => true,
        _ => bail!("usage: cargo xtask syncthing [--keep]"),
    };
    let started = Instant::now();
    let tool = Syncthing::ensure_installed()?;
    eprintln!("using {}", tool.version);
    crate::run("cargo", &["build", "-j2", "-p", "onefolder-sync"])?;
    let bin = crate::bench::target_dir().join("debug").join("onefolder-sync");
    ensure!(bin.exists(), "{} was not built", bin.display());

    let root = TempRoot::new(keep)?;
    eprintln!("temporary root: {}", root.0.display());
    let scenario_started = Instant::now();
    let mut run = Run::start(&tool, &root.0, bin, scenario_started)?;
    let outcome = run.scenario();
    let report = match outcome {
        Ok(numbers) => numbers.markdown(&tool.version, scenario_started.elapsed()),
        Err(e) => {
            run.diagnostics();
            return Err(e.context("the Syncthing end-to-end run failed"));
        }
    };
    run.stop()?;
    drop(run);
    println!("{report}");
    let out = crate::bench::target_dir().join("syncthing-report.md");
    std::fs::write(&out, format!("# Syncthing end to end\n\n{report}"))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {} ({:.0} s in all)", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

/// One directory under the system's temporary directory, removed (with everything in it) when
/// dropped, unless it is to be kept.
struct TempRoot(PathBuf, bool);

impl TempRoot {
    /// Creates the directory with `mktemp -d`, so that its name is fresh and its mode 0700.
    fn new(keep: bool) -> Result<Self> {
        let out = Command::new("mktemp").args(["-d", "-t", "onefolder-syncthing.XXXXXXXX"]).output()?;
        ensure!(out.status.success(), "mktemp -d failed: {}", String::from_utf8_lossy(&out.stderr));
        let dir = PathBuf::from(String::from_utf8(out.stdout)?.trim());
        ensure!(dir.is_dir(), "mktemp gave no directory");
        Ok(Self(dir, keep))
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if self.1 {
            eprintln!("kept {}", self.0.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: could not remove {}: {e}", self.0.display());
        }
    }
}

/// Polls `check` every [`POLL`] until it returns `Some`, and fails naming `what` after `limit`.
fn poll<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check()? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(POLL);
    }
}

/// Waits for `child` to exit, killing it after `limit`.
fn wait_with_deadline(child: &mut Child, limit: Duration, what: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {} s (killed)", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cmd` to completion, failing when it does not succeed.
fn run_command(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("$ {what}");
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    ensure!(status.success(), "`{what}` failed with {status}");
    Ok(())
}

/// The last `n` lines of a log file (for a failure message).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Distinct picture bytes: a JPEG start-of-image marker, then bytes of a xorshift generator
/// seeded with `seed`.
fn picture(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    bytes.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0]);
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// `n` distinct free TCP ports on 127.0.0.1 (held together while chosen, so never the same).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    Ok(listeners.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?)
}

/// A fresh API key: 32 hex digits from `/dev/urandom`.
fn api_key() -> Result<String> {
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `text` escaped for an XML attribute or element.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One HTTP/1.0 request to 127.0.0.1:`port` (HTTP/1.0, so the answer is neither chunked nor
/// kept alive: the body is everything after the header). Returns the status and the body.
fn http(port: u16, key: &str, method: &str, path: &str, body: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nX-API-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").context("an HTTP answer without a header")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("an HTTP status")?;
    Ok((status, rest.to_owned()))
}

/// The installed `syncthing` command and how to call it.
struct Syncthing {
    version: String,
    /// Whether it has subcommands (`serve`, `generate`: 1.16 and later) or only flags.
    subcommands: bool,
}

impl Syncthing {
    /// Finds `syncthing` on PATH, or installs Debian's package (as root), and learns its style.
    fn ensure_installed() -> Result<Self> {
        let version = || -> Option<String> {
            let out = Command::new("syncthing").arg("--version").output().ok()?;
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        let version = match version() {
            Some(v) => v,
            None => {
                let uid = Command::new("id").arg("-u").output().context("running id -u")?;
                if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
                    bail!(
                        "syncthing is not installed and this is not root: install it with \
                         `sudo apt-get install --no-install-recommends syncthing` (Debian / Ubuntu) or put \
                         a syncthing 1.x on PATH, then run `cargo xtask syncthing` again"
                    );
                }
                let apt = |args: &[&str]| {
                    let mut cmd = Command::new("apt-get");
                    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
                    run_command(&mut cmd, &format!("apt-get {}", args.join(" ")))
                };
                apt(&["update"])?;
                apt(&["install", "-y", "--no-install-recommends", "syncthing"])?;
                version().context("syncthing is still not on PATH after installing Debian's package")?
            }
        };
        if !version.starts_with("syncthing v1.") {
            eprintln!("note: this task was written for Syncthing 1.x, found {version:?}");
        }
        let help = Command::new("syncthing").arg("--help").output().context("running syncthing --help")?;
        let help = String::from_utf8_lossy(&help.stdout).into_owned() + &String::from_utf8_lossy(&help.stderr);
        Ok(Self { version, subcommands: help.contains("serve") && help.contains("generate") })
    }

    /// Generates a key, a certificate and a config in `home`; returns the config's version and
    /// the device id.
    fn generate(&self, home: &Path) -> Result<(String, String)> {
        let mut cmd = Command::new("syncthing");
        if self.subcommands {
            cmd.arg("generate").arg(format!("--home={}", home.display())).arg("--no-default-folder");
        } else {
            cmd.arg(format!("-generate={}", home.display()));
        }
        let out = cmd.env("STNODEFAULTFOLDER", "1").env("HOME", home).output().context("running syncthing generate")?;
        ensure!(out.status.success(), "syncthing generate failed: {}", String::from_utf8_lossy(&out.stderr));
        let config = std::fs::read_to_string(home.join("config.xml")).context("reading the generated config")?;
        let version = config
            .split_once("<configuration version=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned())
            .context("no version in the generated config.xml")?;
        // `--device-id` (1.x) or the `device-id` command (later versions).
        let home_flag = format!("--home={}", home.display());
        for args in [vec![home_flag.as_str(), "--device-id"], vec!["device-id", home_flag.as_str()]] {
            let out = Command::new("syncthing").args(&args).env("HOME", home).output()?;
            let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && id.len() >= 56 && !id.contains(' ') {
                return Ok((version, id));
            }
        }
        bail!("could not read the device id of {}", home.display())
    }
}

/// One running Syncthing instance, stopped (killed if it does not stop) when dropped.
struct Instance {
    label: &'static str,
    home: PathBuf,
    gui: u16,
    key: String,
    id: String,
    child: Option<Child>,
    received: Option<Received>,
}

/// What one instance's `ItemFinished` events say it received, collected by a thread that
/// long-polls the event API from the start.
struct Received {
    stop: Arc<AtomicBool>,
    items: Arc<Mutex<Vec<Item>>>,
    thread: Option<JoinHandle<()>>,
}

/// One finished item: when this process saw the event, the file, what was done.
#[derive(Clone, Debug)]
struct Item {
    at: Instant,
    name: String,
    action: String,
    ok: bool,
}

impl Received {
    /// Starts collecting (the first request creates Syncthing's subscription).
    fn start(gui: u16, key: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let items = Arc::new(Mutex::new(Vec::new()));
        let (stop2, items2) = (Arc::clone(&stop), Arc::clone(&items));
        let thread = std::thread::spawn(move || {
            let mut since = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let path = format!("/rest/events?events=ItemFinished&since={since}&timeout=1");
                let Ok((200, body)) = http(gui, &key, "GET", &path, "", Duration::from_secs(10)) else {
                    std::thread::sleep(POLL);
                    continue;
                };
                let Ok(Value::Array(events)) = serde_json::from_str::<Value>(&body) else {
                    std::thread::sleep(POLL);
                    continue;
                };
                let now = Instant::now();
                for event in events {
                    since = since.max(event["id"].as_u64().unwrap_or(since));
                    let data = &event["data"];
                    items2.lock().expect("not poisoned").push(Item {
                        at: now,
                        name: data["item"].as_str().unwrap_or_default().to_owned(),
                        action: data["action"].as_str().unwrap_or_default().to_owned(),
                        ok: data["error"].is_null(),
                    });
                }
            }
        });
        Self { stop, items, thread: Some(thread) }
    }

    fn items(&self) -> Vec<Item> {
        self.items.lock().expect("not poisoned").clone()
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one instance's config needs to know.
struct InstanceConfig<'a> {
    version: &'a str,
    name: &'a str,
    id: &'a str,
    gui: u16,
    listen: u16,
    key: &'a str,
    folder: &'a Path,
    peer_name: &'a str,
    peer_id: &'a str,
    peer_listen: u16,
    /// A download limit in KiB/s (applied on the LAN too), or 0.
    max_recv_kib: u32,
}

impl InstanceConfig<'_> {
    /// The whole `config.xml`: everything that would reach beyond 127.0.0.1 switched off.
    fn xml(&self) -> String {
        let folder = xml(&self.folder.display().to_string());
        let Self { version, name, id, gui, listen, key, peer_name, peer_id, peer_listen, max_recv_kib, .. } = self;
        let (name, peer_name) = (xml(name), xml(peer_name));
        let limit_lan = *max_recv_kib > 0;
        format!(
            r#"<configuration version="{version}">
    <folder id="{FOLDER_ID}" label="Pictures" path="{folder}" type="sendreceive" rescanIntervalS="10" fsWatcherEnabled="true" fsWatcherDelayS="1" ignorePerms="false" autoNormalize="true">
        <filesystemType>basic</filesystemType>
        <device id="{id}" introducedBy=""></device>
        <device id="{peer_id}" introducedBy=""></device>
        <minDiskFree unit="%">0</minDiskFree>
        <order>random</order>
        <maxConflicts>10</maxConflicts>
        <markerName>.stfolder</markerName>
    </folder>
    <device id="{id}" name="{name}" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>dynamic</address>
        <paused>false</paused>
        <autoAcceptFolders>false</autoAcceptFolders>
    </device>
    <device id="{peer_id}" name="{peer_name}" compression="metadata" introducer="false" skipIntroductionRemovals="false" introducedBy="">
        <address>tcp://127.0.0.1:{peer_listen}</address>
        <paused>false</paused>
        <autoAcceptFolders>false</autoAcceptFolders>
    </device>
    <gui enabled="true" tls="false" debugging="false">
        <address>127.0.0.1:{gui}</address>
        <apikey>{key}</apikey>
        <theme>default</theme>
    </gui>
    <options>
        <listenAddress>tcp://127.0.0.1:{listen}</listenAddress>
        <globalAnnounceEnabled>false</globalAnnounceEnabled>
        <localAnnounceEnabled>false</localAnnounceEnabled>
        <relaysEnabled>false</relaysEnabled>
        <natEnabled>false</natEnabled>
        <urAccepted>-1</urAccepted>
        <urSeen>3</urSeen>
        <crashReportingEnabled>false</crashReportingEnabled>
        <autoUpgradeIntervalH>0</autoUpgradeIntervalH>
        <startBrowser>false</startBrowser>
        <announceLANAddresses>false</announceLANAddresses>
        <reconnectionIntervalS>1</reconnectionIntervalS>
        <maxRecvKbps>{max_recv_kib}</maxRecvKbps>
        <limitBandwidthInLan>{limit_lan}</limitBandwidthInLan>
        <minHomeDiskFree unit="%">0</minHomeDiskFree>
        <setLowPriority>false</setLowPriority>
    </options>
</configuration>
"#
        )
    }
}

impl Instance {
    /// Writes the config and starts `syncthing` on it; returns once its REST API answers.
    fn start(tool: &Syncthing, label: &'static str, home: &Path, config: &InstanceConfig) -> Result<Self> {
        std::fs::write(home.join("config.xml"), config.xml()).context("writing config.xml")?;
        let log = File::create(home.join("syncthing.log"))?;
        let mut cmd = Command::new("syncthing");
        if tool.subcommands {
            cmd.arg("serve").arg("--no-upgrade");
        }
        cmd.arg(format!("--home={}", home.display()))
            .args(["--no-browser", "--no-restart"])
            .env("STNODEFAULTFOLDER", "1")
            .env("STNOUPGRADE", "1")
            .env("STNORESTART", "1")
            .env("HOME", home)
            .env_remove("STGUIADDRESS")
            .env_remove("STGUIAPIKEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd.spawn().context("starting syncthing")?;
        let mut instance = Self {
            label,
            home: home.to_owned(),
            gui: config.gui,
            key: config.key.to_owned(),
            id: config.id.to_owned(),
            child: Some(child),
            received: None,
        };
        poll(&format!("Syncthing {label} to answer on 127.0.0.1:{}", config.gui), WAIT, || {
            if let Some(status) = instance.child.as_mut().expect("running").try_wait()? {
                bail!("syncthing {label} exited with {status}:\n{}", tail(&home.join("syncthing.log"), 30));
            }
            Ok(instance.get("/rest/system/ping").ok().filter(|v| v["ping"] == "pong"))
        })?;
        instance.received = Some(Received::start(instance.gui, instance.key.clone()));
        Ok(instance)
    }

    /// A REST call; fails unless the status is 200. Returns the JSON body (null when empty).
    fn call(&self, method: &str, path: &str, body: &str) -> Result<Value> {
        let (status, text) = http(self.gui, &self.key, method, path, body, Duration::from_secs(60))
            .with_context(|| format!("Syncthing {} {method} {path}", self.label))?;
        ensure!(status == 200, "Syncthing {} {method} {path}: HTTP {status}: {}", self.label, text.trim());
        if text.trim().is_empty() { Ok(Value::Null) } else { Ok(serde_json::from_str(&text)?) }
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, "")
    }

    /// Scans the shared folder now (the call returns when the scan is done).
    fn scan(&self) -> Result<()> {
        self.call("POST", &format!("/rest/db/scan?folder={FOLDER_ID}"), "").map(drop)
    }

    /// Whether this instance is connected to `peer`.
    fn connected(&self, peer: &str) -> Result<bool> {
        Ok(self.get("/rest/system/connections")?["connections"][peer]["connected"].as_bool().unwrap_or(false))
    }

    /// Pauses (or resumes) the connection to `peer`.
    fn pause(&self, peer: &str, pause: bool) -> Result<()> {
        let verb = if pause { "pause" } else { "resume" };
        self.call("POST", &format!("/rest/system/{verb}?device={peer}"), "").map(drop)
    }

    /// Whether this instance has nothing left to pull, by its own account and as far as it
    /// knows `peer`'s.
    fn idle_and_complete(&self, peer: &str) -> Result<bool> {
        let status = self.get(&format!("/rest/db/status?folder={FOLDER_ID}"))?;
        let completion = self.get(&format!("/rest/db/completion?folder={FOLDER_ID}&device={peer}"))?;
        Ok(status["state"] == "idle"
            && status["needTotalItems"].as_u64() == Some(0)
            && completion["completion"].as_f64() == Some(100.0))
    }

    /// The items this instance received (pulled) so far.
    fn received(&self) -> Vec<Item> {
        self.received.as_ref().map(Received::items).unwrap_or_default()
    }

    /// Asks Syncthing to shut down, then waits for it (and kills it after 20 s).
    fn stop(&mut self) -> Result<()> {
        self.received = None;
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = self.call("POST", "/rest/system/shutdown", "");
        let status = wait_with_deadline(&mut child, Duration::from_secs(20), &format!("Syncthing {}", self.label))?;
        ensure!(status.success(), "Syncthing {} exited with {status}", self.label);
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.received = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `onefolder-sync sync --watch --json`: its events as they come, each with the time
/// this process read it. Killed when dropped while still running.
struct Watch {
    child: Option<Child>,
    events: Arc<(Mutex<WatchEvents>, Condvar)>,
    reader: Option<JoinHandle<()>>,
    stderr: PathBuf,
    started: Instant,
}

#[derive(Default)]
struct WatchEvents {
    list: Vec<(Instant, Value)>,
    /// Standard output reached its end (the process exited).
    closed: bool,
}

impl Watch {
    /// The number of events so far: a mark to wait for later ones.
    fn mark(&self) -> usize {
        self.events.0.lock().expect("not poisoned").list.len()
    }

    /// The events from `from` on.
    fn since(&self, from: usize) -> Vec<(Instant, Value)> {
        self.events.0.lock().expect("not poisoned").list[from..].to_vec()
    }

    /// Waits for the first event from index `from` on that `accept` takes; returns its index,
    /// when it was read, and the event.
    fn wait_for(&self, from: usize, what: &str, accept: impl Fn(&Value) -> bool) -> Result<(usize, Instant, Value)> {
        let deadline = Instant::now() + WAIT;
        let (lock, changed) = &*self.events;
        let mut events = lock.lock().expect("not poisoned");
        let mut next = from;
        loop {
            while next < events.list.len() {
                let (at, event) = &events.list[next];
                if accept(event) {
                    return Ok((next, *at, event.clone()));
                }
                next += 1;
            }
            if events.closed {
                bail!("the watch exited while waiting for {what}:\n{}", tail(&self.stderr, 20));
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out after {} s waiting for {what}", WAIT.as_secs());
            }
            events = changed.wait_timeout(events, deadline - now).expect("not poisoned").0;
        }
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits for the watch to exit; returns its status.
    fn interrupt(&mut self, label: &str) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("the watch was already stopped")?;
        if let Some(status) = child.try_wait()? {
            bail!("the watch on {label} had already exited with {status}:\n{}", tail(&self.stderr, 20));
        }
        // The child is not reaped yet, so its pid is still ours.
        run_command(
            Command::new("kill").args(["-INT", &child.id().to_string()]),
            &format!("kill -INT <watch {label}>"),
        )?;
        let status = wait_with_deadline(child, Duration::from_secs(30), &format!("the watch on {label} after SIGINT"))?;
        self.child = None;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        Ok(status)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Self {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// One simulated computer: a library folder, a local state, a home, a Syncthing instance.
struct Computer {
    /// "A" or "B", as in the folder names.
    label: &'static str,
    /// The device name given to `init` / `join`.
    name: &'static str,
    dir: PathBuf,
    folder: PathBuf,
    state: PathBuf,
    home: PathBuf,
    /// The OneFolder device id (known after `init` / `join`).
    device: String,
    watch: Option<Watch>,
    syncthing: Instance,
}

/// One row of `files --json`.
#[derive(Debug, Clone)]
struct FileRow {
    missing: bool,
    tags: BTreeSet<String>,
}

/// Everything created anywhere, which must be on both computers at the end.
#[derive(Default)]
struct Expected {
    tags: BTreeSet<String>,
    /// (file path, tag path)
    assigned: BTreeSet<(String, String)>,
}

/// One timed edit while the watches ran.
struct Sample {
    from: Side,
    /// From the edit command's return to the `applied` event on the other computer.
    total: Duration,
    /// From the edit's return to the editing watch's `flushed` event (the debounce).
    flushed: Option<Duration>,
    /// From the edit's return to the segment's arrival on the other computer (`ItemFinished`).
    arrived: Option<Duration>,
}

/// What the big-picture step saw.
struct BigPicture {
    missing_on_b_before: bool,
    indexed_during_transfer: bool,
    transfer: Duration,
}

/// What the conflict step saw: each conflict copy and its tags.
struct Conflict {
    copy_tags: BTreeMap<String, BTreeSet<String>>,
}

/// Files Syncthing finished receiving (both instances) in some window.
#[derive(Default)]
struct Transfers {
    device_json: usize,
    segments: usize,
    others: usize,
}

impl Transfers {
    /// Counts the successful updates among `items` that were seen between `from` and `to`.
    fn count(items: &[Item], from: Instant, to: Instant) -> Self {
        let mut counts = Self::default();
        for item in items.iter().filter(|i| i.ok && i.action == "update" && i.at >= from && i.at <= to) {
            if item.name.ends_with("device.json") {
                counts.device_json += 1;
            } else if item.name.ends_with(".seg") {
                counts.segments += 1;
            } else {
                counts.others += 1;
            }
        }
        counts
    }
}

/// The numbers of one run, for the report.
struct Numbers {
    samples: Vec<Sample>,
    watch: Duration,
    /// Received while the watches ran.
    during_watch: Transfers,
    /// The idle window at the start of the watch: its length, what was received, the
    /// segments the two watches wrote.
    idle: Duration,
    during_idle: Transfers,
    idle_flushes: usize,
    big: BigPicture,
    conflict: Conflict,
    files: usize,
    tags: usize,
    assigned: usize,
    notes: Vec<String>,
}

/// The two computers and everything the scenario keeps track of.
struct Run {
    bin: PathBuf,
    scratch: PathBuf,
    commands: AtomicU64,
    a: Computer,
    b: Computer,
    expected: Expected,
    notes: Vec<String>,
    started: Instant,
}

impl Run {
    /// Lays out both computers under `root`, configures and starts both Syncthing instances, and
    /// waits until they are connected. `started` is when the scenario started (for the log).
    fn start(tool: &Syncthing, root: &Path, bin: PathBuf, started: Instant) -> Result<Self> {
        let scratch = root.join("commands");
        std::fs::create_dir_all(&scratch)?;
        let layout = |label: &str| -> Result<(PathBuf, PathBuf, PathBuf)> {
            let dir = root.join(label);
            let folder = dir.join("Pictures");
            // Syncthing's folder marker: without it the folder is refused as missing.
            std::fs::create_dir_all(folder.join(".stfolder"))?;
            let (home, st) = (dir.join("home"), dir.join("syncthing"));
            std::fs::create_dir_all(&home)?;
            std::fs::create_dir_all(&st)?;
            Ok((dir, folder, st))
        };
        let (dir_a, folder_a, st_a) = layout("A")?;
        let (dir_b, folder_b, st_b) = layout("B")?;
        let (version, id_a) = tool.generate(&st_a)?;
        let (_, id_b) = tool.generate(&st_b)?;
        let ports = free_ports(4)?;
        let (key_a, key_b) = (api_key()?, api_key()?);
        let config_a = InstanceConfig {
            version: &version,
            name: "laptop-syncthing",
            id: &id_a,
            gui: ports[0],
            listen: ports[1],
            key: &key_a,
            folder: &folder_a,
            peer_name: "desktop-syncthing",
            peer_id: &id_b,
            peer_listen: ports[3],
            max_recv_kib: 0,
        };
        let config_b = InstanceConfig {
            name: "desktop-syncthing",
            id: &id_b,
            gui: ports[2],
            listen: ports[3],
            key: &key_b,
            folder: &folder_b,
            peer_name: "laptop-syncthing",
            peer_id: &id_a,
            peer_listen: ports[1],
            max_recv_kib: THROTTLE_KIB,
            ..config_a
        };
        let st_a = Instance::start(tool, "A", &st_a, &config_a)?;
        let st_b = Instance::start(tool, "B", &st_b, &config_b)?;
        let computer = |label, name, dir: PathBuf, folder, syncthing| Computer {
            label,
            name,
            state: dir.join("state"),
            home: dir.join("home"),
            dir,
            folder,
            device: String::new(),
            watch: None,
            syncthing,
        };
        let run = Self {
            bin,
            scratch,
            commands: AtomicU64::new(0),
            a: computer("A", "laptop", dir_a, folder_a, st_a),
            b: computer("B", "desktop", dir_b, folder_b, st_b),
            expected: Expected::default(),
            notes: Vec::new(),
            started,
        };
        run.wait_connected()?;
        run.phase("two Syncthing instances on 127.0.0.1 are connected");
        Ok(run)
    }

    /// Announces a step, with the seconds since the scenario started.
    fn phase(&self, what: &str) {
        eprintln!("[{:5.1} s] == {what}", self.started.elapsed().as_secs_f64());
    }

    fn pc(&self, side: Side) -> &Computer {
        match side {
            Side::A => &self.a,
            Side::B => &self.b,
        }
    }

    fn pc_mut(&mut self, side: Side) -> &mut Computer {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn watch(&self, side: Side) -> Result<&Watch> {
        self.pc(side).watch.as_ref().context("no watch is running")
    }

    fn wait_connected(&self) -> Result<()> {
        poll("the two Syncthing instances to connect", WAIT, || {
            Ok((self.a.syncthing.connected(&self.b.syncthing.id)?
                && self.b.syncthing.connected(&self.a.syncthing.id)?)
            .then_some(()))
        })
    }

    /// The command for `onefolder-sync --state <state> ARGS` on computer `side`: its own home
    /// and data directory inside the temporary root, nothing inherited that picks a library.
    fn command(&self, side: Side, args: &[&str]) -> Command {
        let pc = self.pc(side);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--state")
            .arg(&pc.state)
            .args(args)
            .current_dir(&pc.dir)
            .env("HOME", &pc.home)
            .env("XDG_DATA_HOME", pc.home.join(".local").join("share"))
            .env_remove("ONEFOLDER_SYNC_STATE")
            .env_remove("ONEFOLDER_SYNC_LIBRARY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs one CLI command on computer `side` and returns its standard output; fails with its
    /// standard error when it exits non-zero or takes longer than [`COMMAND_DEADLINE`].
    fn cli(&self, side: Side, args: &[&str]) -> Result<String> {
        let n = self.commands.fetch_add(1, Ordering::Relaxed);
        let (out, err) = (self.scratch.join(format!("{n}.out")), self.scratch.join(format!("{n}.err")));
        let what = format!("onefolder-sync {} (computer {})", args.join(" "), self.pc(side).label);
        let mut child = self
            .command(side, args)
            .stdout(File::create(&out)?)
            .stderr(File::create(&err)?)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let status = wait_with_deadline(&mut child, COMMAND_DEADLINE, &what)?;
        let stdout = std::fs::read_to_string(&out)?;
        let stderr = std::fs::read_to_string(&err)?;
        let _ = (std::fs::remove_file(&out), std::fs::remove_file(&err));
        ensure!(status.success(), "`{what}` failed with {status}:\n{}{}", stdout, stderr.trim_end());
        Ok(stdout)
    }

    /// [`Run::cli`] with `--json`, parsed.
    fn cli_json(&self, side: Side, args: &[&str]) -> Result<Value> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(side, &all)?;
        serde_json::from_str(&out).with_context(|| format!("parsing the JSON of `{}`: {out}", args.join(" ")))
    }

    /// `tag create TAG` on `side`, remembered as expected everywhere (with its parents).
    fn create_tag(&mut self, side: Side, tag: &str) -> Result<()> {
        self.cli(side, &["tag", "create", tag])?;
        let mut path = String::new();
        for part in tag.split('/') {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            self.expected.tags.insert(path.clone());
        }
        Ok(())
    }

    /// `tag add FILE TAG` on `side`, remembered as expected everywhere.
    fn assign(&mut self, side: Side, file: &str, tag: &str) -> Result<()> {
        self.cli(side, &["tag", "add", file, tag])?;
        self.expected.assigned.insert((file.to_owned(), tag.to_owned()));
        Ok(())
    }

    /// `index` on `side`; returns its JSON report.
    fn index(&self, side: Side) -> Result<Value> {
        self.cli_json(side, &["index"])
    }

    /// `files --json` on `side`: path → row.
    fn files(&self, side: Side) -> Result<BTreeMap<String, FileRow>> {
        let rows = self.cli_json(side, &["files"])?;
        let rows = rows.as_array().context("files --json is not an array")?;
        rows.iter()
            .map(|row| {
                let path = row["path"].as_str().context("a file without a path")?.to_owned();
                let tags = row["tags"].as_array().context("a file without tags")?;
                let tags = tags.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect();
                Ok((path, FileRow { missing: row["missing"].as_bool().context("no missing flag")?, tags }))
            })
            .collect()
    }

    /// `tags --json` on `side`: the tag paths.
    fn tags(&self, side: Side) -> Result<BTreeSet<String>> {
        let rows = self.cli_json(side, &["tags"])?;
        let rows = rows.as_array().context("tags --json is not an array")?;
        Ok(rows.iter().filter_map(|t| t["path"].as_str().map(str::to_owned)).collect())
    }

    /// Fails unless A has `file` and shows it present: A always had it.
    fn present_on_a(&self, file: &str, when: &str) -> Result<()> {
        let files = self.files(Side::A)?;
        let row = files.get(file).with_context(|| format!("A does not list {file} ({when})"))?;
        ensure!(!row.missing, "A shows {file} missing ({when}), though it never left A's disk");
        Ok(())
    }

    /// Waits until both exports are byte-equal; while no watch runs, runs `sync --once` on
    /// both between looks. Returns the export.
    fn converge(&self, what: &str) -> Result<String> {
        let watching = self.a.watch.is_some() && self.b.watch.is_some();
        let deadline = Instant::now() + CONVERGE;
        loop {
            if !watching {
                self.cli(Side::A, &["sync", "--once"])?;
                self.cli(Side::B, &["sync", "--once"])?;
            }
            let a = self.cli(Side::A, &["export"])?;
            let b = self.cli(Side::B, &["export"])?;
            if a == b {
                eprintln!("   converged: {what}");
                return Ok(a);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the computers did not converge within {} s ({what}); first difference:\n{}",
                    CONVERGE.as_secs(),
                    first_difference(&a, &b)
                );
            }
            std::thread::sleep(if watching { POLL } else { Duration::from_millis(200) });
        }
    }

    /// Waits until each of `paths` (relative to the library folder) has the same bytes on B as
    /// on A (or on A as on B, from `from`'s side).
    fn wait_mirrored(&self, from: Side, paths: &[String]) -> Result<()> {
        let (src, dst) = (&self.pc(from).folder, &self.pc(from.other()).folder);
        poll(&format!("Syncthing to copy {} files to {}", paths.len(), self.pc(from.other()).label), WAIT, || {
            for path in paths {
                let want = std::fs::read(src.join(path))?;
                match std::fs::read(dst.join(path)) {
                    Ok(got) if got == want => {}
                    _ => return Ok(None),
                }
            }
            Ok(Some(()))
        })
    }

    /// The files of `side`'s library below `rel` (relative paths, Syncthing's temporary files
    /// and folder marker left out).
    fn files_on_disk(&self, side: Side, rel: &str) -> Result<Vec<String>> {
        let root = &self.pc(side).folder;
        let mut found = Vec::new();
        let mut todo = vec![root.join(rel)];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".syncthing.") || name == ".stfolder" {
                    continue;
                }
                if entry.file_type()?.is_dir() {
                    todo.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(root)?.to_string_lossy().into_owned();
                    found.push(rel);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Starts `sync --watch --json` on `side` and waits for its `watching` event.
    fn start_watch(&mut self, side: Side) -> Result<()> {
        let stderr = self.scratch.join(format!("watch-{}.err", self.pc(side).label));
        let mut child = self
            .command(side, &["--json", "sync", "--watch"])
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr)?)
            .spawn()
            .context("starting sync --watch")?;
        let stdout = child.stdout.take().context("the watch's stdout")?;
        let events: Arc<(Mutex<WatchEvents>, Condvar)> = Arc::default();
        let shared = Arc::clone(&events);
        let reader = std::thread::spawn(move || {
            let (lock, changed) = &*shared;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "raw": line }));
                lock.lock().expect("not poisoned").list.push((Instant::now(), event));
                changed.notify_all();
            }
            lock.lock().expect("not poisoned").closed = true;
            changed.notify_all();
        });
        let watch = Watch { child: Some(child), events, reader: Some(reader), stderr, started: Instant::now() };
        let (_, _, hello) = watch.wait_for(0, "the watch's `watching` event", |e| e["event"] == "watching")?;
        let pc = self.pc_mut(side);
        ensure!(hello["device"] == pc.device.as_str(), "the watch on {} names device {}", pc.label, hello["device"]);
        pc.watch = Some(watch);
        Ok(())
    }

    /// The whole scenario (module documentation); returns the numbers for the report.
    fn scenario(&mut self) -> Result<Numbers> {
        self.setup_and_join()?;
        self.offline_edits()?;

        self.phase("sync --watch on both; an idle window, then edits while it runs");
        self.start_watch(Side::A)?;
        self.start_watch(Side::B)?;
        let watch_start = Instant::now();
        let (idle, during_idle, idle_flushes) = self.idle_window()?;
        let samples = self.timed_edits()?;
        self.edits_on_both_at_once()?;
        let big = self.big_picture()?;
        let conflict = self.conflict()?;

        self.phase("stopping both watches with SIGINT");
        for side in [Side::A, Side::B] {
            let label = self.pc(side).label;
            let watch = self.pc_mut(side).watch.as_mut().context("no watch")?;
            let ran = watch.started.elapsed();
            let status = watch.interrupt(label)?;
            ensure!(status.code() == Some(0), "the watch on {label} exited with {status} after SIGINT (want 0)");
            eprintln!("   watch on {label}: exit code 0 after {:.0} s", ran.as_secs_f64());
            self.pc_mut(side).watch = None;
        }
        let watch_end = Instant::now();
        let received = self.received();
        let during_watch = Transfers::count(&received, watch_start, watch_end);
        let failed = received.iter().filter(|i| !i.ok).count();
        if failed > 0 {
            self.notes.push(format!("Syncthing reported {failed} failed item(s) (it retried them)"));
        }

        self.phase("final convergence without a watch");
        let (files, tags, assigned) = self.final_checks()?;
        self.check_counting()?;
        Ok(Numbers {
            samples,
            watch: watch_end - watch_start,
            during_watch,
            idle,
            during_idle,
            idle_flushes,
            big,
            conflict,
            files,
            tags,
            assigned,
            notes: std::mem::take(&mut self.notes),
        })
    }

    /// A: pictures, `init`, `index`, a tag; Syncthing brings the folder to B; B: `join`, `index`.
    fn setup_and_join(&mut self) -> Result<()> {
        self.phase("A: init and index; Syncthing brings the library to B; B: join and index");
        let pictures = ["p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg", "2026/trip.jpg"];
        for (i, rel) in pictures.iter().enumerate() {
            let path = self.a.folder.join(rel);
            std::fs::create_dir_all(path.parent().expect("a parent"))?;
            std::fs::write(&path, picture(i as u64 + 1, 2000 + 337 * i))?;
        }
        // An empty file (an online-only placeholder, a download not started) is not indexed.
        std::fs::write(self.a.folder.join("empty.jpg"), b"")?;
        let folder = self.a.folder.display().to_string();
        self.cli(Side::A, &["init", &folder, "--name", self.a.name])?;
        self.a.device = self.cli_json(Side::A, &["status"])?["device"].as_str().context("no device")?.to_owned();
        let indexed = self.index(Side::A)?;
        ensure!(
            indexed["added"] == pictures.len(),
            "A's index added {} files, want {}",
            indexed["added"],
            pictures.len()
        );
        self.create_tag(Side::A, "Animals/Cats")?;
        self.assign(Side::A, "p1.jpg", "Animals/Cats")?;
        self.cli(Side::A, &["sync", "--once"])?;

        let mut wanted: Vec<String> = pictures.iter().map(|p| p.to_string()).collect();
        wanted.push("onefolder_tags/library.json".into());
        wanted.extend(self.files_on_disk(Side::A, &format!("onefolder_tags/database/{}", self.a.device))?);
        self.wait_mirrored(Side::A, &wanted)?;

        let folder = self.b.folder.display().to_string();
        self.cli(Side::B, &["join", &folder, "--name", self.b.name])?;
        self.b.device = self.cli_json(Side::B, &["status"])?["device"].as_str().context("no device")?.to_owned();
        let indexed = self.index(Side::B)?;
        ensure!(
            indexed["added"] == 0 && indexed["unchanged"] == pictures.len(),
            "B's index after join should find the {} pictures A indexed unchanged (same ids), got {indexed}",
            pictures.len()
        );
        let files = self.files(Side::B)?;
        ensure!(!files.contains_key("empty.jpg"), "B indexed the empty file");
        ensure!(files.values().all(|f| !f.missing), "B shows a file missing after join: {files:?}");
        Ok(())
    }

    /// Edits on both computers before either shares them, then `sync --once` until converged.
    fn offline_edits(&mut self) -> Result<()> {
        self.phase("concurrent edits on both, then sync --once until converged");
        self.create_tag(Side::A, "Places/Beach")?;
        self.assign(Side::A, "p2.jpg", "Places/Beach")?;
        self.assign(Side::A, CONFLICTED, "Animals/Cats")?;
        self.create_tag(Side::B, "Animals/Dogs")?;
        self.assign(Side::B, "p2.jpg", "Animals/Dogs")?;
        self.create_tag(Side::B, "Places/Mountains")?;
        self.assign(Side::B, "2026/trip.jpg", "Places/Mountains")?;
        self.assign(Side::B, "p4.jpg", "Animals/Cats")?;
        self.converge("edits made on both before any sync")?;
        Ok(())
    }

    /// Everything both instances received so far.
    fn received(&self) -> Vec<Item> {
        let mut items = self.a.syncthing.received();
        items.extend(self.b.syncthing.received());
        items
    }

    /// A measurement window of [`IDLE_WINDOW`] with both watches running and no edit: what
    /// Syncthing carried and how many segments the watches wrote meanwhile (none expected; a
    /// report, not a check).
    fn idle_window(&self) -> Result<(Duration, Transfers, usize)> {
        let (mark_a, mark_b) = (self.watch(Side::A)?.mark(), self.watch(Side::B)?.mark());
        let from = Instant::now();
        std::thread::sleep(IDLE_WINDOW);
        let to = Instant::now();
        let flushes = [(Side::A, mark_a), (Side::B, mark_b)]
            .into_iter()
            .map(|(side, mark)| {
                Ok(self.watch(side)?.since(mark).iter().filter(|(_, e)| e["event"] == "flushed").count())
            })
            .sum::<Result<usize>>()?;
        Ok((to - from, Transfers::count(&self.received(), from, to), flushes))
    }

    /// Checks the transfer counting itself: every segment of one computer on the other's disk
    /// was counted as received there once (a miscounted report would mislead).
    fn check_counting(&mut self) -> Result<()> {
        for side in [Side::A, Side::B] {
            let peer = self.pc(side.other());
            let on_disk = self
                .files_on_disk(side, &format!("onefolder_tags/database/{}", peer.device))?
                .into_iter()
                .filter(|f| f.ends_with(".seg"))
                .count();
            let received = self
                .pc(side)
                .syncthing
                .received()
                .iter()
                .filter(|i| i.ok && i.action == "update" && i.name.ends_with(".seg") && i.name.contains(&peer.device))
                .count();
            if received != on_disk {
                self.notes.push(format!(
                    "{}: {on_disk} segments of {} on disk but {received} counted as received (the counts above may be off)",
                    self.pc(side).label,
                    peer.label
                ));
            }
        }
        Ok(())
    }

    /// Timed edits, one direction at a time: from the edit command's return (it ran inside the
    /// editing computer's watch) to the other computer's `applied` event after which it shows
    /// the assignment.
    fn timed_edits(&mut self) -> Result<Vec<Sample>> {
        let mut samples = Vec::new();
        for round in 1..=LATENCY_ROUNDS {
            for from in [Side::A, Side::B] {
                let to = from.other();
                let file = ["p1.jpg", "p2.jpg", "p4.jpg", "2026/trip.jpg"][round % 4];
                let tag = format!("Latency/{}{round}", self.pc(from).label);
                let (from_mark, to_mark) = (self.watch(from)?.mark(), self.watch(to)?.mark());
                self.create_tag(from, &tag)?;
                self.assign(from, file, &tag)?;
                let done = Instant::now();
                let device = self.pc(from).device.clone();
                let mut next = to_mark;
                let applied = loop {
                    let what = format!("{} to apply {tag} from {}", self.pc(to).label, self.pc(from).label);
                    let (index, at, _) = self
                        .watch(to)?
                        .wait_for(next, &what, |e| e["event"] == "applied" && e["device"] == device.as_str())?;
                    if self.files(to)?.get(file).is_some_and(|f| f.tags.contains(&tag)) {
                        break at;
                    }
                    next = index + 1;
                };
                let flushed = self
                    .watch(from)?
                    .since(from_mark)
                    .into_iter()
                    .find(|(at, e)| e["event"] == "flushed" && *at >= done);
                let arrived = self
                    .pc(to)
                    .syncthing
                    .received()
                    .into_iter()
                    .find(|i| i.at >= done && i.name.contains(&device) && i.name.ends_with(".seg"));
                samples.push(Sample {
                    from,
                    total: applied.saturating_duration_since(done),
                    flushed: flushed.map(|(at, _)| at.saturating_duration_since(done)),
                    arrived: arrived.map(|i| i.at.saturating_duration_since(done)),
                });
            }
        }
        let (a, b) = (&self.a, &self.b);
        eprintln!(
            "   {} timed edits ({} -> {} and back), p50 {} ms",
            samples.len(),
            a.name,
            b.name,
            percentile(samples.iter().map(|s| s.total).collect(), 50).as_millis()
        );
        Ok(samples)
    }

    /// Edits on both computers at the same moment while both watch; they must converge.
    fn edits_on_both_at_once(&mut self) -> Result<()> {
        self.create_tag(Side::A, "Animals/Birds")?;
        self.create_tag(Side::B, "Animals/Birds")?;
        self.assign(Side::A, "p4.jpg", "Animals/Birds")?;
        self.assign(Side::B, "p1.jpg", "Animals/Birds")?;
        self.cli(Side::B, &["tag", "color", "Animals/Birds", "blue"])?;
        self.converge("edits on both while both watch")?;
        Ok(())
    }

    /// A large picture on A that Syncthing first holds back (`.stignore`) and then transfers
    /// slowly: B indexes while it is missing and while it is being written; A never shows it
    /// missing; B shows it present once it arrived and was indexed.
    fn big_picture(&mut self) -> Result<BigPicture> {
        self.phase(&format!("a {} MiB picture, still being transferred while B indexes", BIG_PICTURE_BYTES >> 20));
        let ignore = self.a.folder.join(".stignore");
        std::fs::write(&ignore, format!("/{BIG_PICTURE}\n"))?;
        self.a.syncthing.scan()?;
        std::fs::write(self.a.folder.join(BIG_PICTURE), picture(99, BIG_PICTURE_BYTES))?;
        self.a.syncthing.scan()?;
        self.index(Side::A)?;
        self.create_tag(Side::A, "Big")?;
        self.assign(Side::A, BIG_PICTURE, "Big")?;
        self.present_on_a(BIG_PICTURE, "after A indexed it")?;

        // B learns of the picture from A's segment before Syncthing brings the picture itself.
        poll("B to apply A's segment that adds the big picture", WAIT, || {
            Ok(self.files(Side::B)?.get(BIG_PICTURE).is_some_and(|f| f.tags.contains("Big")).then_some(()))
        })?;
        let on_b_disk = self.b.folder.join(BIG_PICTURE).exists();
        ensure!(!on_b_disk, "Syncthing copied {BIG_PICTURE} to B although A's .stignore excludes it");
        self.index(Side::B)?;
        let missing_on_b_before = self.files(Side::B)?.get(BIG_PICTURE).is_some_and(|f| f.missing);
        ensure!(missing_on_b_before, "B does not show {BIG_PICTURE} missing though it is not on B's disk");
        self.present_on_a(BIG_PICTURE, "while B shows it missing")?;

        // Release it; B's download is throttled, so the transfer takes a few seconds.
        std::fs::remove_file(&ignore)?;
        let released = Instant::now();
        self.a.syncthing.scan()?;
        let temporary = self.b.folder.join(format!(".syncthing.{BIG_PICTURE}.tmp"));
        let target = self.b.folder.join(BIG_PICTURE);
        let in_transfer = poll("Syncthing to start writing the big picture on B", WAIT, || {
            Ok(if target.exists() {
                Some(false)
            } else if temporary.exists() {
                Some(true)
            } else {
                None
            })
        })?;
        let mut indexed_during_transfer = false;
        if in_transfer {
            let report = self.index(Side::B)?;
            // The index must not have read the partial file: still missing, no `.syncthing` entry.
            indexed_during_transfer = !target.exists();
            let files = self.files(Side::B)?;
            ensure!(
                files.keys().all(|p| !p.contains(".syncthing.") && !p.ends_with(".tmp")),
                "B indexed Syncthing's temporary file: {:?} (index said {report})",
                files.keys().collect::<Vec<_>>()
            );
            if indexed_during_transfer {
                ensure!(
                    files.get(BIG_PICTURE).is_some_and(|f| f.missing),
                    "B shows {BIG_PICTURE} present while only a partial copy is on its disk"
                );
            }
            self.present_on_a(BIG_PICTURE, "while Syncthing transfers it")?;
        } else {
            self.notes.push(format!(
                "{BIG_PICTURE} arrived on B before its temporary file was seen: B's index did not run during the transfer"
            ));
        }
        let want = std::fs::read(self.a.folder.join(BIG_PICTURE))?;
        poll("the big picture to arrive on B", WAIT, || {
            Ok(std::fs::metadata(&target)
                .is_ok_and(|m| m.len() == want.len() as u64)
                .then(|| std::fs::read(&target))
                .transpose()?
                .filter(|got| *got == want)
                .map(drop))
        })?;
        let transfer = released.elapsed();
        let report = self.index(Side::B)?;
        let files = self.files(Side::B)?;
        let row = files.get(BIG_PICTURE).context("B lost the big picture's record")?;
        ensure!(!row.missing, "B shows {BIG_PICTURE} missing after it arrived and B indexed (index said {report})");
        ensure!(row.tags.contains("Big"), "the big picture lost its tag on B: {row:?}");
        self.present_on_a(BIG_PICTURE, "after it arrived on B")?;
        self.converge("after the big picture arrived")?;
        Ok(BigPicture { missing_on_b_before, indexed_during_transfer, transfer })
    }

    /// Disconnects the instances, changes one picture differently on both computers (and tags
    /// it on both), reconnects: Syncthing makes a `*.sync-conflict-*` copy, which both index as
    /// a picture; no tag is lost.
    fn conflict(&mut self) -> Result<Conflict> {
        self.phase("a Syncthing conflict copy");
        let (id_a, id_b) = (self.a.syncthing.id.clone(), self.b.syncthing.id.clone());
        self.a.syncthing.pause(&id_b, true)?;
        self.b.syncthing.pause(&id_a, true)?;
        poll("the instances to disconnect", WAIT, || {
            Ok((!self.a.syncthing.connected(&id_b)? && !self.b.syncthing.connected(&id_a)?).then_some(()))
        })?;
        // Different content on each side; B's is newer, so A's becomes the conflict copy.
        let now = SystemTime::now();
        for (side, seed, len, age) in [(Side::A, 301, 3001, 120), (Side::B, 302, 4002, 0)] {
            let path = self.pc(side).folder.join(CONFLICTED);
            std::fs::write(&path, picture(seed, len))?;
            File::options().write(true).open(&path)?.set_modified(now - Duration::from_secs(age))?;
            self.pc(side).syncthing.scan()?;
        }
        // Both computers index their version and tag it while apart.
        for side in [Side::A, Side::B] {
            let report = self.index(side)?;
            ensure!(
                report["updated"] == 1,
                "{} should see {CONFLICTED} updated, index said {report}",
                self.pc(side).label
            );
            let tag = format!("Conflict/{}", self.pc(side).label);
            self.create_tag(side, &tag)?;
            self.assign(side, CONFLICTED, &tag)?;
        }
        self.a.syncthing.pause(&id_b, false)?;
        self.b.syncthing.pause(&id_a, false)?;
        self.wait_connected()?;

        let copies = poll("Syncthing's conflict copy, the same on both computers", WAIT, || {
            let conflicts = |side| -> Result<Vec<String>> {
                Ok(self.files_on_disk(side, "")?.into_iter().filter(|p| p.contains(".sync-conflict-")).collect())
            };
            let (on_a, on_b) = (conflicts(Side::A)?, conflicts(Side::B)?);
            if on_a.is_empty() || on_a != on_b {
                return Ok(None);
            }
            let same = |rel: &str| -> bool {
                matches!((std::fs::read(self.a.folder.join(rel)), std::fs::read(self.b.folder.join(rel))),
                    (Ok(x), Ok(y)) if x == y)
            };
            Ok((on_a.iter().all(|c| same(c)) && same(CONFLICTED)).then_some(on_a))
        })?;
        if copies.len() > 1 {
            self.notes.push(format!("Syncthing made {} conflict copies of {CONFLICTED}: {copies:?}", copies.len()));
        }
        if let Some(odd) = copies.iter().find(|c| !c.starts_with("p3.sync-conflict-") || !c.ends_with(".jpg")) {
            self.notes.push(format!("unexpected conflict copy name {odd}"));
        }
        let kept = std::fs::read(self.a.folder.join(CONFLICTED))?;
        if kept != picture(302, 4002) {
            self.notes.push(format!("Syncthing kept A's older version of {CONFLICTED}, not B's newer one"));
        }
        poll("both Syncthing instances to be idle", WAIT, || {
            Ok((self.a.syncthing.idle_and_complete(&id_b)? && self.b.syncthing.idle_and_complete(&id_a)?).then_some(()))
        })?;

        for side in [Side::A, Side::B] {
            self.index(side)?;
        }
        self.converge("after the conflict copy was indexed on both")?;
        let mut copy_tags = BTreeMap::new();
        for side in [Side::A, Side::B] {
            let files = self.files(side)?;
            let label = self.pc(side).label;
            for copy in &copies {
                let row = files.get(copy).with_context(|| format!("{label} did not index the conflict copy {copy}"))?;
                ensure!(!row.missing, "{label} shows the conflict copy {copy} missing");
                copy_tags.insert(copy.clone(), row.tags.clone());
            }
            let original = files.get(CONFLICTED).with_context(|| format!("{label} lost {CONFLICTED}"))?;
            ensure!(!original.missing, "{label} shows {CONFLICTED} missing");
            for tag in ["Animals/Cats", "Conflict/A", "Conflict/B"] {
                ensure!(original.tags.contains(tag), "{CONFLICTED} lost its tag {tag} on {label}: {original:?}");
            }
        }
        Ok(Conflict { copy_tags })
    }

    /// Runs `sync --once` on both until each computer has written all its edits and applied
    /// every segment the other wrote (its last flush included): the watches' final flushes
    /// reach the other computer through Syncthing after the watches stopped.
    fn settle(&self) -> Result<()> {
        poll("each computer to apply every segment the other wrote", CONVERGE, || {
            let mut status = Vec::new();
            for side in [Side::A, Side::B] {
                self.cli(side, &["sync", "--once"])?;
                status.push(self.cli_json(side, &["status"])?);
            }
            let done = |me: &Value, peer: &Value| {
                let seen = me["devices"].as_array().and_then(|d| d.iter().find(|d| d["id"] == peer["device"]));
                me["pendingEdits"] == 0
                    && me["unwrittenSeq"].is_null()
                    && seen.is_some_and(|d| d["waiting"] == 0 && d["appliedSeq"] == peer["lastFlush"]["seq"])
            };
            Ok((done(&status[0], &status[1]) && done(&status[1], &status[0])).then_some(()))
        })
    }

    /// `sync --once` until converged, then: every tag created anywhere and every assignment
    /// made anywhere on both computers, no partial or empty file indexed, nothing missing.
    /// Returns (files, tags, assignments).
    fn final_checks(&mut self) -> Result<(usize, usize, usize)> {
        self.settle()?;
        self.converge("after both watches stopped")?;
        let mut counts = (0, 0, self.expected.assigned.len());
        for side in [Side::A, Side::B] {
            let label = self.pc(side).label;
            let tags = self.tags(side)?;
            let lost: Vec<&String> = self.expected.tags.difference(&tags).collect();
            ensure!(lost.is_empty(), "tags lost on {label}: {lost:?}");
            let files = self.files(side)?;
            for (file, tag) in &self.expected.assigned {
                let row = files.get(file).with_context(|| format!("{label} lost the file {file}"))?;
                ensure!(row.tags.contains(tag), "{file} lost its tag {tag} on {label}: {row:?}");
            }
            for (path, row) in &files {
                ensure!(!path.contains(".syncthing.") && !path.ends_with(".tmp"), "{label} indexed the partial {path}");
                ensure!(path != "empty.jpg", "{label} indexed the empty file");
                ensure!(!row.missing, "{label} shows {path} missing, though it is on both disks");
            }
            counts.0 = files.len();
            counts.1 = tags.len();
        }
        Ok(counts)
    }

    /// Stops both watches (if still running) and both Syncthing instances.
    fn stop(&mut self) -> Result<()> {
        self.a.watch = None;
        self.b.watch = None;
        self.a.syncthing.stop()?;
        self.b.syncthing.stop()
    }

    /// After a failure: the end of each Syncthing log and each watch's standard error.
    fn diagnostics(&self) {
        for pc in [&self.a, &self.b] {
            eprintln!("--- Syncthing {} log (end):\n{}", pc.label, tail(&pc.syncthing.home.join("syncthing.log"), 25));
            if let Some(watch) = &pc.watch {
                eprintln!("--- watch on {} stderr (end):\n{}", pc.label, tail(&watch.stderr, 25));
            }
        }
    }
}

/// The `p`-th percentile (nearest rank) of `values`; zero for none.
fn percentile(mut values: Vec<Duration>, p: usize) -> Duration {
    values.sort();
    if values.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * values.len()).div_ceil(100).max(1);
    values[rank - 1]
}

/// The first line where two exports differ, with a little context.
fn first_difference(a: &str, b: &str) -> String {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = la.iter().zip(&lb).position(|(x, y)| x != y).unwrap_or(la.len().min(lb.len()));
    let window = |lines: &[&str]| lines[at.saturating_sub(3)..(at + 3).min(lines.len())].join("\n");
    format!("line {}; A ({} lines):\n{}\nB ({} lines):\n{}", at + 1, la.len(), window(&la), lb.len(), window(&lb))
}

impl Numbers {
    /// The report section (Markdown).
    fn markdown(&self, version: &str, took: Duration) -> String {
        let ms = |d: Duration| format!("{} ms", d.as_millis());
        let row = |label: &str, samples: Vec<&Sample>| -> String {
            let totals: Vec<Duration> = samples.iter().map(|s| s.total).collect();
            let part = |f: fn(&Sample) -> Option<Duration>| {
                let v: Vec<Duration> = samples.iter().filter_map(|s| f(s)).collect();
                if v.is_empty() { "–".to_owned() } else { ms(percentile(v, 50)) }
            };
            format!(
                "| {label} | {} | {} | {} | {} | {} |\n",
                samples.len(),
                ms(percentile(totals.clone(), 50)),
                ms(totals.iter().copied().max().unwrap_or_default()),
                part(|s| s.flushed),
                part(|s| s.arrived),
            )
        };
        let by = |side| self.samples.iter().filter(|s| s.from == side).collect::<Vec<_>>();
        let hours = self.watch.as_secs_f64() / 3600.0;
        let per_hour = |n: usize| format!("{:.0}", n as f64 / hours);
        let mut out = String::new();
        out.push_str(&format!(
            "Two `{}` instances on 127.0.0.1 (no discovery, relays, NAT, reporting or upgrades), \
             two computers driven through the `onefolder-sync` CLI; the run took {:.0} s (after the build), `sync --watch` \
             ran {:.0} s on both (default debounce 2 s; Syncthing `fsWatcherDelayS=1`).\n\n",
            version.split_whitespace().take(2).collect::<Vec<_>>().join(" "),
            took.as_secs_f64(),
            self.watch.as_secs_f64()
        ));
        out.push_str(
            "Edit → applied on the other computer (from the edit command's return to the `applied` event):\n\n",
        );
        out.push_str("| direction | edits | p50 | max | p50 to segment written | p50 to segment arrived |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        out.push_str(&row("laptop → desktop", by(Side::A)));
        out.push_str(&row("desktop → laptop", by(Side::B)));
        out.push_str(&row("both", self.samples.iter().collect()));
        out.push_str(&format!(
            "\nFiles Syncthing transferred (`ItemFinished` events of both instances) while `sync --watch` ran \
             ({:.0} s, busy with {} timed edits and the steps below; per hour extrapolates that window) and in \
             its first {:.0} s, with nothing edited:\n\n",
            self.watch.as_secs_f64(),
            self.samples.len(),
            self.idle.as_secs_f64()
        ));
        out.push_str("| file | during the watch | per hour of watch | idle window |\n|---|---|---|---|\n");
        let (w, i) = (&self.during_watch, &self.during_idle);
        for (label, busy, idle) in [
            ("`device.json`", w.device_json, i.device_json),
            ("segments (`*.seg`)", w.segments, i.segments),
            ("pictures and others", w.others, i.others),
        ] {
            out.push_str(&format!("| {label} | {busy} | {} | {idle} |\n", per_hour(busy)));
        }
        out.push_str(&format!("\nSegments the two watches wrote in the idle window: {}.\n\n", self.idle_flushes));
        out.push_str(&format!(
            "- A {} MiB picture held back by Syncthing: shown missing on the desktop only ({}); the desktop indexed \
             while its `.syncthing.*.tmp` was being written: {}; present after it arrived ({:.1} s, download \
             throttled to {} KiB/s) and the desktop indexed; never missing on the laptop.\n",
            BIG_PICTURE_BYTES >> 20,
            if self.big.missing_on_b_before { "yes" } else { "no" },
            if self.big.indexed_during_transfer { "yes" } else { "no (it arrived first)" },
            self.big.transfer.as_secs_f64(),
            THROTTLE_KIB
        ));
        for (copy, tags) in &self.conflict.copy_tags {
            let tags =
                if tags.is_empty() { "none".to_owned() } else { tags.iter().cloned().collect::<Vec<_>>().join(", ") };
            out.push_str(&format!(
                "- Syncthing conflict copy `{copy}` indexed as a picture on both (its tags: {tags}); \
                 `{CONFLICTED}` kept every tag.\n"
            ));
        }
        out.push_str(&format!(
            "- Both watches stopped by SIGINT with exit code 0. Converged: byte-equal exports, {} files, {} tags, \
             all {} assignments made on either computer present on both.\n",
            self.files, self.tags, self.assigned
        ));
        for note in &self.notes {
            out.push_str(&format!("- Note: {note}\n"));
        }
        out
    }
}
