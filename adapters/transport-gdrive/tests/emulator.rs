//! The Google Drive transport against the in-repo emulator: every API mapping, pagination,
//! duplicates, lagging listings, error kinds, the change feed, token refresh, backoff on a
//! paused clock, sign-in end to end, and a library shared with a folder-transport device.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::names::{self, SegmentName};
use onefolder_core::{DeviceId, RetryLayer, RetryPolicy, Transport, TransportError, TransportExt, WriteMode};
use onefolder_emulators::gdrive::{self, Fault, GdriveEmulator};
use onefolder_transport_gdrive::auth::{self, OAuthApp, SCOPE_DRIVE};
use onefolder_transport_gdrive::{DATABASE_DIR, GdriveOptions, GdriveTransport, TAGS_DIR, Tokens};

const LIBRARY: &str = "Photos/2024";

fn options(emu: &GdriveEmulator) -> GdriveOptions {
    let mut o = GdriveOptions::with_server(LIBRARY, &emu.url(), &emu.url());
    o.poll_interval = Duration::from_millis(50);
    o
}

fn transport(emu: &GdriveEmulator) -> GdriveTransport {
    GdriveTransport::with_token(options(emu), gdrive::ACCESS_TOKEN).unwrap()
}

fn app(emu: &GdriveEmulator) -> OAuthApp {
    OAuthApp {
        client_id: gdrive::CLIENT_ID.to_owned(),
        client_secret: Some(gdrive::CLIENT_SECRET.to_owned()),
        auth_url: emu.auth_url(),
        token_url: emu.token_url(),
        scope: SCOPE_DRIVE.to_owned(),
    }
}

fn names_of(list: &[onefolder_core::FileEntry]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|f| f.name.clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn every_operation_maps_to_its_drive_call() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let dev = DeviceId::random();

    assert_eq!(t.read_manifest().await.unwrap(), None);
    assert!(t.create_manifest(b"{\"m\":1}").await.unwrap());
    assert!(!t.create_manifest(b"{\"m\":2}").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"{\"m\":1}"[..]));
    // The library path, onefolder_tags: folders created with POST files.
    assert_eq!(emu.count("files.create"), 3, "{:?}", emu.counts());

    emu.reset_counts();
    t.create(&dev, &names::delta_name(1), b"one").await.unwrap();
    assert_eq!(emu.count("files.create"), 2, "database and the device folder: {:?}", emu.counts());
    assert_eq!(emu.count("files.create.upload"), 1, "a multipart upload: {:?}", emu.counts());

    emu.reset_counts();
    t.create(&dev, &names::delta_name(2), b"two").await.unwrap();
    assert_eq!(emu.counts().get("files.create.upload"), Some(&1));
    assert_eq!(emu.count("files.list"), 1, "one by-name check before the create: {:?}", emu.counts());
    assert_eq!(emu.count("files.create"), 0, "folder ids are cached");

    let err = t.create(&dev, &names::delta_name(2), b"again").await.unwrap_err();
    assert!(matches!(err, TransportError::AlreadyExists(_)), "{err:?}");

    emu.reset_counts();
    t.replace(&dev, names::DEVICE_FILE, b"{\"v\":1}").await.unwrap();
    t.replace(&dev, names::DEVICE_FILE, b"{\"v\":2}").await.unwrap();
    assert_eq!(emu.count("files.create.upload"), 1);
    assert_eq!(emu.count("files.update.upload"), 1, "Replace updates the file by id: {:?}", emu.counts());
    assert_eq!(emu.ids_named(names::DEVICE_FILE).len(), 1);
    emu.reset_counts();
    t.replace(&dev, names::DEVICE_FILE, b"{\"v\":3}").await.unwrap();
    assert_eq!(emu.api_requests(), 1, "a known device.json is updated with one request: {:?}", emu.counts());

    let other = transport(&emu);
    assert_eq!(other.list_devices().await.unwrap(), vec![dev.to_string()]);
    let listed = other.list(&dev).await.unwrap();
    assert_eq!(names_of(&listed), vec![names::delta_name(1), names::delta_name(2), names::DEVICE_FILE.to_owned()]);
    assert!(listed.iter().all(|f| f.version.is_some()));
    emu.reset_counts();
    assert_eq!(other.read(&dev, &names::delta_name(2), 100).await.unwrap(), b"two");
    assert_eq!(emu.count("files.get.media"), 1);
    assert_eq!(emu.api_requests(), 1, "a listed file is read with one request: {:?}", emu.counts());
    assert_eq!(other.read(&dev, names::DEVICE_FILE, 100).await.unwrap(), b"{\"v\":3}");

    emu.reset_counts();
    let err = other.read(&dev, &names::delta_name(1), 2).await.unwrap_err();
    assert!(matches!(err, TransportError::TooLarge { size: 3, cap: 2, .. }), "{err:?}");
    assert_eq!(emu.count("files.get.media"), 0, "too large: not downloaded");

    t.delete(&dev, &names::delta_name(1)).await.unwrap();
    assert_eq!(emu.count("files.delete"), 1);
    t.delete(&dev, &names::delta_name(1)).await.unwrap();
    let err = transport(&emu).read(&dev, &names::delta_name(1), 100).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
    assert_eq!(names_of(&t.list(&dev).await.unwrap()), vec![names::delta_name(2), names::DEVICE_FILE.to_owned()]);
}

