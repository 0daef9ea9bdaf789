//! The scenarios, written once and generic over a [`Backend`]. Each is one test per
//! combination (see [`conformance!`](crate::conformance)).

use onefolder_core::TransportExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use onefolder_core::segment::{self, SegmentKind};
use onefolder_core::{Clock, DeviceId, LibraryId, Op, ReplicaConfig, Transport, names};
use onefolder_model::{FileMeta, ImportMode, ModelError};

use crate::layers::{Counting, HoldBack};
use crate::{Backend, Cluster, EngineFactory, Env, StoreFactory, TransportFactory, test_config, wait_for};

/// Generous deadline for background work on a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(30);

fn meta(size: i64) -> FileMeta {
    FileMeta { size, date_modified: 1_700_000_000_000, date_created: 1_700_000_000_000, ..FileMeta::default() }
}

/// A cluster whose device 0 created the primary location (the library folder) and every
/// device has seen it.
async fn cluster_with_location<B: Backend>(env: Env, n: usize) -> (Cluster<B>, String) {
    let c = Cluster::<B>::start(env, n).await;
    let loc = c.lib(0).add_location("Library", Some("")).unwrap();
    c.sync_all().await;
    (c, loc)
}

/// Two devices edit concurrently (including the same tag) and converge.
pub async fn two_devices_converge<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let cats = c.lib(0).create_tag_path("Animals/Cats", Some("orange")).unwrap();
    let a = c.lib(0).upsert_file(&loc, "pets/tom.jpg", &meta(100)).unwrap();
    c.lib(0).assign(&a, &cats).unwrap();
    let places = c.lib(1).create_tag_path("Places", None).unwrap();
    let b = c.lib(1).upsert_file(&loc, "trips/rome.jpg", &meta(200)).unwrap();
    c.lib(1).assign(&b, &places).unwrap();
    c.sync_all().await;
    // A concurrent edit of the same tag on both.
    c.lib(0).set_tag_color(&places, Some("blue")).unwrap();
    c.lib(1).rename_tag(&cats, "Cats & kittens").unwrap();
    c.sync_all().await;
    c.assert_converged();
    let tags = c.lib(1).tags().unwrap();
    assert_eq!(tags.len(), 3);
    assert_eq!(tags[&places].color.as_deref(), Some("blue"));
    assert_eq!(tags[&cats].name, "Cats & kittens");
    assert_eq!(tags[&cats].color.as_deref(), Some("orange"));
    assert_eq!(c.lib(1).files_with_tag(&tags[&cats].parent.clone().unwrap(), true).unwrap().len(), 1);
    assert_eq!(c.lib(0).files().unwrap().len(), 2);
}

/// Five devices each make edits offline, then converge.
pub async fn five_devices_converge<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 5).await;
    for i in 0..5 {
        let lib = c.lib(i);
        let t = lib.create_tag(None, &format!("Tag {i}"), None).unwrap();
        let shared = lib.create_tag(None, "Shared", None).unwrap();
        let f = lib.upsert_file(&loc, &format!("dir/file-{i}.png"), &meta(i as i64)).unwrap();
        lib.assign(&f, &t).unwrap();
        lib.assign(&f, &shared).unwrap();
    }
    c.sync_all().await;
    c.assert_converged();
    let lib = c.lib(3);
    assert_eq!(lib.tags().unwrap().len(), 6, "five own tags and one shared tag");
    let shared = lib.tag_by_path("shared").unwrap().unwrap();
    assert_eq!(lib.files_with_tag(&shared, false).unwrap().len(), 5);
}

/// DESIGN §5: the same file indexed on two computers is one record, and tags assigned on both
/// survive.
pub async fn same_file_indexed_twice_is_one_record<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let lib = c.lib(i);
        let loc = lib.add_location("Library", Some("")).unwrap();
        let t = lib.create_tag(None, &format!("from-{i}"), None).unwrap();
        let f = lib.upsert_file(&loc, "Photos/IMG_0001.JPG", &meta(4096)).unwrap();
        lib.assign(&f, &t).unwrap();
        ids.push(f);
    }
    assert_eq!(ids[0], ids[1], "file id does not depend on the computer");
    c.sync_all().await;
    c.assert_converged();
    let files = c.lib(0).files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[&ids[0]].tags.len(), 2, "both assignments survive the concurrent creation");
    assert_eq!(files[&ids[0]].extension, "jpg");
    assert_eq!(c.lib(0).locations().unwrap().len(), 1);
}

/// DESIGN §5: a location added on a second computer is matched; its absolute path stays local.
pub async fn location_matched_on_second_device<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let a = c.lib(0).add_location("Pictures", Some("Pictures")).unwrap();
    c.dev(0).replica.set_setting(&format!("location/{a}/path"), Some("/home/anna/Drive/Pictures")).unwrap();
    let b = c.lib(1).add_location("Pictures", Some("./Pictures/")).unwrap();
    c.dev(1).replica.set_setting(&format!("location/{b}/path"), Some("D:\\Drive\\Pictures")).unwrap();
    assert_eq!(a, b);
    c.sync_all().await;
    let export = c.assert_converged();
    assert_eq!(c.lib(1).locations().unwrap().len(), 1);
    assert!(!export.contains("/home/anna") && !export.contains("D:\\\\"), "absolute paths never leave a device");
    assert_eq!(
        c.dev(0).replica.setting(&format!("location/{a}/path")).unwrap().as_deref(),
        Some("/home/anna/Drive/Pictures")
    );
}

/// DESIGN §5: a file moved or renamed on disk keeps its tags.
pub async fn moved_file_keeps_tags<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let t = c.lib(0).create_tag(None, "Keep", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "a/old name.jpg", &meta(10)).unwrap();
    c.lib(0).assign(&f, &t).unwrap();
    c.sync_all().await;
    let moved = c.lib(1).relocate_file(&f, &loc, "b/new name.jpg").unwrap();
    c.sync_all().await;
    c.assert_converged();
    let files = c.lib(0).files().unwrap();
    assert!(!files.contains_key(&f));
    assert_eq!(files[&moved].path, "b/new name.jpg");
    assert_eq!(files[&moved].tags, BTreeSet::from([t]));
}

/// DESIGN §5: the same tag name created offline under the same parent is one tag.
pub async fn same_tag_created_offline_twice_is_one_tag<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let a = c.lib(0).create_tag_path("Animals/Cats", None).unwrap();
    let b = c.lib(1).create_tag_path(" animals / CATS ", None).unwrap();
    assert_eq!(a, b);
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).tags().unwrap().len(), 2);
    assert_eq!(c.lib(1).tag_by_path("Animals/Cats").unwrap(), Some(a));
}

async fn synced_tag<B: Backend>(c: &Cluster<B>, name: &str) -> String {
    let t = c.lib(0).create_tag(None, name, None).unwrap();
    c.sync_all().await;
    t
}

/// DESIGN §5: tag renamed on A, recoloured on B: both survive (field-level merge).
pub async fn rename_and_recolor_both_survive<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let t = synced_tag(&c, "Cats").await;
    c.lib(0).rename_tag(&t, "Kittens").unwrap();
    c.lib(1).set_tag_color(&t, Some("#ff0000")).unwrap();
    c.sync_all().await;
    c.assert_converged();
    let tag = &c.lib(0).tags().unwrap()[&t];
    assert_eq!((tag.name.as_str(), tag.color.as_deref()), ("Kittens", Some("#ff0000")));
}

/// DESIGN §5: tag renamed on A and on B: one name wins, the same everywhere.
pub async fn concurrent_renames_pick_one_name<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 3).await;
    let t = synced_tag(&c, "Cats").await;
    c.lib(0).rename_tag(&t, "Name A").unwrap();
    c.lib(1).rename_tag(&t, "Name B").unwrap();
    c.sync_all().await;
    c.assert_converged();
    let name = c.lib(2).tags().unwrap()[&t].name.clone();
    assert!(name == "Name A" || name == "Name B", "{name}");
}

/// DESIGN §5: tag added to a file on A, removed on B, concurrently: added.
pub async fn tag_add_wins_over_concurrent_remove<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let t = c.lib(0).create_tag(None, "T", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "f.jpg", &meta(1)).unwrap();
    c.lib(0).assign(&f, &t).unwrap();
    c.sync_all().await;
    c.lib(0).unassign(&f, &t).unwrap();
    c.lib(1).assign(&f, &t).unwrap();
    c.sync_all().await;
    c.assert_converged();
    assert!(c.lib(0).file(&f).unwrap().unwrap().tags.contains(&t), "add wins");
}

