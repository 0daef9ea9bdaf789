//! The Dropbox transport against the in-repo Dropbox emulator: route mapping, paging, the
//! change feed and its resets, long polls, lagging listings, error mapping, token refresh,
//! backoff on a paused clock, and the sign-in flow end to end.

use std::sync::Arc;
use std::time::Duration;

use onefolder_core::names::{DEVICE_FILE, delta_name};
use onefolder_core::{DeviceId, RetryLayer, RetryPolicy, Transport, TransportError, TransportExt};
use onefolder_emulators::dropbox::{ACCESS_TOKEN, CLIENT_ID, DropboxEmulator, Failure, Faults};
use onefolder_transport_dropbox::auth::{self, OAuthApp, Tokens};
use onefolder_transport_dropbox::{DropboxOptions, DropboxTransport};

const LIBRARY: &str = "/Pictures";

fn emulator() -> (tempfile::TempDir, DropboxEmulator) {
    let tmp = tempfile::tempdir().unwrap();
    let emu = DropboxEmulator::start(tmp.path().join("dropbox")).unwrap();
    (tmp, emu)
}

fn options(emu: &DropboxEmulator) -> DropboxOptions {
    DropboxOptions::new(LIBRARY).with_base_url(&emu.url())
}

fn transport(emu: &DropboxEmulator) -> DropboxTransport {
    DropboxTransport::with_access_token(options(emu), ACCESS_TOKEN).unwrap()
}

fn app(emu: &DropboxEmulator) -> OAuthApp {
    // Any free port: the emulator accepts any loopback redirect (Dropbox wants the registered one).
    OAuthApp { auth_url: emu.authorize_url(), token_url: emu.token_url(), redirect_port: 0, ..OAuthApp::new(CLIENT_ID) }
}

/// Polls `cond` every 20 ms for up to 20 s.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Requests made to `route` while `f` ran.
async fn cost<F: Future>(emu: &DropboxEmulator, route: &str, f: F) -> (F::Output, u64) {
    let before = emu.requests(route);
    let out = f.await;
    (out, emu.requests(route) - before)
}

#[tokio::test]
async fn every_operation_is_one_request_on_its_route() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    let dev = DeviceId::random();
    let (created, n) = cost(&emu, "files/upload", t.create_manifest(b"{}")).await;
    assert!(created.unwrap());
    assert_eq!(n, 1);
    let (manifest, n) = cost(&emu, "files/download", t.read_manifest()).await;
    assert_eq!((manifest.unwrap().as_deref(), n), (Some(&b"{}"[..]), 1));
    let (again, n) = cost(&emu, "files/upload", t.create_manifest(b"{\"x\":1}")).await;
    assert_eq!((again.unwrap(), n), (false, 1), "path/conflict: the manifest is never replaced");
    let (w, n) = cost(&emu, "files/upload", t.create(&dev, &delta_name(1), b"segment")).await;
    w.unwrap();
    assert_eq!(n, 1);
    let (listed, n) = cost(&emu, "files/list_folder", t.list(&dev)).await;
    let listed = listed.unwrap();
    assert_eq!((listed.len(), listed[0].size, n), (1, 7, 1));
    assert!(listed[0].version.is_some(), "the rev is the version");
    let (devices, n) = cost(&emu, "files/list_folder", t.list_devices()).await;
    assert_eq!((devices.unwrap(), n), (vec![dev.to_string()], 1));
    let (bytes, n) = cost(&emu, "files/download", t.read(&dev, &delta_name(1), 100)).await;
    assert_eq!((bytes.unwrap(), n), (b"segment".to_vec(), 1));
    let (big, n) = cost(&emu, "files/download", t.read(&dev, &delta_name(1), 3)).await;
    assert!(matches!(big, Err(TransportError::TooLarge { size: 7, cap: 3, .. })), "{big:?}");
    assert_eq!(n, 1);
    let (conflict, _) = cost(&emu, "files/upload", t.create(&dev, &delta_name(1), b"other")).await;
    assert!(matches!(conflict, Err(TransportError::AlreadyExists(_))), "{conflict:?}");
    let (same, _) = cost(&emu, "files/upload", t.create(&dev, &delta_name(1), b"segment")).await;
    assert!(matches!(same, Err(TransportError::AlreadyExists(_))), "strict: even the same bytes: {same:?}");
    t.replace(&dev, DEVICE_FILE, b"{\"v\":1}").await.unwrap();
    t.replace(&dev, DEVICE_FILE, b"{\"v\":2}").await.unwrap();
    assert_eq!(t.read(&dev, DEVICE_FILE, 100).await.unwrap(), b"{\"v\":2}");
    let (d, n) = cost(&emu, "files/delete_v2", t.delete(&dev, &delta_name(1))).await;
    d.unwrap();
    assert_eq!(n, 1);
    let (missing, _) = cost(&emu, "files/delete_v2", t.delete(&dev, &delta_name(1))).await;
    missing.unwrap();
    let gone = t.read(&dev, &delta_name(1), 100).await.unwrap_err();
    assert!(matches!(gone, TransportError::NotFound(_)), "{gone:?}");
    // The layout is the one on disk.
    let on_disk = emu.root().join("Pictures/onefolder_tags/database").join(dev.to_string()).join(DEVICE_FILE);
    assert_eq!(std::fs::read(on_disk).unwrap(), b"{\"v\":2}");
    assert!(emu.root().join("Pictures/onefolder_tags/library.json").is_file());
}

