//! One test per `# Behavior` bullet of [`Transport`], plus the folder-specific guarantees.

use onefolder_core::TransportExt;
use std::path::Path;
use std::time::{Duration, Instant};

use onefolder_core::names::{DEVICE_FILE, delta_name};
use onefolder_core::{ChangeStream, DeviceId, FileEntry, Transport, TransportError};

use crate::{DATABASE_DIR, FolderOptions, FolderTransport, TAGS_DIR};

/// Generous: hints normally arrive within ~100 ms, but CI machines stall.
const HINT_DEADLINE: Duration = Duration::from_secs(10);

fn setup() -> (tempfile::TempDir, FolderTransport) {
    let dir = tempfile::tempdir().unwrap();
    let transport = FolderTransport::for_library(dir.path());
    (dir, transport)
}

/// Raw names in a folder, temporary ones included.
fn raw_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

/// Waits for a hint about `device`; returns how long it took. Other hints are skipped.
async fn wait_for_hint(stream: &mut ChangeStream, device: DeviceId) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(HINT_DEADLINE, async {
        loop {
            match stream.next().await {
                Some(hint) if hint.device == Some(device) => return,
                Some(_) => continue,
                None => panic!("change stream ended"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no hint for {device} within {HINT_DEADLINE:?}"));
    start.elapsed()
}

/// Drains hints until none arrived for `quiet`.
async fn drain_until_quiet(stream: &mut ChangeStream, quiet: Duration) {
    while let Ok(Some(_)) = tokio::time::timeout(quiet, stream.next()).await {}
}

fn is_invalid_name(result: &Result<impl std::fmt::Debug, TransportError>) -> bool {
    matches!(result, Err(TransportError::InvalidName { .. }))
}

#[tokio::test]
async fn manifest_create_once() {
    let (lib, t) = setup();
    assert_eq!(t.root(), lib.path().join(TAGS_DIR));
    assert_eq!(t.read_manifest().await.unwrap(), None);
    assert!(t.create_manifest(b"first").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"first"[..]));
    assert!(!t.create_manifest(b"second").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"first"[..]));
    // No temporary file left behind by the refused publish.
    assert_eq!(raw_names(t.root()), vec!["library.json".to_owned()]);
}

#[tokio::test]
async fn write_then_list_read() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    let name = delta_name(1);
    t.create(&device, &name, b"segment one").await.unwrap();
    assert_eq!(t.list(&device).await.unwrap(), vec![FileEntry::new(name.clone(), 11)]);
    assert_eq!(t.read(&device, &name, 1024).await.unwrap(), b"segment one");
    assert_eq!(t.list_devices().await.unwrap(), vec![device.to_string()]);
    // A second handle on the same folder (another computer) sees the same.
    let other = FolderTransport::new(t.root());
    assert_eq!(other.read(&device, &name, 1024).await.unwrap(), b"segment one");
}

#[tokio::test]
async fn write_is_atomic() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    let dir = t.device_dir(&device);
    std::fs::create_dir_all(&dir).unwrap();
    // Temporary files of ours and of sync clients are never listed.
    for planted in [".x.tmp", "00000000000000000009.seg.tmp-4f2a", "~$lock", "00000000000000000008.seg.partial"] {
        std::fs::write(dir.join(planted), b"partial").unwrap();
    }
    // Neither are folders or names the medium does not allow.
    std::fs::create_dir(dir.join("subfolder")).unwrap();
    #[cfg(unix)]
    std::fs::write(dir.join("a:b.seg"), b"x").unwrap();
    assert_eq!(t.list(&device).await.unwrap(), vec![]);

    // A concurrent reader only ever sees complete files under final names.
    const FILES: u64 = 16;
    const SIZE: usize = 512 * 1024;
    let writer = {
        let t = t.clone();
        tokio::spawn(async move {
            for seq in 1..=FILES {
                t.create(&device, &delta_name(seq), &vec![seq as u8; SIZE]).await.unwrap();
            }
        })
    };
    let mut checked = 0;
    loop {
        let done = writer.is_finished();
        for entry in t.list(&device).await.unwrap() {
            assert_eq!(entry.size, SIZE as u64, "partial file listed: {entry:?}");
            let bytes = t.read(&device, &entry.name, SIZE as u64).await.unwrap();
            let seq = onefolder_core::names::SegmentName::parse(&entry.name).unwrap().seq;
            assert!(bytes.len() == SIZE && bytes.iter().all(|&b| b == seq as u8), "{} is partial", entry.name);
            checked += 1;
        }
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(checked >= FILES as usize);
    assert_eq!(t.list(&device).await.unwrap().len(), FILES as usize);
    // Only the planted temporary files remain besides the segments: ours were all renamed.
    let leftovers: Vec<String> =
        raw_names(&dir).into_iter().filter(|n| n.starts_with('.') && n.ends_with(".tmp") && n != ".x.tmp").collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

#[tokio::test]
async fn write_existing_fails() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    let name = delta_name(1);
    t.create(&device, &name, b"first").await.unwrap();
    let err = t.create(&device, &name, b"second").await.unwrap_err();
    assert!(matches!(err, TransportError::AlreadyExists(_)), "{err:?}");
    assert_eq!(t.read(&device, &name, 1024).await.unwrap(), b"first");

    t.replace(&device, DEVICE_FILE, b"{\"v\":1}").await.unwrap();
    t.replace(&device, DEVICE_FILE, b"{\"v\":2}").await.unwrap();
    assert_eq!(t.read(&device, DEVICE_FILE, 1024).await.unwrap(), b"{\"v\":2}");
    // The refused write left no temporary file.
    assert_eq!(raw_names(&t.device_dir(&device)), vec![name, DEVICE_FILE.to_owned()]);
}

#[tokio::test]
async fn read_missing_not_found() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    let err = t.read(&device, &delta_name(1), 1024).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "missing folder: {err:?}");
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    let err = t.read(&device, &delta_name(2), 1024).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "missing file: {err:?}");
}