#[tokio::test]
async fn listings_follow_page_tokens() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let dev = DeviceId::random();
    for seq in 1..=7 {
        t.create(&dev, &names::delta_name(seq), &[seq as u8]).await.unwrap();
    }
    emu.set_max_page_size(Some(2));
    emu.reset_counts();
    let listed = transport(&emu).list(&dev).await.unwrap();
    assert_eq!(listed.len(), 7);
    assert!(emu.count("files.list") >= 4 + 4, "7 files in pages of 2 (and the folder lookups): {:?}", emu.counts());
    // The changes feed pages too.
    let reader = transport(&emu);
    let start = reader.changes_since(None, None).await.unwrap();
    for seq in 8..=12 {
        t.create(&dev, &names::delta_name(seq), &[seq as u8]).await.unwrap();
    }
    emu.reset_counts();
    let next = reader.changes_since(Some(&start.cursor), None).await.unwrap();
    assert!(!next.complete);
    assert_eq!(next.files.len(), 5, "{:?}", next.files);
    assert!(emu.count("changes.list") >= 3, "{:?}", emu.counts());
}

#[tokio::test]
async fn a_duplicate_segment_name_is_read_as_a_conflict_copy() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let dev = DeviceId::random();
    let name = names::delta_name(7);
    t.create(&dev, &name, b"first").await.unwrap();
    // A second client created the same name at once.
    let second = emu.plant(&["Photos", "2024", TAGS_DIR, DATABASE_DIR, &dev.to_string()], &name, b"second!");
    let reader = transport(&emu);
    let listed = reader.list(&dev).await.unwrap();
    let variant = format!("00000000000000000007 (drive {second}).seg");
    assert_eq!(names_of(&listed), vec![variant.clone(), name.clone()]);
    let parsed = SegmentName::parse(&variant).unwrap();
    assert_eq!((parsed.seq, parsed.variant), (7, true));
    onefolder_core::transport::check_name(&variant).unwrap();
    assert_eq!(reader.read(&dev, &name, 100).await.unwrap(), b"first");
    assert_eq!(reader.read(&dev, &variant, 100).await.unwrap(), b"second!");
    // A fresh handle maps the variant name back without listing first.
    assert_eq!(transport(&emu).read(&dev, &variant, 100).await.unwrap(), b"second!");
    let sizes: Vec<u64> = listed.iter().map(|f| f.size).collect();
    assert!(sizes.contains(&5) && sizes.contains(&7));
    // A variant name of a file in another folder is not read through this one.
    let elsewhere = emu.plant(&["elsewhere"], &name, b"not ours");
    let err = reader.read(&dev, &format!("00000000000000000007 (drive {elsewhere}).seg"), 100).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");

    // The upload fault: Drive keeps two files of one name.
    emu.duplicate_next_uploads(1);
    t.create(&dev, &names::delta_name(8), b"eight").await.unwrap();
    let listed = transport(&emu).list(&dev).await.unwrap();
    let eights: Vec<_> = listed.iter().filter(|f| SegmentName::parse(&f.name).is_some_and(|n| n.seq == 8)).collect();
    assert_eq!(eights.len(), 2, "{listed:?}");
    assert_ne!(eights[0].version, eights[1].version);
    // Deleting the variant removes that file only.
    reader.delete(&dev, &variant).await.unwrap();
    assert_eq!(emu.ids_named(&name).len(), 2, "the original and the file elsewhere stay");
    let listed = transport(&emu).list(&dev).await.unwrap();
    assert!(listed.iter().any(|f| f.name == name) && !listed.iter().any(|f| f.name == variant), "{listed:?}");
}