/// DESIGN §5: tag deleted on A while assigned on B: gone everywhere, no dangling id anywhere.
pub async fn deleted_tag_leaves_no_dangling_id<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let parent = c.lib(0).create_tag(None, "Doomed", None).unwrap();
    let child = c.lib(0).create_tag(Some(&parent), "Child", None).unwrap();
    let f1 = c.lib(0).upsert_file(&loc, "one.jpg", &meta(1)).unwrap();
    let f2 = c.lib(0).upsert_file(&loc, "two.jpg", &meta(2)).unwrap();
    c.lib(0).assign(&f1, &parent).unwrap();
    c.sync_all().await;
    c.lib(0).delete_tag(&parent).unwrap();
    c.lib(1).assign(&f2, &parent).unwrap();
    c.lib(1).assign(&f2, &child).unwrap();
    let late = c.lib(1).create_tag(Some(&parent), "Created under it meanwhile", None).unwrap();
    c.sync_all().await;
    let export = c.assert_converged();
    assert!(!export.contains(&parent) && !export.contains(&child), "no view shows a deleted tag id");
    let lib = c.lib(1);
    assert!(lib.untagged_files().unwrap().len() == 2);
    // A tag created under the deleted one meanwhile is not lost: it moves to the root.
    assert_eq!(lib.tags().unwrap()[&late].parent, None);
}

/// DESIGN §5: X moved under Y on A, Y under X on B: no cycle, same choice everywhere, no tag lost.
pub async fn concurrent_tag_move_makes_no_cycle<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let x = c.lib(0).create_tag(None, "X", None).unwrap();
    let y = c.lib(0).create_tag(None, "Y", None).unwrap();
    let z = c.lib(0).create_tag(Some(&x), "Z", None).unwrap();
    c.sync_all().await;
    c.lib(0).move_tag(&x, Some(&y)).unwrap();
    c.lib(1).move_tag(&y, Some(&z)).unwrap();
    c.sync_all().await;
    c.assert_converged();
    let tags = c.lib(0).tags().unwrap();
    assert_eq!(tags.len(), 3, "no tag lost");
    let tree = c.lib(0).tag_tree().unwrap();
    fn count(n: &[onefolder_model::TagNode]) -> usize {
        n.iter().map(|n| 1 + count(&n.children)).sum()
    }
    assert_eq!(count(&tree), 3, "every tag reachable from a root: no cycle");
    assert!(!tree.is_empty());
}

/// DESIGN §5: sibling order is an order key per tag; concurrent inserts order the same everywhere.
pub async fn concurrent_siblings_order_the_same<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let first = synced_tag(&c, "First").await;
    c.lib(0).create_tag(None, "A1", None).unwrap();
    c.lib(0).create_tag(None, "A2", None).unwrap();
    c.lib(1).create_tag(None, "B1", None).unwrap();
    c.sync_all().await;
    c.assert_converged();
    let order = |i: usize| -> Vec<String> { c.lib(i).tag_tree().unwrap().into_iter().map(|n| n.tag.name).collect() };
    assert_eq!(order(0), order(1));
    assert_eq!(order(0)[0], "First");
    let pos = |n: &str| order(0).iter().position(|x| x == n).unwrap();
    assert!(pos("A1") < pos("A2"));
    assert_eq!(c.lib(0).tags().unwrap()[&first].parent, None);
}

/// DESIGN §5: restoring a backup replaces the library everywhere; peers cannot resurrect what
/// the backup does not hold.
pub async fn restore_replace_propagates<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let keep = c.lib(0).create_tag(None, "Keep", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "keep.jpg", &meta(1)).unwrap();
    c.lib(0).assign(&f, &keep).unwrap();
    c.sync_all().await;
    let backup = c.lib(0).export().unwrap();
    // Life goes on after the backup, on both devices.
    let later = c.lib(1).create_tag(None, "Later", None).unwrap();
    c.lib(1).assign(&f, &later).unwrap();
    c.lib(1).rename_tag(&keep, "Renamed later").unwrap();
    c.lib(0).upsert_file(&loc, "later.jpg", &meta(2)).unwrap();
    c.sync_all().await;
    c.lib(0).import(&backup, ImportMode::Replace).unwrap();
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).export().unwrap(), backup, "the restored state, on the peer too");
    // A merge import adds without removing.
    let extra = c.lib(1).create_tag(None, "Extra", None).unwrap();
    c.lib(1).import(&backup, ImportMode::Merge).unwrap();
    c.sync_all().await;
    assert!(c.lib(0).tags().unwrap().contains_key(&extra));
}

/// A device offline for many edits comes back and everyone converges.
pub async fn offline_device_catches_up<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 3).await;
    for round in 0..20 {
        for i in 0..2 {
            let lib = c.lib(i);
            let t = lib.create_tag(None, &format!("d{i} r{round}"), None).unwrap();
            let f = lib.upsert_file(&loc, &format!("d{i}/r{round}.jpg"), &meta(round)).unwrap();
            lib.assign(&f, &t).unwrap();
        }
        c.sync_some(&[0, 1]).await;
    }
    for k in 0..30 {
        c.lib(2).create_tag(None, &format!("offline {k}"), None).unwrap();
    }
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(2).tags().unwrap().len(), 20 * 2 + 30);
    assert_eq!(c.lib(2).files().unwrap().len(), 40);
}

/// A segment delivered several times (cloud conflict copies) is applied once and does no harm.
pub async fn duplicated_delivery_is_harmless<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    c.lib(0).create_tag(None, "Once", None).unwrap();
    let flushed = c.dev(0).replica.flush().await.unwrap().expect("a flush");
    let a = c.dev(0).replica.device();
    let name = names::delta_name(flushed.seq);
    let bytes = c.dev(0).transport.read(&a, &name, u64::MAX).await.unwrap();
    let stem = name.trim_end_matches(".seg");
    for copy in [
        format!("{stem} (Anna's conflicted copy 2026-11-25).seg"),
        format!("{stem}-LAPTOP-2.seg"),
        format!("{stem}.sync-conflict-20261125-101010-ABCDEFG.seg"),
    ] {
        c.dev(0).transport.create(&a, &copy, &bytes).await.unwrap();
    }
    let report = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((report.applied, report.duplicates), (1, 3), "{report:?}");
    let again = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((again.applied, again.duplicates, again.reads), (0, 0, 0));
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).tags().unwrap().len(), 1);
}

/// Two devices; device 1 reads the medium through a [`HoldBack`] layer, returned too.
async fn cluster_holding_for_device_1<B: Backend>(env: Env) -> (Cluster<B>, Arc<HoldBack>) {
    Cluster::<B>::with_layer_on(env, 2, 1, test_config, HoldBack::new).await
}

/// Flushes device `i` and returns the seq it wrote.
async fn flushed_seq<B: Backend>(c: &Cluster<B>, i: usize) -> u64 {
    c.dev(i).replica.flush().await.unwrap().expect("something to flush").seq
}

/// Restarts device `i` and asserts that its library and pending edits are what they were.
async fn restart_keeps_view<B: Backend>(c: &mut Cluster<B>, i: usize, when: &str) {
    let before = c.lib(i).export().unwrap();
    let pending = c.dev(i).replica.status().pending_edits;
    c.restart(i).await;
    assert_eq!(c.lib(i).export().unwrap(), before, "a restart {when} changed the library");
    assert_eq!(c.dev(i).replica.status().pending_edits, pending, "a restart {when} changed the pending edits");
}

/// Segments delivered out of order (a later one first) converge once the gap fills.
pub async fn out_of_order_delivery_converges<B: Backend>(env: Env) {
    let (c, hold) = cluster_holding_for_device_1::<B>(env).await;
    let lib = c.lib(0);
    let a = c.dev(0).replica.device();
    let loc = lib.add_location("Library", Some("")).unwrap();
    let t = lib.create_tag(None, "Step 1", None).unwrap();
    let s1 = c.dev(0).replica.flush().await.unwrap().unwrap().seq;
    lib.rename_tag(&t, "Step 2").unwrap();
    let f = lib.upsert_file(&loc, "x.jpg", &meta(1)).unwrap();
    let s2 = c.dev(0).replica.flush().await.unwrap().unwrap().seq;
    lib.assign(&f, &t).unwrap();
    lib.set_tag_color(&t, Some("green")).unwrap();
    c.dev(0).replica.flush().await.unwrap().unwrap();
    hold.hold(a, &names::delta_name(s1));
    hold.hold(a, &names::delta_name(s2));
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(r.applied, 1, "only the last segment is visible");
    hold.release(a, &names::delta_name(s2));
    c.dev(1).replica.ingest().await.unwrap();
    hold.release_all();
    c.dev(1).replica.ingest().await.unwrap();
    c.assert_converged();
    let tag = &c.lib(1).tags().unwrap()[&t];
    assert_eq!((tag.name.as_str(), tag.color.as_deref()), ("Step 2", Some("green")));
    assert!(c.lib(1).file(&f).unwrap().unwrap().tags.contains(&t));
}

