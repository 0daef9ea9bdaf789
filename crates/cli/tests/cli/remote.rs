//! The provider APIs end to end, against the in-repo emulators on 127.0.0.1: `auth` signs in
//! through the browser flow (the emulator plays the browser), `init --transport …` puts the
//! database at the provider, and a second computer on the folder the provider's desktop client
//! would sync (the directory the emulator serves) shares the library with it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use onefolder_emulators::dropbox::{self, DropboxEmulator};
use onefolder_emulators::gdrive::{self, GdriveEmulator};

use crate::common::{Computer, World, write_file};

const DEADLINE: Duration = Duration::from_secs(60);

/// A provider under test: its name, the emulator and the environment that points at it.
struct Provider {
    name: &'static str,
    env: Vec<(String, String)>,
    /// The directory the emulator serves as the provider's root.
    root: PathBuf,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

fn gdrive_provider(w: &World) -> (Provider, GdriveEmulator) {
    let root = w.path().join("drive");
    let emulator = GdriveEmulator::start_on_dir(&root).expect("start the Drive emulator");
    let env = [
        ("ONEFOLDER_SYNC_GDRIVE_CLIENT_ID", gdrive::CLIENT_ID.to_owned()),
        ("ONEFOLDER_SYNC_GDRIVE_CLIENT_SECRET", gdrive::CLIENT_SECRET.to_owned()),
        ("ONEFOLDER_SYNC_GDRIVE_AUTH_URL", emulator.auth_url()),
        ("ONEFOLDER_SYNC_GDRIVE_TOKEN_URL", emulator.token_url()),
        ("ONEFOLDER_SYNC_GDRIVE_URL", emulator.url()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    (Provider { name: "gdrive", env, root }, emulator)
}

fn dropbox_provider(w: &World) -> (Provider, DropboxEmulator) {
    let root = w.path().join("dropbox");
    let emulator = DropboxEmulator::start(&root).expect("start the Dropbox emulator");
    let env = [
        ("ONEFOLDER_SYNC_DROPBOX_CLIENT_ID", dropbox::CLIENT_ID.to_owned()),
        ("ONEFOLDER_SYNC_DROPBOX_AUTH_URL", emulator.authorize_url()),
        ("ONEFOLDER_SYNC_DROPBOX_TOKEN_URL", emulator.token_url()),
        ("ONEFOLDER_SYNC_DROPBOX_URL", emulator.url()),
        // Any free port (the real app registers its fixed one; parallel tests must not share it).
        ("ONEFOLDER_SYNC_DROPBOX_REDIRECT_PORT", "0".to_owned()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    (Provider { name: "dropbox", env, root }, emulator)
}

/// Plays a browser on loopback URLs: GET, and follow one redirect.
async fn browser(url: &str) -> Result<(), String> {
    let (status, location) = get(url).await?;
    let location = match (status, location) {
        (302 | 303, Some(location)) => location,
        (status, _) => return Err(format!("{url} answered {status}, not a redirect")),
    };
    match get(&location).await? {
        (200..=299, _) => Ok(()),
        (status, _) => Err(format!("the app's redirect page answered {status}")),
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1: the status and the Location header.
async fn get(url: &str) -> Result<(u16, Option<String>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("not a loopback http URL: {url}"))?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".into()));
    assert!(host.starts_with("127.0.0.1:") || host.starts_with("localhost:"), "only loopback: {url}");
    let mut stream = tokio::net::TcpStream::connect(host).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&reply);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let location = text
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")))
        .map(|(_, v)| v.trim().to_owned());
    Ok((status, location))
}

/// Runs `auth <provider>`, plays the browser on the URL it shows, waits for it to finish.
fn sign_in(c: &Computer, p: &Provider) -> String {
    let mut child =
        c.std_cmd().args(["auth", p.name]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start auth");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let end = Instant::now() + DEADLINE;
    let mut shown = Vec::new();
    let url = loop {
        let line = rx.recv_timeout(end.saturating_duration_since(Instant::now())).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("auth {} showed no URL within {DEADLINE:?}: {shown:?}", p.name)
        });
        shown.push(line.clone());
        if line.trim_start().starts_with("http://") {
            break line.trim().to_owned();
        }
    };
    // The user's browser: the provider's consent page approves and sends it back to the
    // loopback address the command listens on.
    runtime().block_on(browser(&url)).unwrap_or_else(|e| panic!("consent on {url}: {e}"));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < end, "auth {} did not finish after the consent", p.name);
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    use std::io::Read;
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    shown.extend(rx.try_iter());
    assert!(status.success(), "auth {} failed: {out} {shown:?}", p.name);
    out + &shown.join("\n")
}

fn token_file(w: &World, provider: &str) -> PathBuf {
    w.xdg().join("onefolder-sync").join("auth").join(format!("{provider}.json"))
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The secrets of a token file: every string under a key that names a token or a secret.
fn secrets_of(path: &Path) -> Vec<String> {
    fn walk(v: &serde_json::Value, secret: bool, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if secret => out.push(s.clone()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, secret, out)),
            serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| {
                let k = k.to_ascii_lowercase();
                walk(v, secret || k.contains("token") || k.contains("secret"), out)
            }),
            _ => {}
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = Vec::new();
    walk(&v, false, &mut out);
    out
}

fn api_and_folder_share_a_library(p: Provider) {
    let w = World::new();
    let mut laptop = w.computer("laptop");
    laptop.env = p.env.clone();
    let signed = sign_in(&laptop, &p);
    let file = token_file(&w, p.name);
    assert!(file.is_file(), "no token file at {}", file.display());
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600, "the token file is readable by its owner only");
    let status = laptop.json(&["auth", "status"]);
    let mine = status.as_array().unwrap().iter().find(|s| s["provider"] == p.name).unwrap().clone();
    assert_eq!(mine["signedIn"], true, "{status}");
    let secrets = secrets_of(&file);
    assert!(!secrets.is_empty());
    for secret in &secrets {
        assert!(!signed.contains(secret.as_str()), "auth printed a secret");
        assert!(!status.to_string().contains(secret.as_str()), "auth status printed a secret");
    }

    // The laptop keeps its pictures at home and the database at the provider.
    laptop.write("2026/tom.jpg", b"tom the cat");
    let spec = format!("{}:Pictures", p.name);
    let init = laptop.json(&["init", &laptop.lib(), "--transport", &spec, "--name", "laptop"]);
    assert_eq!(init["transport"], spec.as_str());
    laptop.ok(&["index"]);
    laptop.ok(&["tag", "create", "Animals/Cats"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats"]);
    laptop.ok(&["sync", "--once"]);
    let shared = p.root.join("Pictures");
    assert!(shared.join("onefolder_tags").join("library.json").is_file(), "the database is at the provider");
    assert!(!laptop.library.join("onefolder_tags").exists(), "and not in the laptop's folder");

    // The desktop runs the provider's desktop client: the folder the emulator serves.
    let mut desktop = w.computer("desktop");
    desktop.library = shared.clone();
    write_file(&shared.join("2026/tom.jpg"), b"tom the cat");
    desktop.ok(&["join", &desktop.lib(), "--name", "desktop"]);
    assert_eq!(desktop.tags_of("2026/tom.jpg"), ["Animals/Cats"]);
    desktop.ok(&["tag", "rename", "Animals/Cats", "Kitties"]);
    desktop.ok(&["sync", "--once"]);
    laptop.ok(&["sync", "--once"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["Animals/Kitties"]);
    assert_eq!(laptop.export(), desktop.export());
    let inspect = laptop.json(&["inspect"]);
    assert_eq!(inspect["devices"].as_array().unwrap().len(), 2, "{inspect}");

    // Signed out, the API library says how to sign in again.
    let out = laptop.json(&["auth", "logout", p.name]);
    assert_eq!(out["removed"], true);
    assert!(!file.exists());
    let e = laptop.fails(&["sync", "--once"], 1);
    assert!(e.contains(&format!("onefolder-sync auth {}", p.name)), "{e}");
}

#[test]
fn gdrive_api_and_desktop_folder_share_a_library() {
    let w = World::new();
    let (p, _emulator) = gdrive_provider(&w);
    api_and_folder_share_a_library(p);
}

#[test]
fn dropbox_api_and_desktop_folder_share_a_library() {
    let w = World::new();
    let (p, _emulator) = dropbox_provider(&w);
    api_and_folder_share_a_library(p);
}

#[test]
fn transport_without_sign_in_or_with_a_bad_spec_is_refused() {
    let w = World::new();
    let c = w.computer("laptop");
    for (spec, needle) in
        [("gdrive:Pictures", "onefolder-sync auth gdrive"), ("dropbox:Pictures", "onefolder-sync auth dropbox")]
    {
        let e = c.fails(&["init", &c.lib(), "--transport", spec], 1);
        assert!(e.contains(needle), "{spec}: {e}");
    }
    // A spec that does not parse is a usage error (clap adds its hint line).
    for (spec, needle) in [("gdrive:", "needs the path"), ("ftp://host/x", "unknown transport")] {
        let out = c.run(&["init", &c.lib(), "--transport", spec]);
        assert_eq!(out.status.code(), Some(1), "{spec}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(needle), "{spec}: {e}");
    }
    let status = c.json(&["auth", "status"]);
    assert!(status.as_array().unwrap().iter().all(|s| s["signedIn"] == false), "{status}");
    let out = c.json(&["auth", "logout", "dropbox"]);
    assert_eq!(out["removed"], false);
    let e = c.fails(&["auth", "logout", "onedrive"], 1);
    assert!(e.contains("unknown provider"), "{e}");
}

/// A library whose database is in an S3 bucket (moto) or a WebDAV folder (wsgidav): a
/// computer on the API and a second one converge; nothing secret reaches the output.
fn object_store_library(spec: &str, env: Vec<(String, String)>, secret: &str, served: Option<&Path>) {
    let w = World::new();
    let mut laptop = w.computer("laptop");
    laptop.env = env.clone();
    laptop.write("2026/tom.jpg", b"tom the cat");
    let init = laptop.json(&["init", &laptop.lib(), "--transport", spec, "--name", "laptop"]);
    assert_eq!(init["transport"], spec);
    laptop.ok(&["index"]);
    laptop.ok(&["tag", "create", "Animals/Cats"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Animals/Cats"]);
    let synced = laptop.ok(&["sync", "--once"]);
    assert!(!laptop.library.join("onefolder_tags").exists(), "the database is not in the laptop's folder");
    let mut desktop = w.computer("desktop");
    match served {
        // WebDAV serves a directory: the second computer reads it as a plain synced folder.
        Some(dir) => {
            desktop.library = dir.to_path_buf();
            desktop.write("2026/tom.jpg", b"tom the cat");
            desktop.ok(&["join", &desktop.lib(), "--name", "desktop"]);
        }
        None => {
            desktop.env = env;
            desktop.write("2026/tom.jpg", b"tom the cat");
            desktop.ok(&["join", &desktop.lib(), "--transport", spec, "--name", "desktop"]);
        }
    }
    assert_eq!(desktop.tags_of("2026/tom.jpg"), ["Animals/Cats"]);
    desktop.ok(&["tag", "rename", "Animals/Cats", "Kitties"]);
    desktop.ok(&["sync", "--once"]);
    laptop.ok(&["sync", "--once"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["Animals/Kitties"]);
    assert_eq!(laptop.export(), desktop.export());
    let inspect = laptop.json(&["inspect"]);
    assert_eq!(inspect["devices"].as_array().unwrap().len(), 2, "{inspect}");
    for shown in [synced, init.to_string(), inspect.to_string(), laptop.json(&["status"]).to_string()] {
        assert!(!shown.contains(secret), "a secret in the output");
    }
}

#[test]
fn s3_bucket_library_converges() {
    use onefolder_transport_opendal::servers;
    let s3 = servers::s3();
    let bucket = runtime().block_on(s3.new_bucket());
    let env = [
        ("AWS_ACCESS_KEY_ID", servers::S3_ACCESS_KEY_ID.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", servers::S3_SECRET_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("ONEFOLDER_SYNC_S3_ENDPOINT", s3.server.endpoint()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    object_store_library(&format!("s3://{bucket}/Pictures"), env, servers::S3_SECRET_KEY, None);
}

#[test]
fn webdav_library_converges_with_a_folder_computer() {
    use onefolder_transport_opendal::servers;
    let dav = servers::webdav();
    let (path, dir) = dav.new_folder();
    let host = dav.server.endpoint().trim_start_matches("http://").to_owned();
    let env = [
        ("ONEFOLDER_SYNC_WEBDAV_USER", servers::WEBDAV_USER.to_owned()),
        ("ONEFOLDER_SYNC_WEBDAV_PASSWORD", servers::WEBDAV_PASSWORD.to_owned()),
    ];
    let env = env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    object_store_library(&format!("webdav+http://{host}{path}"), env, servers::WEBDAV_PASSWORD, Some(&dir));
}