#[tokio::test]
async fn own_writes_are_listed_while_the_listing_lags() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"one").await.unwrap();
    emu.set_listing_lag(Duration::from_secs(600));
    t.create(&dev, &names::delta_name(2), b"two").await.unwrap();
    t.replace(&dev, names::DEVICE_FILE, b"{}").await.unwrap();
    let lagging = transport(&emu).list(&dev).await.unwrap();
    assert_eq!(names_of(&lagging), vec![names::delta_name(1)], "the server's listing lags");
    let own = t.list(&dev).await.unwrap();
    assert_eq!(names_of(&own), vec![names::delta_name(1), names::delta_name(2), names::DEVICE_FILE.to_owned()]);
    assert_eq!(t.read(&dev, &names::delta_name(2), 100).await.unwrap(), b"two");
    let err = t.create(&dev, &names::delta_name(2), b"again").await.unwrap_err();
    assert!(matches!(err, TransportError::AlreadyExists(_)), "{err:?}");
    t.delete(&dev, &names::delta_name(2)).await.unwrap();
    assert_eq!(names_of(&t.list(&dev).await.unwrap()), vec![names::delta_name(1), names::DEVICE_FILE.to_owned()]);
    // The feed is not affected by the lag: a peer sees the new file through it.
    emu.set_listing_lag(Duration::ZERO);
    let peer = transport(&emu);
    let start = peer.changes_since(None, None).await.unwrap();
    emu.set_listing_lag(Duration::from_secs(600));
    t.create(&dev, &names::delta_name(3), b"three").await.unwrap();
    let next = peer.changes_since(Some(&start.cursor), None).await.unwrap();
    let got: Vec<&str> = next.files.iter().map(|(_, f)| f.name.as_str()).collect();
    assert_eq!(got, vec![names::delta_name(3).as_str()]);
}

#[tokio::test]
async fn two_database_folders_are_one() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let (a, b) = (DeviceId::random(), DeviceId::random());
    t.create(&a, &names::delta_name(1), b"from a").await.unwrap();
    let tags = emu.ids_named(TAGS_DIR)[0].clone();
    // Another device created `database` at the same moment and wrote into its own.
    let second_db = emu.create_folder(&tags, DATABASE_DIR);
    let b_folder = emu.create_folder(&second_db, &b.to_string());
    let _ = b_folder;
    emu.plant(&["Photos", "2024", TAGS_DIR], "ignored", b"x");
    let reader = transport(&emu);
    let cursor = reader.changes_since(None, None).await.unwrap();
    assert!(cursor.complete);
    let mut devices = reader.list_devices().await.unwrap();
    devices.sort();
    let mut expected = vec![a.to_string(), b.to_string()];
    expected.sort();
    assert_eq!(devices, expected);
    // Files in the second database folder: planted beside the folder created above.
    let tb = transport(&emu);
    tb.create(&b, &names::delta_name(1), b"from b").await.unwrap();
    assert_eq!(emu.ids_named(DATABASE_DIR).len(), 2);
    assert_eq!(emu.ids_named(&b.to_string()).len(), 1, "b's folder in the second database is used");
    assert_eq!(reader.read(&b, &names::delta_name(1), 100).await.unwrap(), b"from b");
    let next = reader.changes_since(Some(&cursor.cursor), None).await.unwrap();
    assert_eq!(next.files.len(), 1, "{:?}", next.files);
    assert_eq!(next.files[0].0, b.to_string());
    // Two folders of one device name are one too.
    let db1 = emu.ids_named(DATABASE_DIR)[0].clone();
    emu.create_folder(&db1, &b.to_string());
    emu.plant(&["Photos", "2024", TAGS_DIR, DATABASE_DIR, &b.to_string()], &names::delta_name(2), b"b two");
    let listed = transport(&emu).list(&b).await.unwrap();
    assert_eq!(names_of(&listed), vec![names::delta_name(1), names::delta_name(2)]);
}

