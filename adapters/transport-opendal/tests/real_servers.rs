//! Against real servers on 127.0.0.1 (moto for S3, wsgidav for WebDAV; `cargo xtask
//! test-servers` installs them): create-only writes, concurrent creates, the change cursor,
//! capped reads, error mapping and secrets in error messages.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::names::{DEVICE_FILE, delta_name};
use onefolder_core::{DeviceId, Transport, TransportError, TransportExt};
use onefolder_transport_opendal::servers::{self, S3_SECRET_KEY, WEBDAV_PASSWORD};
use onefolder_transport_opendal::{OpendalTransport, S3Options, Secret, WebdavOptions};

async fn s3() -> OpendalTransport {
    let server = servers::s3();
    let bucket = server.new_bucket().await;
    OpendalTransport::s3(server.options(&bucket, "some/prefix")).unwrap()
}

fn webdav() -> (OpendalTransport, std::path::PathBuf) {
    let server = servers::webdav();
    let (path, dir) = server.new_folder();
    (OpendalTransport::webdav(server.options(&path)).unwrap(), dir)
}

/// The second create of a name fails with `AlreadyExists` and keeps the first bytes.
async fn create_only(t: &OpendalTransport) {
    let dev = DeviceId::random();
    let name = delta_name(1);
    t.create(&dev, &name, b"first").await.unwrap();
    let again = t.create(&dev, &name, b"second, longer").await;
    assert!(matches!(again, Err(TransportError::AlreadyExists(_))), "{again:?}");
    assert_eq!(t.read(&dev, &name, 1 << 20).await.unwrap(), b"first");
    let listed = t.list(&dev).await.unwrap();
    assert_eq!(listed.len(), 1, "no temporary file is listed: {listed:?}");
    assert_eq!(listed[0].size, 5);
    t.replace(&dev, DEVICE_FILE, b"{\"v\":1}").await.unwrap();
    t.replace(&dev, DEVICE_FILE, b"{\"v\":22}").await.unwrap();
    assert_eq!(t.read(&dev, DEVICE_FILE, 1 << 20).await.unwrap(), b"{\"v\":22}");
    assert!(t.create_manifest(b"manifest one").await.unwrap());
    assert!(!t.create_manifest(b"manifest two").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().unwrap(), b"manifest one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_create_is_conditional() {
    let t = s3().await;
    create_only(&t).await;
    // The layout: everything under <prefix>/onefolder_tags/.
    let raw = OpendalTransport::s3(S3Options { prefix: String::new(), ..options_of_s3(&t).await }).unwrap();
    let keys: Vec<String> =
        raw.operator().list_with("").recursive(true).await.unwrap().iter().map(|e| e.path().to_owned()).collect();
    assert!(keys.is_empty(), "a transport with another prefix sees nothing: {keys:?}");
}

/// The options of an S3 transport's bucket (the test server's), for a second view of it.
async fn options_of_s3(t: &OpendalTransport) -> S3Options {
    let shown = t.to_string();
    let bucket = shown.trim_start_matches("s3://").split('/').next().unwrap().to_owned();
    servers::s3().options(&bucket, "some/prefix")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_layout_matches_the_folder_layout() {
    let t = s3().await;
    let dev = DeviceId::random();
    t.create(&dev, &delta_name(3), b"x").await.unwrap();
    assert!(t.create_manifest(b"{}").await.unwrap());
    let root = OpendalTransport::s3(S3Options { prefix: String::new(), ..options_of_s3(&t).await }).unwrap();
    let _ = root;
    let server = servers::s3();
    let bucket = options_of_s3(&t).await.bucket;
    let whole = OpendalTransport::s3(server.options(&bucket, "")).unwrap();
    // `whole` is rooted at <bucket>/onefolder_tags/: the prefixed library is not there.
    assert_eq!(whole.read_manifest().await.unwrap(), None);
    let mut keys: Vec<String> = t
        .operator()
        .list_with("")
        .recursive(true)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.metadata().is_file())
        .map(|e| e.path().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, vec![format!("database/{dev}/{}", delta_name(3)), "library.json".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav_create_never_overwrites() {
    let (t, dir) = webdav();
    create_only(&t).await;
    // On disk: the files, and no temporary file left behind.
    let tags = dir.join("onefolder_tags");
    assert_eq!(std::fs::read(tags.join("library.json")).unwrap(), b"manifest one");
    let mut leftovers = Vec::new();
    for device in std::fs::read_dir(tags.join("database")).unwrap() {
        for f in std::fs::read_dir(device.unwrap().path()).unwrap() {
            let name = f.unwrap().file_name().into_string().unwrap();
            if name.starts_with('.') {
                leftovers.push(name);
            }
        }
    }
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// Eight handles create the same name at once, 15 rounds. Guaranteed (and checked): at
/// least one create succeeds, the file holds exactly the bytes of one that succeeded (never a
/// mix, never a loser's), and a create after the name is visible always fails. Whether only
/// one succeeds depends on the server serializing `MOVE`; the count is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav_concurrent_creates() {
    let server = servers::webdav();
    let (path, _dir) = server.new_folder();
    let handles: Vec<Arc<OpendalTransport>> =
        (0..8).map(|_| Arc::new(OpendalTransport::webdav(server.options(&path)).unwrap())).collect();
    let dev = DeviceId::random();
    let (mut several, mut transient) = (0, 0);
    for round in 1..=15u64 {
        let name = delta_name(round);
        let tasks: Vec<_> = handles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let (t, name) = (t.clone(), name.clone());
                tokio::spawn(async move {
                    let bytes = vec![i as u8; 1000 + i * 10];
                    (i, t.create(&dev, &name, &bytes).await)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            match result {
                Ok(()) => winners.push(i),
                Err(TransportError::AlreadyExists(_)) => {}
                // wsgidav answers 500 to a MOVE that loses a race: the caller retries, and the
                // retry finds the name taken.
                Err(TransportError::Transient(_)) => transient += 1,
                Err(e) => panic!("round {round}, writer {i}: {e}"),
            }
        }
        assert!(!winners.is_empty(), "round {round}: nobody won");
        several += usize::from(winners.len() > 1);
        let content = handles[0].read(&dev, &name, 1 << 20).await.unwrap();
        let owner = content[0] as usize;
        assert!(winners.contains(&owner), "round {round}: the content is a loser's ({owner}, winners {winners:?})");
        assert_eq!(content, vec![owner as u8; 1000 + owner * 10], "round {round}: whole content of one writer");
        let late = handles[1].create(&dev, &name, b"late").await;
        assert!(matches!(late, Err(TransportError::AlreadyExists(_))), "{late:?}");
    }
    println!(
        "webdav concurrent creates: {several} of 15 rounds had more than one successful create; \
         {transient} of 120 creates failed as temporary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_creates_have_one_winner() {
    let t = Arc::new(s3().await);
    let dev = DeviceId::random();
    for round in 1..=10u64 {
        let name = delta_name(round);
        let tasks: Vec<_> = (0..8u8)
            .map(|i| {
                let (t, name) = (t.clone(), name.clone());
                tokio::spawn(async move { (i, t.create(&dev, &name, &[i; 64]).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (i, r) = task.await.unwrap();
            match r {
                Ok(()) => winners.push(i),
                Err(TransportError::AlreadyExists(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert_eq!(t.read(&dev, &name, 100).await.unwrap(), vec![winners[0]; 64]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_changes_since_reports_only_what_changed() {
    let writer = s3().await;
    let reader = OpendalTransport::s3(options_of_s3(&writer).await).unwrap();
    let (own, a, b) = (DeviceId::random(), DeviceId::random(), DeviceId::random());
    writer.create(&own, &delta_name(1), b"own").await.unwrap();
    writer.create(&a, &delta_name(1), b"a1").await.unwrap();
    writer.replace(&a, DEVICE_FILE, b"{\"n\":1}").await.unwrap();

    let first = reader.changes_since(None, Some(&own)).await.unwrap();
    assert!(first.complete);
    let mut names: Vec<_> = first.files.iter().map(|(d, f)| (d.clone(), f.name.clone())).collect();
    names.sort();
    let mut expected = vec![(a.to_string(), delta_name(1)), (a.to_string(), DEVICE_FILE.to_owned())];
    expected.sort();
    assert_eq!(names, expected);
    assert!(first.files.iter().all(|(_, f)| f.version.is_some()), "versions from ETags");
    assert!(first.folders.contains(&own.to_string()), "a complete set names every folder");

    // Idle: nothing, not complete, one listing request.
    let before = reader.http_stats();
    let idle = reader.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    assert!(idle.files.is_empty() && !idle.complete, "{:?}", idle.files);
    assert_eq!(reader.http_stats().requests - before.requests, 1, "an idle pass is one request");

    // New files, a replaced file, the skipped folder.
    writer.create(&b, &delta_name(1), b"b1").await.unwrap();
    writer.create(&own, &delta_name(2), b"own2").await.unwrap();
    writer.replace(&a, DEVICE_FILE, b"{\"n\":2}").await.unwrap();
    let next = reader.changes_since(Some(&idle.cursor), Some(&own)).await.unwrap();
    assert!(!next.complete);
    let mut got: Vec<_> = next.files.iter().map(|(d, f)| (d.clone(), f.name.clone(), f.size)).collect();
    got.sort();
    let mut want = vec![(b.to_string(), delta_name(1), 2), (a.to_string(), DEVICE_FILE.to_owned(), 7)];
    want.sort();
    assert_eq!(got, want);
    let old_version = first.files.iter().find(|(_, f)| f.name == DEVICE_FILE).unwrap().1.version.clone();
    let new_version = next.files.iter().find(|(_, f)| f.name == DEVICE_FILE).unwrap().1.version.clone();
    assert_ne!(old_version, new_version, "a replaced file has a new version");
    let mut folders = next.folders.clone();
    folders.sort();
    let mut want_folders = vec![a.to_string(), b.to_string()];
    want_folders.sort();
    assert_eq!(folders, want_folders, "only the folders that changed");

    // An older cursor still works (listings are kept), a foreign one gives a full listing.
    let again = reader.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    assert!(!again.complete && again.files.len() == 2, "{:?}", again.files);
    let other = OpendalTransport::s3(options_of_s3(&writer).await).unwrap();
    let foreign = other.changes_since(Some(&next.cursor), Some(&own)).await.unwrap();
    assert!(foreign.complete, "another transport's cursor");
    let garbage = reader.changes_since(Some(&onefolder_core::ChangeCursor("x:y".into())), None).await.unwrap();
    assert!(garbage.complete && garbage.files.len() == 5, "{:?}", garbage.files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webdav_changes_since_is_a_full_listing() {
    let (t, _dir) = webdav();
    let (own, a) = (DeviceId::random(), DeviceId::random());
    t.create(&own, &delta_name(1), b"own").await.unwrap();
    t.create(&a, &delta_name(1), b"a1").await.unwrap();
    let first = t.changes_since(None, Some(&own)).await.unwrap();
    assert!(first.complete);
    assert_eq!(first.files.len(), 1);
    assert!(!t.capabilities().changes_feed);
    let before = t.http_stats();
    let idle = t.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    assert!(idle.complete && idle.files.len() == 1);
    // 1 + devices PROPFINDs (the skipped folder is not listed).
    assert_eq!(t.http_stats().requests - before.requests, 2);
}

async fn capped_reads(t: &OpendalTransport) {
    let dev = DeviceId::random();
    t.create(&dev, &delta_name(1), &vec![7u8; 100_000]).await.unwrap();
    let before = t.http_stats();
    let r = t.read(&dev, &delta_name(1), 99_999).await;
    assert!(matches!(r, Err(TransportError::TooLarge { size: 100_000, cap: 99_999, .. })), "{r:?}");
    let after = t.http_stats();
    assert_eq!(after.requests - before.requests, 1, "one request");
    assert!(after.bytes_received - before.bytes_received < 10_000, "the body was not read");
    assert_eq!(t.read(&dev, &delta_name(1), 100_000).await.unwrap().len(), 100_000);
    t.create(&dev, &delta_name(2), b"").await.unwrap();
    assert_eq!(t.read(&dev, &delta_name(2), 0).await.unwrap(), b"");
    let missing = t.read(&dev, &delta_name(9), 100).await;
    assert!(matches!(missing, Err(TransportError::NotFound(_))), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_capped_before_the_body() {
    capped_reads(&s3().await).await;
    capped_reads(&webdav().0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_without_showing_it() {
    let server = servers::webdav();
    let (path, _dir) = server.new_folder();
    let wrong = "wrong-password-271828";
    let t = OpendalTransport::webdav(WebdavOptions { password: Some(Secret::new(wrong)), ..server.options(&path) })
        .unwrap();
    let err = t.create(&DeviceId::random(), &delta_name(1), b"x").await.unwrap_err();
    assert!(matches!(&err, TransportError::Unauthorized(_)) && !err.is_retryable(), "a refused login: {err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(wrong) && !shown.contains(WEBDAV_PASSWORD), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_show_the_s3_secret() {
    let server = servers::s3();
    let t = OpendalTransport::s3(server.options("no-such-bucket-here", "x")).unwrap();
    let err = t.create(&DeviceId::random(), &delta_name(1), b"x").await.unwrap_err();
    for shown in [err.to_string(), format!("{err:?}"), format!("{t:?}")] {
        assert!(!shown.contains(S3_SECRET_KEY), "{shown}");
    }
}

/// A one-thread HTTP server on 127.0.0.1 answering every request with `response`; stops
/// after `count` requests.
fn canned(response: &'static str, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read the head and the body its Content-Length announces.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}")
}

const SLOW_DOWN: &str = "HTTP/1.1 503 Slow Down\r\nRetry-After: 7\r\nContent-Type: application/xml\r\nContent-Length: 92\r\nConnection: close\r\n\r\n<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>";
const TOO_MANY: &str =
    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const UNAVAILABLE: &str = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

fn s3_at(endpoint: String) -> OpendalTransport {
    OpendalTransport::s3(S3Options { endpoint: Some(endpoint), ..servers::s3().options("bucket", "") }).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_kinds_are_mapped() {
    // S3 503 SlowDown with Retry-After.
    let t = s3_at(canned(SLOW_DOWN, 4));
    let r = t.read(&DeviceId::random(), &delta_name(1), 100).await;
    assert!(
        matches!(r, Err(TransportError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(7)),
        "{r:?}"
    );
    // 429 with Retry-After, on a WebDAV read.
    let server = servers::webdav();
    let dav =
        OpendalTransport::webdav(WebdavOptions { endpoint: canned(TOO_MANY, 4), ..server.options("/x") }).unwrap();
    let r = dav.read(&DeviceId::random(), &delta_name(1), 100).await;
    assert!(
        matches!(r, Err(TransportError::RateLimited { retry_after: Some(d) }) if d == Duration::from_secs(3)),
        "{r:?}"
    );
    // A 500: temporary.
    let t = s3_at(canned(UNAVAILABLE, 4));
    let r = t.list(&DeviceId::random()).await;
    assert!(matches!(r, Err(TransportError::Transient(_))), "{r:?}");
    // Nothing listening: temporary.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = s3_at(format!("http://127.0.0.1:{port}"));
    let r = t.read_manifest().await;
    assert!(matches!(&r, Err(e) if e.is_retryable()), "{r:?}");
    // A missing file: NotFound; an existing name on create: AlreadyExists (above).
    let real = s3().await;
    let r = real.read(&DeviceId::random(), &delta_name(1), 100).await;
    assert!(matches!(r, Err(TransportError::NotFound(_))), "{r:?}");
}

#[test]
fn map_error_kinds() {
    use onefolder_transport_opendal::{Refusal, map_error};
    use opendal::{Error, ErrorKind};
    let e = |kind| Error::new(kind, "x");
    let none = Refusal::default();
    let status = |s: u16, after: Option<u64>| Refusal { status: Some(s), retry_after: after.map(Duration::from_secs) };
    assert!(matches!(map_error(&e(ErrorKind::NotFound), "f", none), TransportError::NotFound(_)));
    assert!(matches!(
        map_error(&e(ErrorKind::ConditionNotMatch), "f", status(412, None)),
        TransportError::AlreadyExists(_)
    ));
    assert!(matches!(
        map_error(&e(ErrorKind::RateLimited), "f", status(503, Some(2))),
        TransportError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)
    ));
    assert!(matches!(
        map_error(&e(ErrorKind::Unexpected), "f", status(429, None)),
        TransportError::RateLimited { retry_after: None }
    ));
    assert!(matches!(map_error(&e(ErrorKind::Unexpected).set_temporary(), "f", none), TransportError::Transient(_)));
    assert!(matches!(map_error(&e(ErrorKind::Unexpected), "f", status(502, None)), TransportError::Transient(_)));
    for denied in [
        map_error(&e(ErrorKind::PermissionDenied), "f", none),
        map_error(&e(ErrorKind::Unexpected), "f", status(401, None)),
    ] {
        assert!(matches!(&denied, TransportError::Unauthorized(_)), "{denied:?}");
    }
    assert!(matches!(map_error(&e(ErrorKind::Unexpected), "f", none), TransportError::Io(_)));
}
