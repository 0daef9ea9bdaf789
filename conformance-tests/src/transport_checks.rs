//! Checks of the [`Transport`](onefolder_core::Transport) contract, one per `# Behavior` bullet.

use onefolder_core::TransportExt;
use std::time::Duration;

use onefolder_core::{DeviceId, TransportError, names};

use crate::{Medium, TransportFactory};

/// A fresh medium of `T` (its temporary directory lives as long as the returned guard).
pub async fn medium<T: TransportFactory>() -> (tempfile::TempDir, Box<dyn Medium>) {
    let tmp = tempfile::tempdir().unwrap();
    let medium = T::medium(tmp.path()).await;
    (tmp, medium)
}

/// `manifest_create_once`.
pub async fn manifest_create_once<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    assert_eq!(t.read_manifest().await.unwrap(), None);
    assert!(t.create_manifest(b"{\"first\":1}").await.unwrap());
    assert!(!m.open().create_manifest(b"{\"second\":2}").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"{\"first\":1}"[..]));
}

/// `write_then_list_read`.
pub async fn write_then_list_read<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let (t, other) = (m.open(), m.open());
    let dev = DeviceId::random();
    let name = names::delta_name(1);
    t.create(&dev, &name, b"segment bytes").await.unwrap();
    assert!(other.list_devices().await.unwrap().contains(&dev.to_string()));
    let listed = other.list(&dev).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].size), (name.as_str(), 13));
    assert_eq!(other.read(&dev, &name, 1 << 20).await.unwrap(), b"segment bytes");
    let err = other.read(&dev, &name, 5).await.unwrap_err();
    assert!(matches!(err, TransportError::TooLarge { .. }), "{err:?}");
}

/// `write_is_atomic`: temporary names can be neither written nor listed.
pub async fn write_is_atomic<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    let dev = DeviceId::random();
    for i in 0..20 {
        t.create(&dev, &names::delta_name(i), &vec![i as u8; 1000 + i as usize]).await.unwrap();
    }
    let listed = t.list(&dev).await.unwrap();
    assert_eq!(listed.len(), 20);
    assert!(listed.iter().all(|f| !names::is_temporary(&f.name)));
    for f in listed {
        let seq: u64 = f.name[..20].parse().unwrap();
        assert_eq!(f.size, 1000 + seq, "full size under the final name");
    }
}

/// `write_existing_fails` (create-only), and `Replace` replaces, whatever the name.
pub async fn write_existing_fails<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    let dev = DeviceId::random();
    for name in [names::delta_name(1), names::DEVICE_FILE.to_owned()] {
        t.create(&dev, &name, b"first").await.unwrap();
        let err = t.create(&dev, &name, b"second").await.unwrap_err();
        assert!(matches!(err, TransportError::AlreadyExists(_)), "{name}: {err:?}");
        assert_eq!(t.read(&dev, &name, 100).await.unwrap(), b"first");
        t.replace(&dev, &name, b"{\"v\":2}").await.unwrap();
        assert_eq!(t.read(&dev, &name, 100).await.unwrap(), b"{\"v\":2}");
    }
    t.replace(&dev, "new.json", b"new").await.unwrap();
    assert_eq!(t.read(&dev, "new.json", 100).await.unwrap(), b"new");
}

/// `read_missing_not_found`.
pub async fn read_missing_not_found<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let err = m.open().read(&DeviceId::random(), "00000000000000000001.seg", 100).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
}

/// `list_missing_device_empty`.
pub async fn list_missing_device_empty<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    assert!(t.list(&DeviceId::random()).await.unwrap().is_empty());
    assert!(t.list_devices().await.unwrap().is_empty());
}

/// `delete_missing_ok`.
pub async fn delete_missing_ok<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    let dev = DeviceId::random();
    t.delete(&dev, "00000000000000000001.seg").await.unwrap();
    t.create(&dev, "00000000000000000001.seg", b"x").await.unwrap();
    t.delete(&dev, "00000000000000000001.seg").await.unwrap();
    assert!(t.list(&dev).await.unwrap().is_empty());
}

/// `names_are_checked`.
pub async fn names_are_checked<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    let dev = DeviceId::random();
    for bad in ["../escape.seg", "a/b.seg", "a\\b.seg", "..", ".hidden.seg", "nul\0.seg", ""] {
        let w = t.create(&dev, bad, b"x").await.unwrap_err();
        assert!(matches!(w, TransportError::InvalidName { .. }), "write {bad:?}: {w:?}");
        let r = t.read(&dev, bad, 10).await.unwrap_err();
        assert!(matches!(r, TransportError::InvalidName { .. }), "read {bad:?}: {r:?}");
        let d = t.delete(&dev, bad).await.unwrap_err();
        assert!(matches!(d, TransportError::InvalidName { .. }), "delete {bad:?}: {d:?}");
    }
}