#[tokio::test]
async fn provider_errors_map_to_transport_error_kinds() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    emu.fail_next(&[Fault::TooManyRequests { retry_after_secs: 7 }]);
    let e = t.read_manifest().await.unwrap_err();
    assert!(matches!(e, TransportError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)), "{e:?}");
    emu.fail_next(&[Fault::RateLimit403 { user: true }]);
    let e = t.read_manifest().await.unwrap_err();
    assert!(matches!(e, TransportError::RateLimited { retry_after: None }), "{e:?}");
    emu.fail_next(&[Fault::RateLimit403 { user: false }]);
    let e = t.list_devices().await.unwrap_err();
    assert!(matches!(e, TransportError::RateLimited { .. }), "{e:?}");
    emu.fail_next(&[Fault::ServerError]);
    let e = t.list(&DeviceId::random()).await.unwrap_err();
    assert!(matches!(e, TransportError::Transient(_)), "{e:?}");
    assert!(e.is_retryable());
    let e = t.read(&DeviceId::random(), &names::delta_name(1), 10).await.unwrap_err();
    assert!(matches!(e, TransportError::NotFound(_)), "{e:?}");
    // A write refused by a rate limit, then retried: one file.
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"x").await.unwrap();
    emu.fail_next(&[Fault::TooManyRequests { retry_after_secs: 0 }]);
    let e = t.create(&dev, &names::delta_name(2), b"y").await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    t.create(&dev, &names::delta_name(2), b"y").await.unwrap();
    assert_eq!(emu.ids_named(&names::delta_name(2)).len(), 1);
    // An access token that is refused and cannot be refreshed: a clear error.
    let bad = GdriveTransport::with_token(options(&emu), "not-a-token").unwrap();
    let e = bad.list_devices().await.unwrap_err();
    let text = e.to_string();
    assert!(text.contains("onefolder-sync auth gdrive"), "{text}");
    assert!(!text.contains("not-a-token"), "no token in errors: {text}");
    // A server that is not there: transient.
    let gone = GdriveTransport::with_token(
        GdriveOptions::with_server(LIBRARY, "http://127.0.0.1:9", "http://127.0.0.1:9"),
        "t",
    )
    .unwrap();
    let e = gone.read_manifest().await.unwrap_err();
    assert!(matches!(e, TransportError::Transient(_)), "{e:?}");
}

#[tokio::test]
async fn an_invalid_page_token_falls_back_to_a_complete_listing() {
    let emu = GdriveEmulator::start().unwrap();
    let (writer, reader) = (transport(&emu), transport(&emu));
    let (own, peer) = (DeviceId::random(), DeviceId::random());
    writer.create(&peer, &names::delta_name(1), b"1").await.unwrap();
    let first = reader.changes_since(None, Some(&own)).await.unwrap();
    assert!(first.complete);
    emu.reset_counts();
    let idle = reader.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    assert!(!idle.complete && idle.files.is_empty());
    assert_eq!(emu.api_requests(), 1, "an idle pass is one changes.list: {:?}", emu.counts());
    writer.create(&peer, &names::delta_name(2), b"22").await.unwrap();
    emu.reset_changes();
    let after = reader.changes_since(Some(&idle.cursor), Some(&own)).await.unwrap();
    assert!(after.complete, "the token was reset: a full listing");
    assert_eq!(
        names_of(&after.files.iter().map(|(_, f)| f.clone()).collect::<Vec<_>>()),
        vec![names::delta_name(1), names::delta_name(2)]
    );
    let again = reader.changes_since(Some(&after.cursor), Some(&own)).await.unwrap();
    assert!(!again.complete && again.files.is_empty(), "{:?}", again.files);
}