#[tokio::test]
async fn listings_and_the_feed_follow_has_more() {
    let (_tmp, emu) = emulator();
    emu.set_page_size(2);
    let t = transport(&emu);
    let (dev, peer) = (DeviceId::random(), DeviceId::random());
    for seq in 1..=7 {
        t.create(&dev, &delta_name(seq), &[seq as u8]).await.unwrap();
    }
    let (listed, pages) = cost(&emu, "files/list_folder/continue", t.list(&dev)).await;
    assert_eq!(listed.unwrap().len(), 7);
    assert_eq!(pages, 3, "7 entries, 2 a page");
    let full = t.changes_since(None, Some(&peer)).await.unwrap();
    assert!(full.complete);
    assert_eq!(full.files.len(), 7);
    assert_eq!(full.folders, vec![dev.to_string()]);
    for seq in 8..=12 {
        t.create(&dev, &delta_name(seq), &[seq as u8]).await.unwrap();
    }
    let next = t.changes_since(Some(&full.cursor), Some(&peer)).await.unwrap();
    assert!(!next.complete);
    let mut names: Vec<String> = next.files.iter().map(|(_, f)| f.name.clone()).collect();
    names.sort();
    assert_eq!(names, (8..=12).map(delta_name).collect::<Vec<_>>());
    let (idle, n) = cost(&emu, "files/list_folder/continue", t.changes_since(Some(&next.cursor), Some(&peer))).await;
    let idle = idle.unwrap();
    assert!(idle.files.is_empty() && !idle.complete);
    assert_eq!((n, emu.requests("files/list_folder")), (1, 2), "an idle pass is one request");
}

#[tokio::test]
async fn a_reset_cursor_gives_a_complete_listing_and_deletions_are_not_reported() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    let (own, peer) = (DeviceId::random(), DeviceId::random());
    t.create(&peer, &delta_name(1), b"one").await.unwrap();
    t.create(&own, &delta_name(1), b"mine").await.unwrap();
    let first = t.changes_since(None, Some(&own)).await.unwrap();
    assert_eq!(first.files.len(), 1, "the skipped folder is not listed: {:?}", first.files);
    t.create(&peer, &delta_name(2), b"two").await.unwrap();
    t.create(&peer, &delta_name(3), b"short-lived").await.unwrap();
    t.delete(&peer, &delta_name(3)).await.unwrap();
    let next = t.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    let names: Vec<&str> = next.files.iter().map(|(_, f)| f.name.as_str()).collect();
    assert_eq!(names, vec![delta_name(2).as_str()], "a file written then deleted is not reported");
    emu.reset_cursors();
    let reset = t.changes_since(Some(&next.cursor), Some(&own)).await.unwrap();
    assert!(reset.complete, "reset: a complete listing");
    let mut names: Vec<&str> = reset.files.iter().map(|(_, f)| f.name.as_str()).collect();
    names.sort();
    assert_eq!(names, vec![delta_name(1).as_str(), delta_name(2).as_str()]);
    // A cursor from elsewhere is a complete listing too.
    let foreign = t.changes_since(Some(&onefolder_core::ChangeCursor("memory:3".into())), None).await.unwrap();
    assert!(foreign.complete);
}