/// `changes_hint_on_write` (when the transport can watch).
pub async fn changes_hint_on_write<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let (watcher, writer) = (m.open(), m.open());
    if !watcher.capabilities().watch {
        return;
    }
    let mut hints = watcher.changes().await.unwrap().expect("a watching transport gives a stream");
    let dev = DeviceId::random();
    writer.create(&dev, &names::delta_name(1), b"x").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hint = tokio::time::timeout_at(deadline, hints.next()).await.expect("a hint within the deadline");
        let hint = hint.expect("stream open");
        if hint.device == Some(dev) || hint.device.is_none() {
            break;
        }
    }
}

/// `changes_since_sees_every_write`.
pub async fn changes_since_sees_every_write<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let (reader, writer) = (m.open(), m.open());
    let (own, peer) = (DeviceId::random(), DeviceId::random());
    writer.create(&own, &names::delta_name(1), b"own").await.unwrap();
    writer.create(&peer, &names::delta_name(1), b"one").await.unwrap();
    let first = reader.changes_since(None, Some(&own)).await.unwrap();
    assert!(first.complete, "no cursor: a full listing");
    let files = |set: &onefolder_core::ChangeSet| -> Vec<(String, String, u64)> {
        let mut v: Vec<_> = set.files.iter().map(|(d, f)| (d.clone(), f.name.clone(), f.size)).collect();
        v.sort();
        v
    };
    assert_eq!(files(&first), vec![(peer.to_string(), names::delta_name(1), 3)]);
    assert!(first.failed.is_empty());

    writer.create(&peer, &names::delta_name(2), b"second").await.unwrap();
    writer.create(&own, &names::delta_name(2), b"own again").await.unwrap();
    let next = reader.changes_since(Some(&first.cursor), Some(&own)).await.unwrap();
    let got = files(&next);
    assert!(got.contains(&(peer.to_string(), names::delta_name(2), 6)), "{got:?}");
    assert!(got.iter().all(|(d, _, _)| *d != own.to_string()), "the skipped folder: {got:?}");
    if !next.complete {
        assert_eq!(got.len(), 1, "a feed reports only what changed: {got:?}");
        let idle = reader.changes_since(Some(&next.cursor), Some(&own)).await.unwrap();
        assert!(idle.files.is_empty() && !idle.complete, "nothing changed: {:?}", files(&idle));
    }
    assert_eq!(reader.capabilities().changes_feed, !next.complete, "the capability says which it is");
}

/// `versions_follow_content` (when the transport has versions).
pub async fn versions_follow_content<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    if !t.capabilities().versions {
        return;
    }
    let dev = DeviceId::random();
    t.create(&dev, &names::delta_name(1), b"segment").await.unwrap();
    t.replace(&dev, names::DEVICE_FILE, b"{\"v\":1}").await.unwrap();
    let version = |list: &[onefolder_core::FileEntry], name: &str| {
        list.iter().find(|f| f.name == name).and_then(|f| f.version.clone()).expect("a listed version")
    };
    let a = t.list(&dev).await.unwrap();
    let b = t.list(&dev).await.unwrap();
    assert_eq!(a, b, "listing twice gives the same versions");
    t.replace(&dev, names::DEVICE_FILE, b"{\"v\":2}").await.unwrap();
    let c = t.list(&dev).await.unwrap();
    assert_ne!(version(&a, names::DEVICE_FILE), version(&c, names::DEVICE_FILE));
    assert_eq!(version(&a, &names::delta_name(1)), version(&c, &names::delta_name(1)));
}

/// `reads_run_concurrently`.
pub async fn reads_run_concurrently<T: TransportFactory>() {
    let (_tmp, m) = medium::<T>().await;
    let t = m.open();
    let n = t.capabilities().concurrent_reads.max(1) as u64;
    assert!(n <= 64, "a bound, not unbounded: {n}");
    let dev = DeviceId::random();
    for seq in 1..=n * 2 {
        t.create(&dev, &names::delta_name(seq), &vec![seq as u8; 100 + seq as usize]).await.unwrap();
    }
    let reads = (1..=n * 2).map(|seq| {
        let t = t.clone();
        async move { (seq, t.read(&dev, &names::delta_name(seq), 1 << 20).await.unwrap()) }
    });
    let results = futures_join_all(reads, n as usize).await;
    for (seq, bytes) in results {
        assert_eq!(bytes, vec![seq as u8; 100 + seq as usize], "seq {seq}");
    }
}

/// Runs `futures` with at most `limit` in flight; results in input order.
async fn futures_join_all<F: std::future::Future>(futures: impl Iterator<Item = F>, limit: usize) -> Vec<F::Output> {
    use futures::stream::StreamExt;
    futures::stream::iter(futures).buffered(limit).collect().await
}

/// Every transport check as a test for the factory `T` in scope; expand it per adapter with
/// [`for_each_transport!`](crate::for_each_transport).
#[macro_export]
macro_rules! transport_conformance {
    () => {
            $crate::transport_conformance!(@tests T;
                manifest_create_once, write_then_list_read, write_is_atomic, write_existing_fails,
                read_missing_not_found, list_missing_device_empty, delete_missing_ok, names_are_checked,
                changes_hint_on_write, changes_since_sees_every_write, versions_follow_content,
                reads_run_concurrently,
            );
    };
    (@tests $t:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { $crate::transport_checks::$test::<$t>().await; }
        )*
    };
}