/// A token file as a finished sign-in leaves, for the refresh tests.
fn signed_in_file(emu: &GdriveEmulator, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tokens").join("gdrive.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let body = serde_json::json!({
        "provider": "gdrive", "client_id": gdrive::CLIENT_ID, "scope": SCOPE_DRIVE,
        "signed_in_at": "2026-12-01T00:00:00Z", "refresh_token": emu.issue_refresh_token(),
    });
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_and_the_call_goes_on() {
    let emu = GdriveEmulator::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = signed_in_file(&emu, tmp.path());
    emu.set_rotate_refresh_tokens(true);
    let tokens = Tokens::from_file(&app(&emu), &file).unwrap();
    let t = GdriveTransport::new(options(&emu), tokens.clone()).unwrap();
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"x").await.unwrap();
    assert_eq!(emu.count("oauth.token"), 1, "the first call got a token");
    let before = std::fs::read_to_string(&file).unwrap();
    emu.expire_tokens();
    assert_eq!(t.read(&dev, &names::delta_name(1), 10).await.unwrap(), b"x");
    assert_eq!(emu.count("oauth.token"), 2, "a 401 refreshed the token once");
    let after = std::fs::read_to_string(&file).unwrap();
    let refresh = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["refresh_token"].clone();
    assert_ne!(refresh(&before), refresh(&after), "the rotated refresh token was written back");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A fresh handle from the file works with the rotated token.
    let again = GdriveTransport::new(options(&emu), Tokens::from_file(&app(&emu), &file).unwrap()).unwrap();
    assert_eq!(again.list(&dev).await.unwrap().len(), 1);
    assert!(!format!("{tokens:?}").contains("refresh"), "{tokens:?}");
}

#[tokio::test]
async fn a_revoked_refresh_token_asks_to_sign_in_again() {
    let emu = GdriveEmulator::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("t.json");
    let account = auth::store_refresh_token(&app(&emu), &file, "1//revoked-or-never-issued").unwrap();
    assert_eq!(auth::status(&file).unwrap(), Some(account));
    let t = GdriveTransport::new(options(&emu), Tokens::from_file(&app(&emu), &file).unwrap()).unwrap();
    let e = t.list_devices().await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(&e, TransportError::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable(), "the retry layer does not retry a refused sign-in");
    assert!(text.contains("invalid_grant") && text.contains("onefolder-sync auth gdrive"), "{text}");
    assert!(!text.contains("revoked-or-never-issued"), "no token in errors: {text}");
    assert_eq!(emu.api_requests(), 0, "no API call without a token");
    // A token file made for another OAuth client is refused.
    let mut other = app(&emu);
    other.client_id = "someone-else".to_owned();
    assert!(matches!(Tokens::from_file(&other, &file), Err(auth::AuthError::BadTokenFile { .. })));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_on_a_paused_clock() {
    let emu = GdriveEmulator::start().unwrap();
    let policy = RetryPolicy {
        max_attempts: 5,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
        max_total: Duration::from_secs(30),
        jitter: 0.0,
    };
    let retry = RetryLayer::new(Arc::new(transport(&emu)), policy);
    emu.fail_next(&[Fault::TooManyRequests { retry_after_secs: 3 }, Fault::TooManyRequests { retry_after_secs: 2 }]);
    let start = tokio::time::Instant::now();
    // Nothing exists yet: one files.list (the first folder of the library path) per attempt.
    assert_eq!(retry.read_manifest().await.unwrap(), None);
    assert_eq!(emu.count("files.list"), 3, "two refused attempts and one that worked: {:?}", emu.counts());
    assert_eq!(start.elapsed(), Duration::from_secs(5), "Retry-After 3 s, then 2 s, on the virtual clock");
    assert_eq!(retry.retries(), 2);

    // A 403 rate limit has no Retry-After: exponential backoff from first_delay.
    emu.fail_next(&[Fault::RateLimit403 { user: true }, Fault::ServerError, Fault::RateLimit403 { user: false }]);
    emu.reset_counts();
    let start = tokio::time::Instant::now();
    assert_eq!(retry.read_manifest().await.unwrap(), None);
    assert_eq!(emu.count("files.list"), 4);
    assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 400));
}