#[tokio::test]
async fn cursor_resets_by_fault_are_absorbed() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    let peer = DeviceId::random();
    let mut set = t.changes_since(None, None).await.unwrap();
    emu.set_faults(Faults { cursor_reset: 1.0, ..Faults::none() });
    t.create(&peer, &delta_name(1), b"x").await.unwrap();
    set = t.changes_since(Some(&set.cursor), None).await.unwrap();
    assert!(set.complete);
    assert_eq!(set.files.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_wakes_on_a_peer_file_written_on_disk() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    let own = DeviceId::random();
    t.create_manifest(b"{}").await.unwrap();
    let mut hints = t.changes().await.unwrap().expect("dropbox watches");
    // Another computer's desktop client puts a peer's segment into the folder.
    let peer = DeviceId::random();
    let dir = emu.root().join("Pictures/onefolder_tags/database").join(peer.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(delta_name(1)), b"from the desktop client").unwrap();
    let hint = tokio::time::timeout(Duration::from_secs(20), hints.next()).await.expect("a hint").expect("open");
    assert_eq!(hint.device, Some(peer), "the hint names the folder");
    assert!(emu.requests("files/list_folder/longpoll") >= 1);
    // And the feed lists the file.
    let set = t.changes_since(None, Some(&own)).await.unwrap();
    assert_eq!(set.files[0].1.size, 23);
    // Dropping the stream ends the long poll loop: no new polls.
    drop(hints);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let polls = emu.requests("files/list_folder/longpoll");
    t.create(&own, &delta_name(1), b"x").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.requests("files/list_folder/longpoll"), polls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longpoll_backoff_is_honoured() {
    let (_tmp, emu) = emulator();
    emu.set_faults(Faults { longpoll_backoff: Some(2), ..Faults::none() });
    let t = transport(&emu);
    let other = transport(&emu);
    let dev = DeviceId::random();
    t.create(&dev, &delta_name(1), b"x").await.unwrap();
    let mut hints = t.changes().await.unwrap().unwrap();
    assert!(eventually(|| emu.requests("files/list_folder/longpoll") == 1).await);
    other.create(&dev, &delta_name(2), b"y").await.unwrap();
    let hint = tokio::time::timeout(Duration::from_secs(20), hints.next()).await.unwrap().unwrap();
    assert_eq!(hint.device, Some(dev));
    let woke = std::time::Instant::now();
    // The next poll waits for the backoff.
    assert!(eventually(|| emu.requests("files/list_folder/longpoll") == 2).await);
    let waited = woke.elapsed();
    assert!(waited >= Duration::from_millis(1900), "polled again after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_transport_ends_its_long_poll() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    t.create_manifest(b"{}").await.unwrap();
    let mut hints = t.changes().await.unwrap().unwrap();
    assert!(eventually(|| emu.requests("files/list_folder/longpoll") == 1).await);
    drop(t);
    let ended = tokio::time::timeout(Duration::from_secs(5), hints.next()).await.expect("the stream ends promptly");
    assert_eq!(ended, None);
}

#[tokio::test]
async fn own_writes_complete_a_lagging_listing() {
    let (_tmp, emu) = emulator();
    emu.set_faults(Faults { listing_lag: Duration::from_secs(30), ..Faults::none() });
    let (t, other) = (transport(&emu), transport(&emu));
    let dev = DeviceId::random();
    t.create(&dev, &delta_name(1), b"segment").await.unwrap();
    assert!(other.list(&dev).await.unwrap().is_empty(), "the listing lags");
    let listed = t.list(&dev).await.unwrap();
    assert_eq!(listed.len(), 1, "our own write is listed");
    assert_eq!(t.list_devices().await.unwrap(), vec![dev.to_string()]);
    assert_eq!(t.read(&dev, &delta_name(1), 100).await.unwrap(), b"segment", "downloads do not lag");
    emu.set_faults(Faults::none());
    assert_eq!(other.list(&dev).await.unwrap(), listed, "once caught up, the same entry and version");
    t.delete(&dev, &delta_name(1)).await.unwrap();
    assert!(t.list(&dev).await.unwrap().is_empty());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_mapped() {
    let (_tmp, emu) = emulator();
    let t = transport(&emu);
    let dev = DeviceId::random();
    emu.fail_next("files/upload", 1, Failure::TooManyRequests { retry_after: 7 });
    let e = t.create(&dev, &delta_name(1), b"x").await.unwrap_err();
    assert!(matches!(e, TransportError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)), "{e:?}");
    // too_many_write_operations says how long in the Retry-After header only (its body has no
    // retry_after): read by our HTTP client.
    emu.fail_next("files/upload", 1, Failure::TooManyWriteOperations { retry_after: 3 });
    let e = t.create(&dev, &delta_name(1), b"x").await.unwrap_err();
    assert!(matches!(e, TransportError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(3)), "{e:?}");
    emu.fail_next("files/list_folder", 1, Failure::ServerError);
    let e = t.list(&dev).await.unwrap_err();
    assert!(matches!(e, TransportError::Transient(_)), "{e:?}");
    assert!(e.is_retryable());
    emu.fail_next("files/download", 1, Failure::ExpiredToken);
    let e = t.read(&dev, &delta_name(1), 10).await.unwrap_err();
    assert!(matches!(&e, TransportError::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("sign in again"), "a fixed token cannot be refreshed: {e}");
    let text = format!("{e} {e:?} {t:?}");
    assert!(!text.contains(ACCESS_TOKEN), "no token in errors or Debug: {text}");
    t.create(&dev, &delta_name(1), b"x").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn retry_layer_waits_the_servers_retry_after_on_a_paused_clock() {
    let (_tmp, emu) = emulator();
    let options = DropboxOptions { request_timeout: None, ..options(&emu) };
    let inner = DropboxTransport::with_access_token(options, ACCESS_TOKEN).unwrap();
    let policy = RetryPolicy {
        max_attempts: 5,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(10),
        max_total: Duration::from_secs(30),
        jitter: 0.0,
    };
    let t = RetryLayer::new(Arc::new(inner), policy);
    let dev = DeviceId::random();
    emu.fail_next("files/upload", 2, Failure::TooManyRequests { retry_after: 3 });
    let start = tokio::time::Instant::now();
    t.create(&dev, &delta_name(1), b"x").await.unwrap();
    let waited = start.elapsed();
    assert_eq!(emu.requests("files/upload"), 3, "two refusals, then the write");
    assert_eq!(t.retries(), 2);
    assert!(waited >= Duration::from_secs(6) && waited < Duration::from_millis(6050), "waited {waited:?}");
    // too_many_write_operations without a Retry-After: the policy's own backoff.
    emu.fail_next("files/delete_v2", 2, Failure::TooManyWriteOperations { retry_after: 0 });
    let start = tokio::time::Instant::now();
    t.delete(&dev, &delta_name(1)).await.unwrap();
    assert_eq!(emu.requests("files/delete_v2"), 3);
    assert_eq!(start.elapsed(), Duration::from_millis(30), "10 ms, then 20 ms");
    // 500s are retried the same way.
    emu.fail_next("files/list_folder", 1, Failure::ServerError);
    assert!(t.list(&dev).await.unwrap().is_empty());
    assert_eq!(emu.requests("files/list_folder"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_end_to_end_then_refresh_and_logout() {
    let (tmp, emu) = emulator();
    let emu = Arc::new(emu);
    let token_file = tmp.path().join("config/onefolder/dropbox-token.json");
    let (url_tx, mut url_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let show = move |url: &str| {
        let _ = url_tx.send(url.to_owned());
    };
    let browser = {
        let emu = emu.clone();
        tokio::spawn(async move {
            let url = url_rx.recv().await.expect("the sign-in shows a URL");
            assert!(url.starts_with(&emu.authorize_url()), "{url}");
            for part in [
                "code_challenge_method=S256",
                "token_access_type=offline",
                "state=",
                "redirect_uri=http%3A%2F%2F127.0.0.1%3A",
            ] {
                assert!(url.contains(part), "{part} in {url}");
            }
            emu.consent(&url).await
        })
    };
    let app = app(&emu);
    let account = auth::sign_in_within(&app, &token_file, &show, Duration::from_secs(30)).await.unwrap();
    browser.await.unwrap().unwrap();
    assert_eq!((account.provider.as_str(), account.client_id.as_str()), ("dropbox", CLIENT_ID));
    // The token file: 0600 in a 0700 folder, and no token outside it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(token_file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    let refresh = file["refresh_token"].as_str().unwrap().to_owned();
    let access = file["access_token"].as_str().unwrap().to_owned();
    let shown = format!("{} {account:?}", serde_json::to_string(&account).unwrap());
    assert!(!shown.contains(&refresh) && !shown.contains(&access), "{shown}");
    assert_eq!(auth::status(&token_file).unwrap(), Some(account.clone()));

    let tokens = Tokens::from_file(&app, &token_file).unwrap();
    assert!(!format!("{tokens:?}").contains(&refresh));
    let t = DropboxTransport::new(options(&emu), tokens).unwrap();
    let dev = DeviceId::random();
    t.create(&dev, &delta_name(1), b"signed in").await.unwrap();
    assert_eq!(emu.requests("oauth2/token"), 1, "the code exchange only");
    // The access token expires: one refresh, one retry.
    emu.expire_tokens();
    let (listed, n) = cost(&emu, "files/list_folder", t.list(&dev)).await;
    assert_eq!(listed.unwrap().len(), 1);
    assert_eq!((n, emu.requests("oauth2/token")), (2, 2), "401, refresh, retry");
    // Tokens that live shorter than the calls, and a server that rotates refresh tokens.
    emu.set_faults(Faults { token_lifetime: Some(Duration::from_millis(200)), ..Faults::none() });
    emu.set_rotate_refresh_tokens(true);
    emu.expire_tokens();
    t.read(&dev, &delta_name(1), 100).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.read(&dev, &delta_name(1), 100).await.unwrap();
    let rotated: serde_json::Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    assert_ne!(rotated["refresh_token"].as_str().unwrap(), refresh, "the rotated refresh token is written back");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    // A new handle from the file works with the rotated token.
    emu.set_faults(Faults::none());
    let again = DropboxTransport::new(options(&emu), Tokens::from_file(&app, &token_file).unwrap()).unwrap();
    emu.expire_tokens();
    assert_eq!(again.list(&dev).await.unwrap().len(), 1);

    assert!(auth::logout(&token_file).unwrap());
    assert!(!token_file.exists());
    assert!(!auth::logout(&token_file).unwrap());
    assert_eq!(auth::status(&token_file).unwrap(), None);
    assert!(matches!(Tokens::from_file(&app, &token_file), Err(auth::AuthError::NotSignedIn(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_says_sign_in_again() {
    let (tmp, emu) = emulator();
    let emu = Arc::new(emu);
    let token_file = tmp.path().join("token.json");
    let (url_tx, mut url_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let show = move |url: &str| {
        let _ = url_tx.send(url.to_owned());
    };
    let browser = {
        let emu = emu.clone();
        tokio::spawn(async move { emu.consent(&url_rx.recv().await.unwrap()).await })
    };
    let app = app(&emu);
    auth::sign_in_within(&app, &token_file, &show, Duration::from_secs(30)).await.unwrap();
    browser.await.unwrap().unwrap();
    let t = DropboxTransport::new(options(&emu), Tokens::from_file(&app, &token_file).unwrap()).unwrap();
    // Rotation on: the refresh token in the file is replaced behind our back.
    emu.set_rotate_refresh_tokens(true);
    let other = Tokens::from_file(&app, &token_file).unwrap();
    let other_t = DropboxTransport::new(options(&emu), other).unwrap();
    emu.expire_tokens();
    other_t.list_devices().await.unwrap();
    let e = t.list_devices().await.unwrap_err();
    assert!(matches!(&e, TransportError::Unauthorized(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert!(e.to_string().contains("sign in again"), "{e}");
}

#[tokio::test]
async fn sign_in_gives_up_after_its_wait() {
    let (tmp, emu) = emulator();
    let err = auth::sign_in_within(&app(&emu), &tmp.path().join("t.json"), &|_| {}, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, auth::AuthError::Timeout(_)), "{err:?}");
    assert!(!tmp.path().join("t.json").exists());
}

#[test]
fn plain_http_is_for_loopback_only() {
    let remote = DropboxOptions::new(LIBRARY).with_base_url("http://dropbox.example.com");
    let err = DropboxTransport::with_access_token(remote, "t").unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let bad_library = DropboxOptions::new("Pictures");
    assert!(DropboxTransport::with_access_token(bad_library, "t").is_err());
    let app = OAuthApp { token_url: "http://10.1.2.3/token".into(), ..OAuthApp::new("k") };
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(Tokens::from_file(&app, &tmp.path().join("x")), Err(auth::AuthError::InvalidUrl { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chaos_preset_is_absorbed_by_a_retry_layer() {
    let (_tmp, emu) = emulator();
    emu.set_faults(Faults { slow: 0.0, longpoll_backoff: None, ..Faults::chaos(7) });
    let policy = RetryPolicy {
        max_attempts: 8,
        first_delay: Duration::from_millis(5),
        max_delay: Duration::from_secs(2),
        max_total: Duration::from_secs(10),
        jitter: 0.0,
    };
    let t = RetryLayer::new(Arc::new(transport(&emu)), policy);
    let dev = DeviceId::random();
    let mut cursor = t.changes_since(None, None).await.unwrap().cursor;
    let mut seen = std::collections::BTreeSet::new();
    for seq in 1..=40 {
        t.create(&dev, &delta_name(seq), &[seq as u8; 10]).await.unwrap();
        let set = t.changes_since(Some(&cursor), None).await.unwrap();
        seen.extend(set.files.into_iter().map(|(_, f)| f.name));
        cursor = set.cursor;
    }
    emu.set_faults(Faults::none());
    let set = t.changes_since(Some(&cursor), None).await.unwrap();
    seen.extend(set.files.into_iter().map(|(_, f)| f.name));
    assert_eq!(seen.len(), 40, "every write is reported once the faults stop (lag, resets)");
    assert!(t.retries() > 0, "the chaos hit");
    assert_eq!(t.list(&dev).await.unwrap().len(), 40);
}

#[tokio::test]
async fn a_library_folder_with_non_ascii_names_round_trips_through_the_headers() {
    let (_tmp, emu) = emulator();
    let options = DropboxOptions::new("/Fotos/Ünïcødé 😀").with_base_url(&emu.url());
    let t = DropboxTransport::with_access_token(options, ACCESS_TOKEN).unwrap();
    let dev = DeviceId::random();
    t.create_manifest(b"{}").await.unwrap();
    t.create(&dev, &delta_name(1), b"bytes").await.unwrap();
    assert_eq!(t.read(&dev, &delta_name(1), 100).await.unwrap(), b"bytes");
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"{}"[..]));
    assert!(emu.root().join("Fotos/Ünïcødé 😀/onefolder_tags/library.json").is_file());
    // Another casing of the same library is the same folder on Dropbox.
    let other = DropboxOptions::new("/FOTOS/ünïcødé 😀").with_base_url(&emu.url());
    let other = DropboxTransport::with_access_token(other, ACCESS_TOKEN).unwrap();
    assert_eq!(other.list(&dev).await.unwrap().len(), 1);
    assert_eq!(other.changes_since(None, None).await.unwrap().files.len(), 1);
}