/// A device closed without flushing (as a crash would) reopens from its store with every
/// acknowledged edit, and then delivers them.
pub async fn restarted_device_loses_nothing<B: Backend>(env: Env) {
    let (mut c, loc) = cluster_with_location::<B>(env, 2).await;
    let t = c.lib(0).create_tag(None, "Flushed", None).unwrap();
    c.dev(0).replica.flush().await.unwrap();
    let f = c.lib(0).upsert_file(&loc, "unflushed.jpg", &meta(3)).unwrap();
    c.lib(0).assign(&f, &t).unwrap();
    c.lib(0).create_tag(None, "Unflushed", None).unwrap();
    // Enough remote data to trigger compaction on device 0 (test_config compacts every 50).
    for k in 0..60 {
        c.lib(1).create_tag(None, &format!("peer {k}"), None).unwrap();
        c.dev(1).replica.flush().await.unwrap();
    }
    c.ingest(0).await;
    let before = c.lib(0).export().unwrap();
    let pending = c.dev(0).replica.status().pending_edits;
    assert!(pending >= 2, "{pending}");
    c.restart(0).await;
    assert_eq!(c.lib(0).export().unwrap(), before, "every acknowledged edit survives a restart");
    assert_eq!(c.dev(0).replica.status().pending_edits, pending);
    let device_before = c.dev(0).replica.device();
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.dev(0).replica.device(), device_before, "a restart is not a clone");
    assert!(c.lib(1).file(&f).unwrap().unwrap().tags.contains(&t));
    assert_eq!(c.lib(1).tags().unwrap().len(), 62);
}

/// A batch of edits is one durable local change: its reads see its own writes, it survives a
/// restart as a whole, and a batch that fails half-way leaves nothing behind, locally or on peers.
pub async fn a_batch_is_one_durable_edit_and_a_failed_one_leaves_nothing<B: Backend>(env: Env) {
    let (mut c, loc) = cluster_with_location::<B>(env, 2).await;
    let pending = || c.dev(0).replica.status().pending_edits;
    let before = pending();
    let (tag, files) = c
        .lib(0)
        .in_batch(|b| {
            let tag = b.create_tag(None, "Batched", None)?;
            let mut files = Vec::new();
            for k in 0..20 {
                let f = b.upsert_file(&loc, &format!("batch/{k}.jpg"), &meta(k))?;
                // The tag and the file were written in this batch: the checks see them.
                b.assign(&f, &tag)?;
                files.push(f);
            }
            Ok((tag, files))
        })
        .unwrap();
    assert_eq!(pending(), before + 1, "a batch is one local change");

    let kept = c.lib(0).export().unwrap();
    let err = c
        .lib(0)
        .in_batch(|b| {
            let f = b.upsert_file(&loc, "lost.jpg", &meta(99))?;
            b.create_tag(None, "Lost", None)?;
            b.assign(&f, "no-such-tag")
        })
        .unwrap_err();
    assert!(matches!(err, ModelError::UnknownTag(_)), "{err:?}");
    assert_eq!(c.lib(0).export().unwrap(), kept, "a failed batch leaves nothing");
    assert_eq!(pending(), before + 1, "a failed batch is no edit");

    c.restart(0).await;
    assert_eq!(c.lib(0).export().unwrap(), kept, "an acknowledged batch survives a restart");
    c.sync_all().await;
    c.assert_converged();
    for f in &files {
        assert!(c.lib(1).file(f).unwrap().unwrap().tags.contains(&tag));
    }
    assert!(c.lib(1).tags().unwrap().values().all(|t| t.name != "Lost"));
}

/// A file that was skipped and then vanished from the medium (its writer deleted it) is
/// forgotten: no warning stays behind and nothing is retried.
pub async fn vanished_file_is_forgotten<B: Backend>(env: Env) {
    let (c, counter) = Cluster::<B>::with_layer_on(env, 2, 1, test_config, Counting::failing_first_reads).await;
    let a = c.dev(0).replica.device();
    c.lib(0).create_tag(None, "Short-lived", None).unwrap();
    let seq = flushed_seq(&c, 0).await;
    let first = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((first.applied, first.skipped), (0, 1), "{first:?}");
    c.dev(0).transport.delete(&a, &names::delta_name(seq)).await.unwrap();
    let second = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((second.applied, second.skipped), (0, 0), "{second:?}");
    assert!(c.dev(1).replica.status().warnings.is_empty(), "{:?}", c.dev(1).replica.status().warnings);
    let reads = counter.counts.lock().unwrap().get("read").copied();
    let third = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((third.skipped, counter.counts.lock().unwrap().get("read").copied()), (0, reads), "not retried");
}

/// What one pass costs in requests, with five peers: an idle pass is one request on a
/// transport with a change feed and 1 + N listings without; a hint that names a folder lists
/// just that one; a flushed edit is one write; nothing is read while nothing changed.
pub async fn requests_per_pass<B: Backend>(env: Env) {
    let (c, counter) = Cluster::<B>::with_layer_on(env, 6, 0, test_config, Counting::new).await;
    for i in 1..6 {
        c.lib(i).create_tag(None, &format!("from {i}"), None).unwrap();
        flushed_seq(&c, i).await;
    }
    c.dev(0).replica.ingest().await.unwrap();
    let feed = c.dev(0).transport.capabilities().changes_feed;
    let before = counter.counts.lock().unwrap().clone();
    let idle = c.dev(0).replica.ingest().await.unwrap();
    assert_eq!(idle.reads, 0);
    let idle_cost = counter.total() - before.values().sum::<u64>();
    assert_eq!(idle_cost, if feed { 1 } else { 1 + 5 }, "an idle pass: {:?}", counter.counts.lock().unwrap());

    let peer = c.dev(1).replica.device();
    c.lib(1).create_tag(None, "named", None).unwrap();
    flushed_seq(&c, 1).await;
    let start = counter.total();
    let r = c.dev(0).replica.ingest_from(&[peer]).await.unwrap();
    assert_eq!((r.applied, r.reads), (1, 1), "{r:?}");
    assert_eq!(counter.total() - start, 2, "one listing (or one feed query) and one read");

    c.lib(0).create_tag(None, "mine", None).unwrap();
    let start = counter.total();
    flushed_seq(&c, 0).await;
    assert_eq!(counter.total() - start, 1, "a flushed edit is one write");
}

/// A file whose read failed is tried again on the next pass, although a change feed will not
/// mention it again; a pass after that reads nothing.
pub async fn failed_read_is_retried_without_a_new_change<B: Backend>(env: Env) {
    let (c, _) = Cluster::<B>::with_layer_on(env, 2, 1, test_config, Counting::failing_first_reads).await;
    let tag = c.lib(0).create_tag(None, "Retried", None).unwrap();
    flushed_seq(&c, 0).await;
    let first = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((first.applied, first.skipped), (0, 1), "{first:?}");
    assert_eq!(c.dev(1).replica.status().warnings.len(), 1);
    let second = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(second.applied, 1, "{second:?}");
    assert!(c.lib(1).tags().unwrap().contains_key(&tag));
    assert!(c.dev(1).replica.status().warnings.is_empty(), "the warning is gone once applied");
    let idle = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((idle.applied, idle.reads, idle.skipped), (0, 0, 0), "{idle:?}");
}

/// A restart while a peer's segment waits for an earlier one that has not arrived shows what
/// the device showed before (here, with yrs, a new file from the later segment while the
/// rename in it waits), and everything integrates once the gap fills.
pub async fn restart_while_a_peer_segment_waits<B: Backend>(env: Env) {
    let (mut c, hold) = cluster_holding_for_device_1::<B>(env).await;
    let a = c.dev(0).replica.device();
    let loc = c.lib(0).add_location("Library", Some("")).unwrap();
    let t = c.lib(0).create_tag(None, "Step 1", None).unwrap();
    let s1 = flushed_seq(&c, 0).await;
    hold.hold(a, &names::delta_name(s1));
    c.lib(0).rename_tag(&t, "Step 2").unwrap();
    flushed_seq(&c, 0).await;
    let f = c.lib(0).upsert_file(&loc, "new.jpg", &meta(1)).unwrap();
    flushed_seq(&c, 0).await;
    c.lib(1).create_tag(None, "Mine", None).unwrap();
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(r.applied, 2, "{r:?}");
    assert!(c.dev(1).replica.read(|e| e.has_pending()), "the rename waits for the held segment");
    restart_keeps_view(&mut c, 1, "while a peer's segment waits").await;
    restart_keeps_view(&mut c, 1, "twice while a peer's segment waits").await;
    hold.release_all();
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).tags().unwrap()[&t].name, "Step 2");
    assert!(c.lib(1).file(&f).unwrap().is_some());
    restart_keeps_view(&mut c, 1, "after the gap filled").await;
}