/// What the sign-in's loopback address answers to a redirect with the wrong `state`.
async fn forged_answer(port: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await.unwrap();
    s.write_all(b"GET /?code=forged&state=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    reply
}

#[tokio::test]
async fn sign_in_end_to_end() {
    let emu = Arc::new(GdriveEmulator::start().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("config").join("onefolder").join("gdrive-token.json");
    let app = app(&emu);
    assert!(!format!("{app:?}").contains(gdrive::CLIENT_SECRET), "{app:?}");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let show = move |url: &str| {
        let _ = tx.send(url.to_owned());
    };
    let browser = {
        let emu = emu.clone();
        async move {
            let url = rx.recv().await.expect("a URL to open");
            assert!(url.starts_with(&emu.auth_url()), "{url}");
            assert!(url.contains("state=") && url.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"), "{url}");
            // A request with another state is not the answer.
            let port = url.split("127.0.0.1%3A").nth(1).unwrap().split('%').next().unwrap().to_owned();
            let forged = forged_answer(&port).await;
            assert!(forged.starts_with("HTTP/1.1 400"), "{forged}");
            assert!(emu.consent(&format!("{}?client_id=nobody", emu.auth_url())).await.is_err());
            emu.consent(&url).await
        }
    };
    let (account, consent) = tokio::join!(auth::sign_in(&app, &token_file, &show), browser);
    consent.unwrap();
    let account = account.unwrap();
    assert_eq!((account.provider.as_str(), account.client_id.as_str()), ("gdrive", gdrive::CLIENT_ID));
    let file_text = std::fs::read_to_string(&token_file).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&file_text).unwrap();
    let refresh = saved["refresh_token"].as_str().unwrap().to_owned();
    let access = saved["access_token"].as_str().unwrap().to_owned();
    let json = serde_json::to_string(&account).unwrap();
    for secret in [&refresh, &access] {
        assert!(!json.contains(secret.as_str()) && !format!("{account:?}").contains(secret.as_str()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
        let dir = token_file.parent().unwrap();
        assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700);
    }
    assert_eq!(auth::status(&token_file).unwrap(), Some(account.clone()));

    let tokens = Tokens::from_file(&app, &token_file).unwrap();
    let t = GdriveTransport::new(options(&emu), tokens).unwrap();
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"signed in").await.unwrap();
    let token_calls = emu.count("oauth.token");
    emu.expire_tokens();
    assert_eq!(t.read(&dev, &names::delta_name(1), 100).await.unwrap(), b"signed in");
    assert_eq!(emu.count("oauth.token"), token_calls + 1, "refreshed after the expiry");

    assert!(auth::logout(&token_file).unwrap());
    assert!(!token_file.exists());
    assert!(!auth::logout(&token_file).unwrap());
    assert_eq!(auth::status(&token_file).unwrap(), None);
    assert!(matches!(Tokens::from_file(&app, &token_file), Err(auth::AuthError::NotSignedIn(_))));
}

#[tokio::test]
async fn a_refused_sign_in_and_a_silent_browser_are_errors() {
    let emu = GdriveEmulator::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("t.json");
    let e =
        auth::sign_in_within(&app(&emu), &token_file, &|_url: &str| {}, Duration::from_millis(200)).await.unwrap_err();
    assert!(matches!(e, auth::AuthError::Timeout(_)), "{e:?}");
    let mut bad = app(&emu);
    bad.token_url = "http://example.com/token".to_owned();
    let e = auth::sign_in(&bad, &token_file, &|_url: &str| {}).await.unwrap_err();
    assert!(matches!(e, auth::AuthError::Config(_)), "{e:?}");
    assert!(!token_file.exists());
}

#[tokio::test]
async fn the_hint_stream_polls_the_changes_feed() {
    let emu = GdriveEmulator::start().unwrap();
    let (watcher, writer) = (transport(&emu), transport(&emu));
    let mut hints = watcher.changes().await.unwrap().unwrap();
    let dev = DeviceId::random();
    writer.create(&dev, &names::delta_name(1), b"x").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let hint = tokio::time::timeout_at(deadline, hints.next()).await.expect("a hint in time").expect("open");
        if hint.device == Some(dev) {
            break;
        }
    }
}

#[tokio::test]
async fn a_folder_device_and_a_drive_device_share_one_library() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("my-drive");
    let emu = GdriveEmulator::start_on_dir(&root).unwrap();
    let folder = onefolder_transport_folder::FolderTransport::for_library(root.join("Photos").join("2024"));
    let drive = transport(&emu);
    let (fdev, ddev) = (DeviceId::random(), DeviceId::random());

    assert!(folder.create_manifest(b"{\"lib\":1}").await.unwrap());
    assert_eq!(drive.read_manifest().await.unwrap().as_deref(), Some(&b"{\"lib\":1}"[..]));
    assert!(!drive.create_manifest(b"{\"lib\":2}").await.unwrap());
    let first = drive.changes_since(None, Some(&ddev)).await.unwrap();

    folder.create(&fdev, &names::delta_name(1), b"from the folder").await.unwrap();
    let next = drive.changes_since(Some(&first.cursor), Some(&ddev)).await.unwrap();
    let got: Vec<(String, String)> = next.files.iter().map(|(d, f)| (d.clone(), f.name.clone())).collect();
    assert_eq!(got, vec![(fdev.to_string(), names::delta_name(1))], "the feed sees a file written on disk");
    assert_eq!(drive.read(&fdev, &names::delta_name(1), 100).await.unwrap(), b"from the folder");

    drive.create(&ddev, &names::delta_name(1), b"from the api").await.unwrap();
    drive.write(&ddev, names::DEVICE_FILE, b"{\"d\":1}", WriteMode::Replace).await.unwrap();
    drive.write(&ddev, names::DEVICE_FILE, b"{\"d\":2}", WriteMode::Replace).await.unwrap();
    let mut devices = folder.list_devices().await.unwrap();
    devices.sort();
    let mut both = vec![fdev.to_string(), ddev.to_string()];
    both.sort();
    assert_eq!(devices, both);
    assert_eq!(names_of(&folder.list(&ddev).await.unwrap()), vec![names::delta_name(1), names::DEVICE_FILE.to_owned()]);
    assert_eq!(folder.read(&ddev, &names::delta_name(1), 100).await.unwrap(), b"from the api");
    assert_eq!(folder.read(&ddev, names::DEVICE_FILE, 100).await.unwrap(), b"{\"d\":2}");

    // The folder device replaces its device.json: the Drive device sees a new version.
    folder.replace(&fdev, names::DEVICE_FILE, b"{\"f\":1}").await.unwrap();
    let v1 = drive.list(&fdev).await.unwrap();
    folder.replace(&fdev, names::DEVICE_FILE, b"{\"f\":22}").await.unwrap();
    let v2 = drive.list(&fdev).await.unwrap();
    let version =
        |l: &[onefolder_core::FileEntry]| l.iter().find(|f| f.name == names::DEVICE_FILE).unwrap().version.clone();
    assert_ne!(version(&v1), version(&v2));
    assert_eq!(drive.read(&fdev, names::DEVICE_FILE, 100).await.unwrap(), b"{\"f\":22}");
    // Deleted on disk: gone from the API too.
    folder.delete(&fdev, &names::delta_name(1)).await.unwrap();
    let err = transport(&emu).read(&fdev, &names::delta_name(1), 100).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
}

