//! Real servers for tests (feature `test-servers`): moto (S3) and wsgidav (WebDAV), started
//! on 127.0.0.1 on a free port, once per test process and shared by its tests (a bucket or a
//! folder per test).
//!
//! They run from the Python virtual environment that `cargo xtask test-servers` installs in
//! `<workspace>/target/test-servers/venv` (or the one `ONEFOLDER_SYNC_TEST_SERVERS` names). A
//! missing environment fails the test with a message naming that command. A server process
//! exits when its standard input closes, i.e. when the test process that started it ends
//! (however it ends); [`Server`]'s `Drop` kills it by pid too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{S3Credentials, S3Options, Secret, WebdavOptions};

/// The script that starts either server and prints its port.
const LAUNCHER: &str = include_str!("launcher.py");
/// How long a server may take to start and answer.
const START_DEADLINE: Duration = Duration::from_secs(90);
/// The WebDAV test account.
pub const WEBDAV_USER: &str = "onefolder";
/// The WebDAV test account's password (a test value; the tests check it never leaks).
pub const WEBDAV_PASSWORD: &str = "webdav-test-password-5f2c";
/// The S3 test access key id.
pub const S3_ACCESS_KEY_ID: &str = "AKIAONEFOLDERTEST";
/// The S3 test secret key (a test value; the tests check it never leaks).
pub const S3_SECRET_KEY: &str = "s3-test-secret-key-9d41";

/// The workspace's `target/test-servers` folder.
pub fn install_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-servers")
}

/// The virtual environment holding the servers: `ONEFOLDER_SYNC_TEST_SERVERS`, or
/// `<workspace>/target/test-servers/venv`.
pub fn venv_dir() -> PathBuf {
    match std::env::var_os("ONEFOLDER_SYNC_TEST_SERVERS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => install_dir().join("venv"),
    }
}

fn python() -> PathBuf {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    assert!(
        python.exists(),
        "the S3 and WebDAV test servers are not installed ({} is missing): run `cargo xtask test-servers` \
         (or point ONEFOLDER_SYNC_TEST_SERVERS at a Python venv with moto[server], wsgidav and cheroot)",
        python.display()
    );
    python
}

/// A server process this test process started.
pub struct Server {
    child: Mutex<Child>,
    /// Kept open: the server exits when it closes.
    _stdin: Mutex<ChildStdin>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Server {
    /// Starts the launcher with `args`, reads the port it prints, and waits until the port
    /// answers HTTP. Panics with the server's log when it does not start.
    pub fn start(kind: &str, args: &[&str]) -> Server {
        let logs = install_dir().join("logs");
        std::fs::create_dir_all(&logs).expect("create the test server log folder");
        let log = logs.join(format!("{kind}-{}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).expect("create the test server log");
        let mut child = Command::new(python())
            .arg("-c")
            .arg(LAUNCHER)
            .arg(kind)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start the {kind} test server: {e} (run `cargo xtask test-servers`)"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let failed = |child: &mut Child, why: String| -> ! {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String =
                text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            panic!(
                "the {kind} test server did not start: {why}\n(is it installed? run `cargo xtask test-servers`)\n{tail}"
            )
        };
        let port = match rx.recv_timeout(START_DEADLINE) {
            Ok(line) => match line.trim().parse::<u16>() {
                Ok(port) => port,
                Err(_) => failed(&mut child, format!("it printed {line:?} instead of its port")),
            },
            Err(_) => failed(&mut child, "it printed no port in time".into()),
        };
        let end = Instant::now() + START_DEADLINE;
        while !answers_http(port) {
            if Instant::now() > end || child.try_wait().ok().flatten().is_some() {
                failed(&mut child, format!("port {port} did not answer"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child: Mutex::new(child), _stdin: Mutex::new(stdin), port, log }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Whether something on 127.0.0.1:`port` answers an HTTP request with a status line.
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"OPTIONS / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The moto S3 server of this test process.
pub struct S3Server {
    /// The process.
    pub server: Server,
}

/// The S3 server of this test process, started on first use.
pub fn s3() -> &'static S3Server {
    static S3: OnceLock<S3Server> = OnceLock::new();
    S3.get_or_init(|| S3Server { server: Server::start("s3", &[]) })
}

impl S3Server {
    /// Creates a new empty bucket and returns its name.
    pub async fn new_bucket(&self) -> String {
        let bucket = format!("onefolder-{}-{}", std::process::id(), unique());
        let client = crate::http::client().expect("an HTTP client");
        let url = format!("{}/{bucket}", self.server.endpoint());
        // On the HTTP runtime: the caller may run on a paused clock.
        let status = crate::http::on_http_runtime(async move { client.put(url).send().await.map(|r| r.status()) })
            .await
            .expect("the HTTP runtime")
            .unwrap_or_else(|e| panic!("create bucket {bucket}: {e}"));
        assert!(status.is_success(), "create bucket {bucket}: {status}");
        bucket
    }

    /// Options for the library at `prefix` in `bucket`, with the test credentials.
    pub fn options(&self, bucket: &str, prefix: &str) -> S3Options {
        S3Options {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: Some(self.server.endpoint()),
            region: Some("us-east-1".into()),
            credentials: Some(S3Credentials {
                access_key_id: S3_ACCESS_KEY_ID.into(),
                secret_access_key: Secret::new(S3_SECRET_KEY),
                session_token: None,
            }),
            virtual_host_style: false,
            allow_plain_http: false,
        }
    }
}

/// The wsgidav WebDAV server of this test process, serving a folder on disk.
pub struct WebdavServer {
    /// The process.
    pub server: Server,
    /// The folder it serves.
    pub root: PathBuf,
}

/// The WebDAV server of this test process, started on first use.
pub fn webdav() -> &'static WebdavServer {
    static DAV: OnceLock<WebdavServer> = OnceLock::new();
    DAV.get_or_init(|| {
        remove_dead_roots(&install_dir().join("webdav"));
        let root = install_dir().join("webdav").join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create the WebDAV root");
        let root = root.canonicalize().expect("canonical WebDAV root");
        let server = Server::start("webdav", &[root.to_str().expect("a UTF-8 path"), WEBDAV_USER, WEBDAV_PASSWORD]);
        WebdavServer { server, root }
    })
}

/// Removes the WebDAV roots of test processes that have ended (named by their pid).
fn remove_dead_roots(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl WebdavServer {
    /// A new empty folder on the server: its URL path and its directory on disk.
    pub fn new_folder(&self) -> (String, PathBuf) {
        let name = format!("library-{}", unique());
        let dir = self.root.join(&name);
        std::fs::create_dir_all(&dir).expect("create a WebDAV library folder");
        (format!("/{name}"), dir)
    }

    /// Options for the library at `path`, with the test account.
    pub fn options(&self, path: &str) -> WebdavOptions {
        WebdavOptions {
            endpoint: self.server.endpoint(),
            path: path.to_owned(),
            user: Some(WEBDAV_USER.into()),
            password: Some(Secret::new(WEBDAV_PASSWORD)),
            allow_plain_http: false,
        }
    }
}