/// A restart right after an ingest that applied a conflict copy before its original, and
/// recognised another copy as a duplicate, shows the same library; neither file is read
/// again, and the original, once it arrives, is recognised as already applied.
pub async fn restart_after_ingesting_conflict_copies<B: Backend>(env: Env) {
    let mut c = Cluster::<B>::start(env, 2).await;
    let a = c.dev(0).replica.device();
    let t = c.dev(0).transport.clone();
    let mut originals = Vec::new();
    for (name, copy) in
        [("First", " (Anna's conflicted copy 2026-11-25)"), ("Second", ".sync-conflict-20261125-101010-ABCDEFG")]
    {
        c.lib(0).create_tag(None, name, None).unwrap();
        let file = names::delta_name(flushed_seq(&c, 0).await);
        let bytes = t.read(&a, &file, u64::MAX).await.unwrap();
        t.create(&a, &format!("{}{copy}.seg", file.trim_end_matches(".seg")), &bytes).await.unwrap();
        originals.push((file, bytes));
    }
    // The sync client has brought only the copy of the first segment so far.
    t.delete(&a, &originals[0].0).await.unwrap();
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((r.applied, r.duplicates), (2, 1), "{r:?}");
    restart_keeps_view(&mut c, 1, "after ingesting conflict copies").await;
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((r.applied, r.duplicates, r.reads), (0, 0, 0), "after a restart nothing is read again: {r:?}");
    t.create(&a, &originals[0].0, &originals[0].1).await.unwrap();
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((r.applied, r.duplicates), (0, 1), "the original is a copy of what was applied: {r:?}");
    restart_keeps_view(&mut c, 1, "after recognising an original as a copy").await;
    let r = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(r.reads, 0, "{r:?}");
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).tags().unwrap().len(), 2);
}

/// Compaction is skipped while a peer's change waits for a missing dependency, and folds the
/// log around unflushed own edits otherwise; a restart after either keeps every edit, and the
/// unflushed ones still reach the peer.
pub async fn restart_after_compaction_with_pending_changes<B: Backend>(env: Env) {
    let (mut c, hold) = cluster_holding_for_device_1::<B>(env).await;
    let a = c.dev(0).replica.device();
    let t = c.lib(0).create_tag(None, "Step 1", None).unwrap();
    let s1 = flushed_seq(&c, 0).await;
    hold.hold(a, &names::delta_name(s1));
    c.lib(0).rename_tag(&t, "Step 2").unwrap();
    c.lib(0).create_tag(None, "Other", None).unwrap();
    flushed_seq(&c, 0).await;
    c.dev(1).replica.ingest().await.unwrap();
    let unflushed = c.lib(1).create_tag(None, "Unflushed", None).unwrap();
    assert!(c.dev(1).replica.read(|e| e.has_pending()));
    assert!(!c.dev(1).replica.compact().unwrap(), "no compaction while a change waits");
    restart_keeps_view(&mut c, 1, "after a skipped compaction").await;

    hold.release_all();
    c.dev(1).replica.ingest().await.unwrap();
    assert!(!c.dev(1).replica.read(|e| e.has_pending()));
    let after = c.lib(1).create_tag(None, "After", None).unwrap();
    assert!(c.dev(1).replica.compact().unwrap(), "compaction with unflushed own edits");
    assert_eq!(c.dev(1).replica.status().pending_edits, 2);
    restart_keeps_view(&mut c, 1, "after compacting around unflushed edits").await;
    c.sync_all().await;
    c.assert_converged();
    let tags = c.lib(0).tags().unwrap();
    assert!(tags.contains_key(&unflushed) && tags.contains_key(&after));
    assert_eq!(tags[&t].name, "Step 2");
}

/// A restart right after a restore (replace), and again after compacting it, shows the
/// restored library, and the restore still reaches the peer.
pub async fn restart_after_restore<B: Backend>(env: Env) {
    let (mut c, loc) = cluster_with_location::<B>(env, 2).await;
    let keep = c.lib(0).create_tag(None, "Keep", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "keep.jpg", &meta(1)).unwrap();
    c.lib(0).assign(&f, &keep).unwrap();
    c.sync_all().await;
    let backup = c.lib(0).export().unwrap();
    c.lib(0).rename_tag(&keep, "Renamed later").unwrap();
    c.lib(0).upsert_file(&loc, "later.jpg", &meta(2)).unwrap();
    c.lib(1).create_tag(None, "Peer later", None).unwrap();
    c.sync_all().await;
    c.lib(0).import(&backup, ImportMode::Replace).unwrap();
    assert_eq!(c.lib(0).export().unwrap(), backup);
    restart_keeps_view(&mut c, 0, "after a restore").await;
    c.dev(0).replica.compact().unwrap();
    restart_keeps_view(&mut c, 0, "after compacting a restore").await;
    c.sync_all().await;
    c.assert_converged();
    assert_eq!(c.lib(1).export().unwrap(), backup, "the restored state, on the peer too");
}

/// A restore equals the backup for everything the restoring device had seen — also for a
/// record it re-creates whose fields and set members raced its delete: device 0 deletes a tag
/// while device 1 recolours it and tags a new file with it; both sync; device 0 restores a
/// backup from before. No raced colour or membership comes back, on either device.
pub async fn restore_after_a_raced_delete_equals_the_backup<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let keep = c.lib(0).create_tag(None, "Keep2", None).unwrap();
    let other = c.lib(0).create_tag(None, "Other", Some("green")).unwrap();
    let f1 = c.lib(0).upsert_file(&loc, "one.jpg", &meta(1)).unwrap();
    c.lib(0).assign(&f1, &keep).unwrap();
    c.lib(0).assign(&f1, &other).unwrap();
    c.sync_all().await;
    let backup = c.lib(0).export().unwrap();
    // Concurrently: a delete on device 0, edits of the same records on device 1.
    c.lib(0).delete_tag(&keep).unwrap();
    c.lib(0).remove_file(&f1).unwrap();
    c.lib(1).set_tag_color(&keep, Some("blue")).unwrap();
    c.lib(1).rename_tag(&keep, "Keep two").unwrap();
    let f2 = c.lib(1).upsert_file(&loc, "two.jpg", &meta(2)).unwrap();
    c.lib(1).assign(&f2, &keep).unwrap();
    c.lib(1).assign(&f1, &keep).unwrap();
    c.lib(1).unassign(&f1, &other).unwrap();
    c.lib(1).set_tag_color(&other, None).unwrap();
    c.sync_all().await;
    c.assert_converged();
    c.lib(0).import(&backup, ImportMode::Replace).unwrap();
    assert_eq!(c.lib(0).export().unwrap(), backup, "the restoring device");
    c.sync_all().await;
    assert_eq!(c.lib(1).export().unwrap(), backup, "the peer");
    c.assert_converged();
}

/// Edits a device made offline while another restored a backup (the restore could not see
/// them) merge like any concurrent edit: a record created offline is kept, a tag assigned
/// offline stays (add wins), a record the restore deleted stays deleted whatever was written
/// to it offline, and a field both wrote ends the same on every device.
pub async fn restore_merges_edits_made_offline_concurrently<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 3).await;
    let alpha = c.lib(0).create_tag(None, "Alpha", None).unwrap();
    let beta = c.lib(0).create_tag(None, "Beta", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "f.jpg", &meta(1)).unwrap();
    c.lib(0).assign(&f, &alpha).unwrap();
    c.sync_all().await;
    let backup = c.lib(0).export().unwrap();
    let gamma = c.lib(0).create_tag(None, "Gamma", None).unwrap();
    c.sync_all().await;
    // Device 2 goes offline and edits.
    let fresh = c.lib(2).create_tag(None, "Offline new", None).unwrap();
    c.lib(2).assign(&f, &beta).unwrap();
    c.lib(2).set_tag_color(&gamma, Some("red")).unwrap();
    c.lib(2).rename_tag(&alpha, "Alpha offline").unwrap();
    // Meanwhile device 0 restores, and device 1 sees it.
    c.lib(0).import(&backup, ImportMode::Replace).unwrap();
    c.sync_some(&[0, 1]).await;
    assert_eq!(c.lib(1).export().unwrap(), backup);
    // Device 2 comes back.
    c.sync_all().await;
    c.assert_converged();
    let tags = c.lib(1).tags().unwrap();
    assert!(tags.contains_key(&fresh), "a tag created offline is kept");
    assert!(!tags.contains_key(&gamma), "a tag the restore deleted stays deleted");
    assert!(["Alpha", "Alpha offline"].contains(&tags[&alpha].name.as_str()), "{}", tags[&alpha].name);
    let on_f = c.lib(1).files_with_tag(&beta, false).unwrap();
    assert_eq!(on_f.len(), 1, "a tag assigned offline stays");
}