#[tokio::test]
async fn requests_per_idle_pass_and_per_flushed_edit() {
    let emu = GdriveEmulator::start().unwrap();
    let (me, peer) = (transport(&emu), transport(&emu));
    let (my_dev, peer_dev) = (DeviceId::random(), DeviceId::random());
    me.create(&my_dev, &names::delta_name(1), b"1").await.unwrap();
    peer.create(&peer_dev, &names::delta_name(1), b"1").await.unwrap();
    let mut cursor = me.changes_since(None, Some(&my_dev)).await.unwrap().cursor;
    cursor = me.changes_since(Some(&cursor), Some(&my_dev)).await.unwrap().cursor;

    emu.reset_counts();
    let idle = me.changes_since(Some(&cursor), Some(&my_dev)).await.unwrap();
    assert!(idle.files.is_empty());
    assert_eq!(emu.api_requests(), 1, "idle pass: {:?}", emu.counts());

    emu.reset_counts();
    me.create(&my_dev, &names::delta_name(2), b"2").await.unwrap();
    assert_eq!(emu.api_requests(), 2, "a flushed edit: a by-name check and an upload: {:?}", emu.counts());

    peer.create(&peer_dev, &names::delta_name(2), b"22").await.unwrap();
    emu.reset_counts();
    let set = me.changes_since(Some(&idle.cursor), Some(&my_dev)).await.unwrap();
    assert_eq!(set.files.len(), 1);
    me.read(&peer_dev, &set.files[0].1.name, 100).await.unwrap();
    assert_eq!(emu.api_requests(), 2, "a peer's edit: one changes.list and one download: {:?}", emu.counts());
}

#[tokio::test]
async fn slow_answers_are_waited_for() {
    let emu = GdriveEmulator::start().unwrap();
    let t = transport(&emu);
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"slow").await.unwrap();
    emu.set_delay(Duration::from_millis(300));
    let start = std::time::Instant::now();
    assert_eq!(transport(&emu).read(&dev, &names::delta_name(1), 100).await.unwrap(), b"slow");
    assert!(start.elapsed() >= Duration::from_millis(300), "no client-side timeout cut it short");
}