#[tokio::test]
async fn list_missing_device_empty() {
    let (_lib, t) = setup();
    assert_eq!(t.list(&DeviceId::random()).await.unwrap(), vec![]);
    assert_eq!(t.list_devices().await.unwrap(), Vec::<String>::new());
    std::fs::create_dir_all(t.database_dir()).unwrap();
    assert_eq!(t.list(&DeviceId::random()).await.unwrap(), vec![]);
}

#[tokio::test]
async fn delete_missing_ok() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    t.delete(&device, &delta_name(1)).await.unwrap();
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    t.delete(&device, &delta_name(2)).await.unwrap();
    t.delete(&device, &delta_name(1)).await.unwrap();
    assert_eq!(t.list(&device).await.unwrap(), vec![]);
    t.delete(&device, &delta_name(1)).await.unwrap();
}

#[tokio::test]
async fn names_are_checked() {
    let (lib, t) = setup();
    let device = DeviceId::random();
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    for bad in ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "a\0b", ".hidden", ".tmp-1", "C:x"] {
        assert!(is_invalid_name(&t.read(&device, bad, 1024).await), "read {bad:?}");
        assert!(is_invalid_name(&t.create(&device, bad, b"evil").await), "write {bad:?}");
        assert!(is_invalid_name(&t.delete(&device, bad).await), "delete {bad:?}");
    }
    // Nothing was written anywhere else.
    assert_eq!(raw_names(&t.device_dir(&device)), vec![delta_name(1)]);
    assert_eq!(raw_names(&t.database_dir()), vec![device.to_string()]);
    assert_eq!(raw_names(lib.path()), vec![TAGS_DIR.to_owned()]);
}

#[tokio::test]
async fn changes_hint_on_write() {
    let (_lib, watcher_side) = setup();
    assert!(watcher_side.capabilities().watch);
    let writer_side = FolderTransport::new(watcher_side.root());
    let mut stream = watcher_side.changes().await.unwrap().expect("watcher available");
    let mut latencies = Vec::new();
    for seq in 1..=5 {
        let device = DeviceId::random();
        writer_side.create(&device, &delta_name(seq), b"segment").await.unwrap();
        latencies.push(wait_for_hint(&mut stream, device).await);
    }
    // A later write into an existing folder is seen too.
    let device = DeviceId::random();
    writer_side.create(&device, &delta_name(1), b"one").await.unwrap();
    wait_for_hint(&mut stream, device).await;
    drain_until_quiet(&mut stream, Duration::from_millis(200)).await;
    writer_side.create(&device, &delta_name(2), b"two").await.unwrap();
    latencies.push(wait_for_hint(&mut stream, device).await);
    latencies.sort();
    eprintln!("hint latency after write: min {:?}, median {:?}, max {:?}", latencies[0], latencies[3], latencies[5]);
}

#[tokio::test]
async fn reads_and_lists_do_not_hint() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    let mut stream = t.changes().await.unwrap().expect("watcher available");
    t.create(&device, &delta_name(1), b"segment").await.unwrap();
    wait_for_hint(&mut stream, device).await;
    drain_until_quiet(&mut stream, Duration::from_millis(300)).await;
    // Reading peers' files must not wake the reader, or the sync loop would spin.
    for _ in 0..5 {
        t.list_devices().await.unwrap();
        t.list(&device).await.unwrap();
        t.read(&device, &delta_name(1), 1024).await.unwrap();
        t.read_manifest().await.unwrap();
    }
    let hint = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(hint.is_err(), "reading produced a hint: {hint:?}");
}

#[tokio::test]
async fn hint_for_file_in_fresh_folder() {
    let (_lib, t) = setup();
    let mut stream = t.changes().await.unwrap().expect("watcher available");
    // A sync client creates a device folder and a file in it at once.
    let device = DeviceId::random();
    let dir = t.device_dir(&device);
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(delta_name(1)), b"fresh").unwrap();
    let latency = wait_for_hint(&mut stream, device).await;
    eprintln!("hint latency for a fresh folder: {latency:?}");
    assert_eq!(t.list(&device).await.unwrap(), vec![FileEntry::new(delta_name(1), 5)]);
    // Files added to that folder later are watched too.
    drain_until_quiet(&mut stream, Duration::from_millis(200)).await;
    std::fs::write(dir.join(delta_name(2)), b"later").unwrap();
    wait_for_hint(&mut stream, device).await;
}

