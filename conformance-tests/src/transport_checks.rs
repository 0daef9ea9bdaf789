//! Checks of the [`Transport`](onefolder_core::Transport) contract, one per `# Behavior` bullet.

use onefolder_core::TransportExt;
use std::path::PathBuf;
use std::time::Duration;

use onefolder_core::{DeviceId, MemoryTransport, TransportError, names};

use crate::{Medium, TransportFactory};

/// A fresh medium (the temporary directory lives as long as the returned guard).
pub fn medium() -> (tempfile::TempDir, Medium) {
    let tmp = tempfile::tempdir().unwrap();
    let library: PathBuf = tmp.path().join("library");
    std::fs::create_dir_all(&library).unwrap();
    (tmp, Medium { library, memory: MemoryTransport::new() })
}

/// `manifest_create_once`.
pub async fn manifest_create_once<T: TransportFactory>() {
    let (_tmp, m) = medium();
    let t = T::open(&m);
    assert_eq!(t.read_manifest().await.unwrap(), None);
    assert!(t.create_manifest(b"{\"first\":1}").await.unwrap());
    assert!(!T::open(&m).create_manifest(b"{\"second\":2}").await.unwrap());
    assert_eq!(t.read_manifest().await.unwrap().as_deref(), Some(&b"{\"first\":1}"[..]));
}

/// `write_then_list_read`.
pub async fn write_then_list_read<T: TransportFactory>() {
    let (_tmp, m) = medium();
    let (t, other) = (T::open(&m), T::open(&m));
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
    let (_tmp, m) = medium();
    let t = T::open(&m);
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
    let (_tmp, m) = medium();
    let t = T::open(&m);
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
    let (_tmp, m) = medium();
    let err = T::open(&m).read(&DeviceId::random(), "00000000000000000001.seg", 100).await.unwrap_err();
    assert!(matches!(err, TransportError::NotFound(_)), "{err:?}");
}

/// `list_missing_device_empty`.
pub async fn list_missing_device_empty<T: TransportFactory>() {
    let (_tmp, m) = medium();
    let t = T::open(&m);
    assert!(t.list(&DeviceId::random()).await.unwrap().is_empty());
    assert!(t.list_devices().await.unwrap().is_empty());
}

/// `delete_missing_ok`.
pub async fn delete_missing_ok<T: TransportFactory>() {
    let (_tmp, m) = medium();
    let t = T::open(&m);
    let dev = DeviceId::random();
    t.delete(&dev, "00000000000000000001.seg").await.unwrap();
    t.create(&dev, "00000000000000000001.seg", b"x").await.unwrap();
    t.delete(&dev, "00000000000000000001.seg").await.unwrap();
    assert!(t.list(&dev).await.unwrap().is_empty());
}

/// `names_are_checked`.
pub async fn names_are_checked<T: TransportFactory>() {
    let (_tmp, m) = medium();
    let t = T::open(&m);
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
    let (_tmp, m) = medium();
    let (watcher, writer) = (T::open(&m), T::open(&m));
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

/// Instantiates every transport check for one transport factory.
#[macro_export]
macro_rules! transport_conformance {
    ($name:ident, $transport:ty) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::transport_conformance!(@tests $transport;
                manifest_create_once, write_then_list_read, write_is_atomic, write_existing_fails,
                read_missing_not_found, list_missing_device_empty, delete_missing_ok, names_are_checked,
                changes_hint_on_write,
            );
        }
    };
    (@tests $t:ty; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() { $crate::transport_checks::$test::<$t>().await; }
        )*
    };
}