/// What a bad-input scenario plants: bytes for a file in a fake peer's folder.
struct Planted {
    bytes: Vec<u8>,
    /// The intact segment, to deliver later (proves the file is retried).
    repaired: Option<Vec<u8>>,
}

/// Builds a valid segment from a fresh engine of the backend: one tag named `name`.
fn segment_for<B: Backend>(library: LibraryId, device: DeviceId, engine_id: Option<&str>, name: &str) -> Vec<u8> {
    let mut engine = B::E::engine();
    let id = onefolder_model::ids::tag_id(None, name);
    engine
        .write(&[Op::create("tags", &id), Op::put("tags", &id, "name", name), Op::put("tags", &id, "order", "80")])
        .unwrap();
    let payload = engine.take_local_changes().unwrap().unwrap();
    let engine_id = engine_id.unwrap_or(engine.engine_id());
    segment::encode(SegmentKind::Delta, engine_id, library, device, 1, 1, &payload).unwrap()
}

/// Plants a bad file in a fake peer's folder while a good peer also writes; the good peer is
/// applied, the bad file is skipped with a warning containing `warning`, the local state is
/// untouched, and (if `repaired`) the file is applied once intact.
async fn bad_input<B: Backend>(env: Env, warning: &str, plant: impl Fn(LibraryId, DeviceId, DeviceId) -> Planted) {
    let c = Cluster::<B>::start(env, 2).await;
    let library = c.dev(0).replica.manifest().library_id;
    let good = c.dev(0).replica.device();
    let fake = DeviceId::random();
    let planted = plant(library, fake, good);
    let name = names::delta_name(1);
    c.dev(0).transport.create(&fake, &name, &planted.bytes).await.unwrap();
    c.lib(0).create_tag(None, "Good", None).unwrap();
    c.dev(0).replica.flush().await.unwrap();
    let report = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((report.applied, report.skipped), (1, 1), "{report:?}");
    let status = c.dev(1).replica.status();
    let w = status.warnings.iter().find(|w| w.file.as_deref() == Some(name.as_str())).expect("a warning");
    assert!(w.message.contains(warning), "warning {:?} should mention {warning:?}", w.message);
    assert_eq!(c.lib(1).export().unwrap(), c.lib(0).export().unwrap(), "only the good peer was applied");
    assert!(!c.lib(1).export().unwrap().to_json().contains("Planted"));
    // Retried on the next pass, still skipped, still one warning.
    let again = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((again.applied, again.skipped), (0, 1));
    assert_eq!(c.dev(1).replica.status().warnings.len(), 1);
    // The local store was not touched: a restart shows the same library.
    let before = c.lib(1).export().unwrap();
    let mut c = c;
    c.restart(1).await;
    assert_eq!(c.lib(1).export().unwrap(), before);
    if let Some(repaired) = planted.repaired {
        // The sync client finishes the download: the file is applied on the next pass.
        c.dev(0).transport.delete(&fake, &name).await.unwrap();
        c.dev(0).transport.create(&fake, &name, &repaired).await.unwrap();
        let r = c.dev(1).replica.ingest().await.unwrap();
        assert_eq!(r.applied, 1, "{r:?}");
        assert!(c.dev(1).replica.status().warnings.is_empty());
        assert!(c.lib(1).tag_by_path("Planted").unwrap().is_some());
    }
}

/// A segment whose payload was damaged is skipped with a checksum warning.
pub async fn corrupt_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "checksum", |lib, fake, _| {
        let good = segment_for::<B>(lib, fake, None, "Planted");
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        Planted { bytes: bad, repaired: Some(good) }
    })
    .await;
}

/// A segment still being downloaded (truncated) is skipped and applied once complete.
pub async fn truncated_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "truncated", |lib, fake, _| {
        let good = segment_for::<B>(lib, fake, None, "Planted");
        Planted { bytes: good[..good.len() - 3].to_vec(), repaired: Some(good) }
    })
    .await;
}

/// A 0-byte placeholder (online-only file) is skipped and applied once downloaded.
pub async fn empty_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "empty", |lib, fake, _| Planted {
        bytes: Vec::new(),
        repaired: Some(segment_for::<B>(lib, fake, None, "Planted")),
    })
    .await;
}

/// A segment of another library is skipped.
pub async fn foreign_library_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "another library", |_, fake, _| Planted {
        bytes: segment_for::<B>(LibraryId::random(), fake, None, "Planted"),
        repaired: None,
    })
    .await;
}

/// A segment written by another engine is skipped.
pub async fn wrong_engine_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "engine", |lib, fake, _| Planted {
        bytes: segment_for::<B>(lib, fake, Some("other"), "Planted"),
        repaired: None,
    })
    .await;
}

/// A segment in one device's folder claiming to be another device's is skipped.
pub async fn impostor_segment_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "claims", |lib, _, good| Planted {
        bytes: segment_for::<B>(lib, good, None, "Planted"),
        repaired: None,
    })
    .await;
}

/// A segment that passes every check but the engine's is skipped with a warning, and not read
/// again (nor the local engine rebuilt again) until the file changes; a good file under the
/// same name is then applied.
pub async fn rejected_payload_is_quarantined<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let library = c.dev(0).replica.manifest().library_id;
    let fake = DeviceId::random();
    let name = names::delta_name(1);
    let engine_id = B::E::engine().engine_id().to_owned();
    let garbage = segment::encode(SegmentKind::Delta, &engine_id, library, fake, 1, 1, b"\x01\x02 not a change")
        .expect("frame the payload");
    c.dev(0).transport.create(&fake, &name, &garbage).await.unwrap();
    c.lib(0).create_tag(None, "Good", None).unwrap();
    c.dev(0).replica.flush().await.unwrap();
    let first = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!((first.applied, first.skipped, first.reads), (1, 1, 2), "{first:?}");
    let warning = |c: &Cluster<B>| {
        c.dev(1).replica.status().warnings.into_iter().find(|w| w.file.as_deref() == Some(name.as_str()))
    };
    let w = warning(&c).expect("a warning about the rejected file");
    assert!(w.message.contains("engine rejected"), "{}", w.message);
    for _ in 0..3 {
        let again = c.dev(1).replica.ingest().await.unwrap();
        assert_eq!((again.applied, again.reads), (0, 0), "the rejected file was read again: {again:?}");
        assert_eq!(warning(&c).as_ref(), Some(&w), "the warning stays while the file is unchanged");
    }
    assert_eq!(c.lib(1).export().unwrap(), c.lib(0).export().unwrap());
    // The file changes into a good segment: it is read and applied.
    c.dev(0).transport.delete(&fake, &name).await.unwrap();
    c.dev(0).transport.create(&fake, &name, &segment_for::<B>(library, fake, None, "Planted")).await.unwrap();
    let fixed = c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(fixed.applied, 1, "{fixed:?}");
    assert!(warning(&c).is_none());
    assert!(c.lib(1).tag_by_path("Planted").unwrap().is_some());
}

/// What sync clients and operating systems leave in folders is ignored without harm.
pub async fn junk_in_shared_folder_is_ignored<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let peer = c.dev(0).replica.device();
    for junk in ["desktop.ini", "Thumbs.db", "device.json.bak", "notes.txt"] {
        c.dev(0).transport.create(&peer, junk, b"junk").await.unwrap();
    }
    c.lib(0).create_tag(None, "Real", None).unwrap();
    c.sync_all().await;
    c.assert_converged();
    let status = c.dev(1).replica.status();
    assert!(status.warnings.is_empty(), "{:?}", status.warnings);
    assert_eq!(c.lib(1).tags().unwrap().len(), 1);
}

fn watch_config(name: &str) -> ReplicaConfig {
    // Polling every hour: only change hints can deliver within the test's deadline.
    ReplicaConfig { poll_interval: Duration::from_secs(3600), ..test_config(name) }
}