#[tokio::test]
async fn hint_for_folder_moved_in() {
    let (lib, t) = setup();
    let mut stream = t.changes().await.unwrap().expect("watcher available");
    // A sync client that downloads a folder elsewhere and moves it in: the watcher sees the
    // folder appear but never the files in it, so the folder itself must produce the hint.
    let staging = lib.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join(delta_name(1)), b"moved").unwrap();
    let device = DeviceId::random();
    std::fs::rename(&staging, t.device_dir(&device)).unwrap();
    wait_for_hint(&mut stream, device).await;
    assert_eq!(t.list(&device).await.unwrap(), vec![FileEntry::new(delta_name(1), 5)]);
}

#[tokio::test]
async fn dropping_the_stream_stops_the_watch() {
    let (_lib, t) = setup();
    let stream = t.changes().await.unwrap().expect("watcher available");
    drop(stream);
    // Writes after the drop still work; a new subscription still gets hints.
    let device = DeviceId::random();
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    let mut again = t.changes().await.unwrap().expect("watcher available");
    t.create(&device, &delta_name(2), b"y").await.unwrap();
    wait_for_hint(&mut again, device).await;
}

#[tokio::test]
async fn read_over_cap_too_large() {
    let (_lib, t) = setup();
    let device = DeviceId::random();
    t.create(&device, &delta_name(1), &[7; 100]).await.unwrap();
    match t.read(&device, &delta_name(1), 99).await {
        Err(TransportError::TooLarge { size: 100, cap: 99, .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(t.read(&device, &delta_name(1), 100).await.unwrap(), vec![7; 100]);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinked_device_folder_not_followed() {
    let (_lib, t) = setup();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join(delta_name(1)), b"secret").unwrap();
    let real = DeviceId::random();
    t.create(&real, &delta_name(1), b"x").await.unwrap();
    let linked = DeviceId::random();
    std::os::unix::fs::symlink(outside.path(), t.device_dir(&linked)).unwrap();

    assert_eq!(t.list_devices().await.unwrap(), vec![real.to_string()]);
    assert!(is_invalid_name(&t.list(&linked).await));
    assert!(is_invalid_name(&t.read(&linked, &delta_name(1), 1024).await));
    assert!(is_invalid_name(&t.create(&linked, &delta_name(2), b"evil").await));
    assert!(is_invalid_name(&t.delete(&linked, &delta_name(1)).await));
    assert_eq!(raw_names(outside.path()), vec![delta_name(1)]);
}

#[cfg(unix)]
#[tokio::test]
async fn symlinked_file_not_followed() {
    let (_lib, t) = setup();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    let device = DeviceId::random();
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    std::os::unix::fs::symlink(&secret, t.device_dir(&device).join(delta_name(2))).unwrap();

    assert_eq!(t.list(&device).await.unwrap(), vec![FileEntry::new(delta_name(1), 1)]);
    match t.read(&device, &delta_name(2), 1024).await {
        Err(TransportError::InvalidName { reason: "symbolic link", .. }) => {}
        other => panic!("expected InvalidName, got {other:?}"),
    }
    // Deleting removes the link, never its target.
    t.delete(&device, &delta_name(2)).await.unwrap();
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
    // A linked manifest is refused too.
    std::os::unix::fs::symlink(&secret, t.root().join("library.json")).unwrap();
    assert!(is_invalid_name(&t.read_manifest().await));
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_created_like_user_files() {
    use std::os::unix::fs::PermissionsExt;
    let (_lib, t) = setup();
    let device = DeviceId::random();
    t.create(&device, &delta_name(1), b"x").await.unwrap();
    let dir = t.device_dir(&device);
    std::fs::write(dir.join("plain"), b"x").unwrap();
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&delta_name(1)), mode("plain"));
    assert_eq!(mode(&delta_name(1)) & 0o600, 0o600);
}

#[tokio::test]
async fn case_sensitivity_is_detected() {
    let (lib, _) = setup();
    // Ground truth: write a name, look it up in upper case.
    std::fs::write(lib.path().join("probe"), b"x").unwrap();
    let truth = lib.path().join("PROBE").exists();
    let root = lib.path().join(TAGS_DIR);
    // Before and after the root exists (the probe then uses the library folder's name).
    assert_eq!(FolderTransport::new(&root).capabilities().case_insensitive, truth);
    std::fs::create_dir(&root).unwrap();
    assert_eq!(FolderTransport::new(&root).capabilities().case_insensitive, truth);
    // Options win over the probe.
    let forced = FolderOptions { case_insensitive: Some(!truth), ..FolderOptions::default() };
    assert_eq!(FolderTransport::with_options(&root, forced).capabilities().case_insensitive, !truth);
    assert_eq!(raw_names(&root), Vec::<String>::new(), "the probe wrote nothing");
    assert!(!root.join(DATABASE_DIR).exists());
}