/// With the background loop running on both devices, an edit on one appears on the other with
/// no explicit sync call (driven by the transport's change hints).
pub async fn background_loop_applies_without_sync_call<B: Backend>(env: Env) {
    let probe = Cluster::<B>::start(env, 1).await;
    let watch = probe.dev(0).transport.capabilities().watch;
    drop(probe);
    let c = Cluster::<B>::build(env, 2, if watch { watch_config } else { test_config }, |_, t| t).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    for d in &c.devices {
        let replica = d.replica.clone();
        let mut stop = stop_rx.clone();
        loops.push(tokio::spawn(async move {
            replica
                .run(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    // Let the first poll tick (which fires immediately) pass, so delivery below is by hint.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = c.lib(0).create_tag(None, "Live", Some("teal")).unwrap();
    let arrived = wait_for(DEADLINE, || c.lib(1).tags().unwrap().contains_key(&t)).await;
    assert!(arrived, "the edit reached the other device through the background loop");
    let t2 = c.lib(1).create_tag(None, "And back", None).unwrap();
    assert!(wait_for(DEADLINE, || c.lib(0).tags().unwrap().contains_key(&t2)).await);
    stop_tx.send(true).unwrap();
    for l in loops {
        l.await.unwrap().unwrap();
    }
    c.assert_converged();
}

/// DESIGN §6: one tag assignment writes at most 256 bytes to the shared medium, header included.
pub async fn one_tag_assignment_is_small<B: Backend>(env: Env) {
    let (c, loc) = cluster_with_location::<B>(env, 2).await;
    let t = c.lib(0).create_tag_path("Animals/Cats", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "Pictures/2026/IMG_0001.JPG", &meta(1)).unwrap();
    c.sync_all().await;
    c.lib(0).assign(&f, &t).unwrap();
    let info = c.dev(0).replica.flush().await.unwrap().unwrap();
    eprintln!("bytes written for one tag assignment: {}", info.bytes);
    assert!(info.bytes <= 256, "{} bytes", info.bytes);
    c.lib(1).rename_tag(&t, "Felines").unwrap();
    let info = c.dev(1).replica.flush().await.unwrap().unwrap();
    eprintln!("bytes written for one tag rename: {}", info.bytes);
    assert!(info.bytes <= 256, "{} bytes", info.bytes);
}

/// DESIGN §6: an idle pass over peers reads no segment.
pub async fn idle_pass_reads_nothing<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 4).await;
    for i in 0..4 {
        c.lib(i).create_tag(None, &format!("t{i}"), None).unwrap();
    }
    c.sync_all().await;
    for d in &c.devices {
        let r = d.replica.ingest().await.unwrap();
        assert_eq!((r.reads, r.applied), (0, 0), "{r:?}");
    }
}

/// DESIGN §6: nothing is written while nothing changes.
pub async fn nothing_written_while_nothing_changes<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    c.lib(0).create_tag(None, "x", None).unwrap();
    c.sync_all().await;
    let me = c.dev(0).replica.device();
    let before = c.dev(0).transport.list(&me).await.unwrap();
    for _ in 0..3 {
        assert!(c.dev(0).replica.flush().await.unwrap().is_none());
        c.dev(0).replica.ingest().await.unwrap();
    }
    // A write that changes nothing is not an edit either.
    let t = c.lib(0).tag_by_path("x").unwrap().unwrap();
    c.lib(0).rename_tag(&t, "x").unwrap();
    c.dev(0).replica.flush().await.unwrap();
    assert_eq!(c.dev(0).transport.list(&me).await.unwrap().len(), before.len());
}

/// A device whose local state was copied to a second computer is detected — at open when
/// the original wrote on since the copy, or at the first colliding flush — and the copy takes
/// a new device id; no edit of either copy is lost.
pub async fn cloned_device_takes_new_id<B: Backend>(env: Env) {
    let (mut c, loc) = cluster_with_location::<B>(env, 2).await;
    let t = c.lib(0).create_tag(None, "Before the copy", None).unwrap();
    c.sync_all().await;
    let original = c.dev(0).replica.device();

    // Copied while idle: both copies write their next segment under the same name.
    let image = c.copy_state(0).await;
    let copy = c.open_copy(image).await;
    assert_eq!(c.dev(copy).replica.device(), original, "nothing tells them apart yet");
    let a = c.lib(0).create_tag(None, "Original after the copy", None).unwrap();
    c.dev(0).replica.flush().await.unwrap().unwrap();
    let f = c.lib(copy).upsert_file(&loc, "copy.jpg", &meta(5)).unwrap();
    c.lib(copy).assign(&f, &t).unwrap();
    c.dev(copy).replica.flush().await.unwrap().unwrap();
    assert_ne!(c.dev(copy).replica.device(), original, "the colliding copy took a new id");
    assert_eq!(c.dev(0).replica.device(), original);

    // Copied, then the original wrote on: the copy notices when it opens.
    let image = c.copy_state(0).await;
    c.lib(0).create_tag(None, "Original, later still", None).unwrap();
    c.dev(0).replica.flush().await.unwrap().unwrap();
    let late = c.open_copy(image).await;
    assert_ne!(c.dev(late).replica.device(), original, "detected at open");

    c.sync_all().await;
    c.assert_converged();
    let lib = c.lib(1);
    assert!(lib.tags().unwrap().contains_key(&a));
    assert!(lib.file(&f).unwrap().unwrap().tags.contains(&t));
    let ids: BTreeSet<DeviceId> = c.devices.iter().map(|d| d.replica.device()).collect();
    assert_eq!(ids.len(), c.devices.len(), "every device has its own id");
}

/// Largest bytes a test reads back from the medium.
const READ_CAP: u64 = 64 << 20;

/// A read of the medium's raw bytes, retried while the medium's own faults refuse it.
async fn raw_read(raw: &dyn Transport, device: &DeviceId, name: &str) -> Vec<u8> {
    let mut last = None;
    for _ in 0..30 {
        match raw.read(device, name, READ_CAP).await {
            Ok(bytes) => return bytes,
            Err(e) => last = Some(e),
        }
    }
    panic!("reading {name}: {last:?}");
}

/// A delete on the medium, retried while the medium's own faults refuse it.
async fn raw_delete(raw: &dyn Transport, device: &DeviceId, name: &str) {
    let mut last = None;
    for _ in 0..30 {
        match raw.delete(device, name).await {
            Ok(()) => return,
            Err(e) => last = Some(e),
        }
    }
    panic!("deleting {name}: {last:?}");
}

/// Runs the own-folder check until `done` holds: on a plain medium within a few checks (one
/// that publishes, one that finds it covered); under the fault
/// layer (listings that miss files, partial reads) a few times, as the run loop would.
async fn check_own_until<B: Backend>(
    c: &Cluster<B>,
    i: usize,
    env: Env,
    mut done: impl FnMut(&onefolder_core::OwnFolderCheck, DeviceId) -> bool,
) -> onefolder_core::OwnFolderCheck {
    let tries = if env.faults.is_some() { 30 } else { 3 };
    let mut last = None;
    for _ in 0..tries {
        match c.dev(i).replica.check_own_folder().await {
            Ok(check) if done(&check, c.dev(i).replica.device()) => return check,
            Ok(check) => last = Some(Ok(check)),
            Err(e) => last = Some(Err(e)),
        }
    }
    panic!("device {i}: the own-folder check never did it: {last:?}");
}

/// Two copies of one local state (a restored disk image) flush the same seq before the cloud
/// settles: the sync client keeps the copy's write under the canonical name and the original's
/// as a conflict copy. Each finds a segment in its own folder that it did not write, takes a
/// new device id, and gets the other's edits from the old folder: nothing is lost anywhere.
pub async fn clone_race_conflict_copy_is_ingested<B: Backend>(env: Env) {
    let (mut c, _loc) = cluster_with_location::<B>(env, 2).await;
    let before = c.lib(0).create_tag(None, "Before the copy", None).unwrap();
    c.sync_all().await;
    // Set up without faults (a reopen under faults may publish a snapshot, and the seqs of
    // the two copies would no longer meet); the copies then find each other under faults.
    c.set_faults(false);
    let original = c.dev(0).replica.device();
    let image = c.copy_state(0).await;
    let copy = c.open_copy(image).await;
    assert_eq!(c.dev(copy).replica.device(), original, "nothing tells them apart yet");

    let by_original = c.lib(0).create_tag(None, "Written by the original", None).unwrap();
    let seq = c.dev(0).replica.flush().await.unwrap().unwrap().seq;
    // The sync client renames the original's write into a conflict copy, then the copy's own
    // write of the same seq lands under the canonical name.
    let raw = c.medium.open();
    let name = names::delta_name(seq);
    let bytes = raw_read(raw.as_ref(), &original, &name).await;
    raw_delete(raw.as_ref(), &original, &name).await;
    let conflict = format!("{seq:020}.sync-conflict-20261202-101010-ABCDEFG.seg");
    assert!(c.medium.plant(&original.to_string(), &conflict, &bytes).await);
    let by_copy = c.lib(copy).create_tag(None, "Written by the copy", None).unwrap();
    assert_eq!(c.dev(copy).replica.flush().await.unwrap().unwrap().seq, seq, "the same seq, accepted by the disk");
    c.set_faults(true);

    for i in [0, copy] {
        let check = check_own_until(&c, i, env, |_, device| device != original).await;
        assert!(!check.foreign.is_empty(), "{check:?}");
    }
    assert_ne!(c.dev(0).replica.device(), c.dev(copy).replica.device());
    c.sync_all().await;
    c.assert_converged();
    for d in 0..c.devices.len() {
        let tags = c.lib(d).tags().unwrap();
        for t in [&before, &by_original, &by_copy] {
            assert!(tags.contains_key(t), "device {d} lacks tag {t}");
        }
    }
    let ids: BTreeSet<DeviceId> = c.devices.iter().map(|d| d.replica.device()).collect();
    assert_eq!(ids.len(), c.devices.len(), "every device has its own id");
}

/// Own segments emptied, truncated or deleted on the medium (by a sync client, a user or a
/// conflict resolution) before a peer read them: the next check publishes the document again
/// as a snapshot segment, the peer gets every edit, and a further check publishes nothing.
/// A conflict copy of its `device.json` is removed.
pub async fn damaged_own_segments_are_published_again<B: Backend>(env: Env) {
    let (mut c, _loc) = cluster_with_location::<B>(env, 2).await;
    let me = c.dev(0).replica.device();
    let raw = c.medium.open();
    let mut edits = Vec::new();
    for (k, how) in ["emptied", "truncated", "deleted"].into_iter().enumerate() {
        edits.push(c.lib(0).create_tag(None, &format!("Edit {k}, {how}"), None).unwrap());
        let seq = c.dev(0).replica.flush().await.unwrap().unwrap().seq;
        let name = names::delta_name(seq);
        let bytes = raw_read(raw.as_ref(), &me, &name).await;
        raw_delete(raw.as_ref(), &me, &name).await;
        match how {
            "emptied" => assert!(c.medium.plant(&me.to_string(), &name, &[]).await),
            "truncated" => assert!(c.medium.plant(&me.to_string(), &name, &bytes[..bytes.len() / 2]).await),
            _ => {}
        }
    }
    // The peer meets the damaged segments first.
    c.ingest(1).await;
    // A stale conflict copy of its device.json, too: only this device writes device.json.
    let device_copy = "device.sync-conflict-20261202-101010-ABCDEFG.json";
    assert!(c.medium.plant(&me.to_string(), device_copy, br#"{"name":"old name"}"#).await);
    // The next process checks at open (the old transport may still remember its writes).
    c.restart_process(0).await;
    // Under faults that check may have missed something; the run loop checks again later.
    let mut published = false;
    check_own_until(&c, 0, env, |check, _| {
        published |= check.republished.is_some();
        published && check.damaged.is_empty() && check.foreign.is_empty()
    })
    .await;
    assert_eq!(c.dev(0).replica.device(), me, "damage is not a clone");
    if env.faults.is_none() {
        // (Under faults the medium's own listings may lag.)
        let listed = c.medium.open().list(&me).await.unwrap();
        let snapshots = listed.iter().filter(|f| f.name.starts_with("snap-")).count();
        assert_eq!(snapshots, 1, "one snapshot, published once: {listed:?}");
        assert!(listed.iter().all(|f| f.name != device_copy), "the stale copy is removed: {listed:?}");
    }
    c.sync_all().await;
    c.assert_converged();
    let tags = c.lib(1).tags().unwrap();
    for t in &edits {
        assert!(tags.contains_key(t), "the peer lacks {t}");
    }
    if env.faults.is_none() {
        // What the snapshot covers needs no retry: the warnings about the damaged files are
        // over. (The fault layer plants damaged files of its own.)
        let folder = me.to_string();
        let warnings: Vec<_> = c.dev(1).replica.status().warnings.into_iter().filter(|w| w.folder == folder).collect();
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

/// A library.json naming another engine, a newer or older format or garbage: opening refuses
/// with a clear error and writes nothing.
pub async fn unusable_manifest_is_refused<B: Backend>(_env: Env) {
    let format_1 = format!(
        r#"{{"library_id":"6f1c2a4e-2b1f-4c3a-9d7e-0a1b2c3d4e5f","engine":"{}","format_version":1,"created_ms":0}}"#,
        B::E::engine().engine_id()
    );
    let cases: [(&[u8], &str); 4] = [
        (br#"{"library_id":"6f1c2a4e-2b1f-4c3a-9d7e-0a1b2c3d4e5f","engine":"other","format_version":2,"created_ms":0}"#, "engine"),
        (format_1.as_bytes(), "export --output FILE"),
        (br#"{"library_id":"6f1c2a4e-2b1f-4c3a-9d7e-0a1b2c3d4e5f","engine":"x","format_version":99,"created_ms":0}"#, "newer"),
        (b"\x00\x01 not json", "not valid"),
    ];
    for (manifest, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let medium = B::T::medium(tmp.path()).await;
        let transport = medium.open();
        assert!(transport.create_manifest(manifest).await.unwrap());
        let err = onefolder_core::Replica::open(
            B::E::engine(),
            B::S::open(&tmp.path().join("state")),
            transport.clone(),
            test_config("refused"),
        )
        .await
        .expect_err("an unusable manifest is refused");
        let text = err.to_string();
        assert!(text.contains(expected), "{text:?} should mention {expected:?}");
        assert!(transport.list_devices().await.unwrap().is_empty(), "nothing written");
    }
}

/// A segment header claiming a payload far over the cap is rejected before anything is
/// allocated or read beyond the file.
pub async fn huge_length_claim_is_skipped<B: Backend>(env: Env) {
    bad_input::<B>(env, "limit", |lib, fake, _| {
        let mut bytes = segment_for::<B>(lib, fake, None, "Planted");
        bytes[72..76].copy_from_slice(&u32::MAX.to_le_bytes());
        // Recompute the header checksum so that only the length claim is wrong.
        let crc = crc32fast::hash(&bytes[..segment::HEADER_LEN - 4]);
        bytes[segment::HEADER_LEN - 4..segment::HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        Planted { bytes, repaired: None }
    })
    .await;
}

/// Folder names that are not device ids (`..`, junk) are never read from; the real peers
/// still sync. (A symbolic link out of the library is the folder adapter's own test.)
pub async fn hostile_folder_names_are_ignored<B: Backend>(env: Env) {
    let c = Cluster::<B>::start(env, 2).await;
    let library = c.dev(0).replica.manifest().library_id;
    let seg = segment_for::<B>(library, DeviceId::random(), None, "Planted");
    // Planted directly on the medium: folder names no device has, and names a file system
    // cannot even hold (the medium says so).
    let mut planted = 0;
    for folder in ["not-a-device", "..", "Icon\r", "desktop.ini", ""] {
        planted += usize::from(c.medium.plant(folder, &names::delta_name(1), &seg).await);
    }
    assert!(planted >= 3, "every medium holds ordinary folder names");
    c.lib(0).create_tag(None, "Real", None).unwrap();
    c.sync_all().await;
    c.assert_converged();
    let lib = c.lib(1);
    assert!(lib.tag_by_path("Real").unwrap().is_some());
    assert!(lib.tag_by_path("Planted").unwrap().is_none(), "nothing from a hostile folder was applied");
}

fn skewed_config(name: &str) -> ReplicaConfig {
    const HOUR: i64 = 3_600_000;
    let clock = match name {
        // Five hours behind.
        "device-1" => Clock::from_fn(|| onefolder_core::manifest::now_ms() - 5 * HOUR),
        // Three hours ahead, and running backwards by a minute at every reading.
        "device-2" => {
            let t = std::sync::atomic::AtomicI64::new(onefolder_core::manifest::now_ms() + 3 * HOUR);
            Clock::from_fn(move || t.fetch_sub(60_000, std::sync::atomic::Ordering::SeqCst))
        }
        _ => Clock::system(),
    };
    ReplicaConfig { clock, ..test_config(name) }
}

/// Devices whose clocks differ by hours, or run backwards, converge to the same result, and
/// a causally later edit wins even when its clock says it is older: correctness never depends
/// on wall-clock time.
pub async fn clock_skew_does_not_matter<B: Backend>(env: Env) {
    let c = Cluster::<B>::build(env, 3, skewed_config, |_, t| t).await;
    let loc = c.lib(0).add_location("Library", Some("")).unwrap();
    let t = c.lib(0).create_tag(None, "Original", None).unwrap();
    let f = c.lib(0).upsert_file(&loc, "a.jpg", &meta(1)).unwrap();
    c.sync_all().await;
    // Each rename is made after seeing the previous one, on ever "older" clocks.
    c.lib(1).rename_tag(&t, "Second").unwrap();
    c.sync_all().await;
    c.lib(2).rename_tag(&t, "Third").unwrap();
    c.lib(2).assign(&f, &t).unwrap();
    c.sync_all().await;
    c.lib(1).unassign(&f, &t).unwrap();
    c.sync_all().await;
    // Concurrent edits on all three.
    for i in 0..3 {
        c.lib(i).create_tag(Some(&t), &format!("child {i}"), None).unwrap();
        c.lib(i).set_tag_color(&t, Some(["red", "green", "blue"][i])).unwrap();
    }
    c.sync_all().await;
    c.assert_converged();
    let tag = &c.lib(0).tags().unwrap()[&t];
    assert_eq!(tag.name, "Third", "the causally last rename wins, whatever its clock said");
    assert!(!c.lib(0).file(&f).unwrap().unwrap().tags.contains(&t), "the causally last unassign wins");
    assert_eq!(c.lib(0).files_with_tag(&t, true).unwrap().len(), 0);
    assert_eq!(c.lib(0).tag_tree().unwrap()[0].children.len(), 3);
}

/// One library, two ways in: devices on this medium's API and a device on the folder
/// transport over the directory the medium serves ([`Medium::library_dir`](crate::Medium)),
/// as when one computer runs the provider's desktop client and another talks to its API.
/// Their segments land in one layout, and they converge — also after a restart of each.
#[cfg(feature = "folder")]
pub async fn folder_and_api_devices_share_a_library<B: Backend>(env: Env) {
    use crate::Medium;
    let (mut c, loc) = cluster_with_location::<B>(env, 2).await;
    let dir = c.medium.library_dir().expect("this medium serves a directory on disk");
    let folder = crate::factories::FolderMedium { library: dir.clone() }.open();
    let f = c.add_device(folder).await;
    c.sync_all().await;
    let cats = c.lib(0).create_tag_path("Animals/Cats", Some("orange")).unwrap();
    let tom = c.lib(0).upsert_file(&loc, "pets/tom.jpg", &meta(100)).unwrap();
    c.lib(0).assign(&tom, &cats).unwrap();
    let places = c.lib(f).create_tag_path("Places", None).unwrap();
    let rome = c.lib(f).upsert_file(&loc, "trips/rome.jpg", &meta(200)).unwrap();
    c.lib(f).assign(&rome, &places).unwrap();
    c.sync_all().await;
    c.lib(1).rename_tag(&cats, "Cats & kittens").unwrap();
    c.lib(f).set_tag_color(&cats, Some("black")).unwrap();
    c.sync_all().await;
    c.assert_converged();
    // The API devices' segments are plain files in the folder layout.
    let database = dir.join("onefolder_tags").join("database");
    for i in 0..2 {
        let own = database.join(c.dev(i).replica.device().to_string());
        assert!(
            own.join(names::delta_name(1)).is_file(),
            "device {i} has no {} in {}",
            names::delta_name(1),
            own.display()
        );
    }
    assert!(dir.join("onefolder_tags").join(names::MANIFEST_FILE).is_file());
    let tags = c.lib(1).tags().unwrap();
    assert_eq!(tags[&cats].name, "Cats & kittens");
    assert_eq!(tags[&cats].color.as_deref(), Some("black"));
    assert_eq!(c.lib(1).files_with_tag(&places, false).unwrap().len(), 1);
    for i in [0, f] {
        c.restart(i).await;
    }
    c.lib(f).set_tag_color(&places, Some("blue")).unwrap();
    c.sync_all().await;
    let export = c.assert_converged();
    assert!(export.contains("blue"));
}

/// A clock the test moves forward, and replica settings that compact the own folder after
/// `max_segments` deltas and keep what a snapshot covers for an hour of that clock.
fn tidy_config(ahead_ms: Arc<std::sync::atomic::AtomicI64>) -> impl Fn(&str) -> ReplicaConfig + Send + Sync {
    move |name| {
        let ahead = ahead_ms.clone();
        ReplicaConfig {
            clock: Clock::from_fn(move || {
                onefolder_core::manifest::now_ms() + ahead.load(std::sync::atomic::Ordering::SeqCst)
            }),
            folder: onefolder_core::FolderCompaction {
                max_segments: 100,
                grace: Duration::from_secs(3600),
                ..onefolder_core::FolderCompaction::default()
            },
            ..test_config(name)
        }
    }
}

/// Bytes and files in device `i`'s own folder on the medium.
async fn own_folder_size<B: Backend>(c: &Cluster<B>, i: usize) -> (u64, usize) {
    let listed = c.dev(i).transport.list(&c.dev(i).replica.device()).await.expect("list own folder");
    let segments: Vec<_> = listed.iter().filter(|f| names::SegmentName::parse(&f.name).is_some()).collect();
    (segments.iter().map(|f| f.size).sum(), segments.len())
}

/// The shared folder stops growing: after 10 000 edits in 500 flushes, and once the grace
/// period has passed, the editing device's folder holds its newest snapshot and what followed
/// it — a small multiple of one snapshot — and a peer's store folds the applied records the
/// snapshot covers. A device offline the whole time (every delta it never read is gone) and a
/// device that joins afterwards converge from the snapshot; a restart finds nothing missing.
pub async fn folder_stays_bounded_and_an_offline_device_converges<B: Backend>(env: Env) {
    let ahead = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut c = Cluster::<B>::build(env, 3, tidy_config(ahead.clone()), |_, t| t).await;
    let loc = c.lib(0).add_location("Library", Some("")).unwrap();
    let tags: Vec<String> = (0..20).map(|k| c.lib(0).create_tag(None, &format!("tag {k}"), None).unwrap()).collect();
    c.sync_all().await;
    // Device 2 goes offline. Device 0 makes 10 000 edits, 20 per flush; device 1 follows.
    let colors = ["red", "green", "blue", "orange"];
    let mut edits = 0;
    for round in 0..500usize {
        let files: Vec<String> = c
            .lib(0)
            .in_batch(|lib| {
                (0..5).map(|k| lib.upsert_file(&loc, &format!("r{round}/{k}.jpg"), &meta(round as i64))).collect()
            })
            .unwrap();
        c.lib(0)
            .in_batch(|lib| {
                for (k, f) in files.iter().enumerate() {
                    lib.assign(f, &tags[(round + k) % tags.len()])?;
                }
                for k in 0..10 {
                    lib.set_tag_color(&tags[(round + k) % tags.len()], Some(colors[(round + k) % colors.len()]))?;
                }
                Ok(())
            })
            .unwrap();
        edits += 20;
        flushed_seq(&c, 0).await;
        if round % 50 == 49 {
            c.ingest(1).await;
        }
    }
    assert_eq!(edits, 10_000);
    c.sync_some(&[0, 1]).await;
    let before = own_folder_size(&c, 0).await;
    let waiting = c.dev(0).replica.tidy_own_folder().await.unwrap();
    assert_eq!(waiting.deleted, 0, "nothing goes inside the grace period: {waiting:?}");
    assert!(waiting.snapshot.is_some() && waiting.waiting > 0, "{waiting:?}");
    assert_eq!(own_folder_size(&c, 0).await, before);

    ahead.store(2 * 3_600_000, std::sync::atomic::Ordering::SeqCst);
    let tidy = c.dev(0).replica.tidy_own_folder().await.unwrap();
    assert!(tidy.deleted > 0, "{tidy:?}");
    let snapshot = tidy.snapshot.unwrap();
    let snapshot_name = names::snapshot_name(snapshot);
    let listed = c.dev(0).transport.list(&c.dev(0).replica.device()).await.unwrap();
    let snapshot_bytes = listed.iter().find(|f| f.name == snapshot_name).expect("the newest snapshot stays").size;
    let (bytes, files) = own_folder_size(&c, 0).await;
    assert!(
        bytes <= 3 * snapshot_bytes.max(16 << 10),
        "{bytes} B in {files} files, the snapshot is {snapshot_bytes} B"
    );
    assert!(files <= 1 + 100, "{files} files");
    assert!(before.0 > 2 * bytes, "tidying shrank the folder: {before:?} -> {bytes} B");
    let again = c.dev(0).replica.tidy_own_folder().await.unwrap();
    assert_eq!(again.deleted, 0, "{again:?}");

    // Device 1 read every delta; its applied records of device 0 are folded.
    let peer0 = c.dev(0).replica.device();
    let records = c.dev(1).replica.status().peers[&peer0].segments;
    assert!(records < 100, "device 1 keeps {records} applied records of device 0");

    // Device 2 returns: it reads the snapshot and what followed, not the deleted deltas.
    let back = c.dev(2).replica.ingest().await.unwrap();
    assert!(back.reads <= files + 2, "{back:?} for {files} files of device 0");
    assert_eq!(back.skipped, 0, "{back:?}");
    c.sync_all().await;
    let export = c.assert_converged();
    assert_eq!(c.lib(2).files().unwrap().len(), 2500);

    // A new device joins from the snapshots.
    let joined = c.add_device(c.medium.open()).await;
    let join = c.dev(joined).replica.ingest().await.unwrap();
    assert!(join.reads <= files + 4, "{join:?}");
    c.sync_all().await;
    assert_eq!(c.assert_converged(), export);

    // A restart neither finds own segments missing nor publishes anything again.
    c.restart_process(0).await;
    let check = c.dev(0).replica.check_own_folder().await.unwrap();
    assert!(check.damaged.is_empty() && check.republished.is_none(), "{check:?}");
    c.lib(0).rename_tag(&tags[0], "after the tidy").unwrap();
    c.sync_all().await;
    let export = c.assert_converged();
    assert!(export.contains("after the tidy"));
}
