//! Crash safety: a child process makes edits and flushes in a loop and is killed with SIGKILL
//! at random points, again and again. Every edit it acknowledged must be present when it
//! restarts and, after a sync, on a peer; the shared folder never shows a torn segment.
//!
//! `ONEFOLDER_CRASH_KILLS` sets the number of kills (default 100).

#![cfg(all(unix, feature = "yrs", feature = "sqlite", feature = "folder"))]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use onefolder_conformance::factories::{Folder, Sqlite, Yrs};
use onefolder_conformance::{EngineFactory, StoreFactory, TransportFactory, test_config};
use onefolder_core::segment::{self, Expect};
use onefolder_core::{Replica, names};
use onefolder_model::Library;

const CHILD_ENV: &str = "ONEFOLDER_CRASH_CHILD";
const TEST_NAME: &str = "acknowledged_edits_survive_sigkill";

async fn open(root: &Path, state: &str) -> Arc<Replica> {
    let transport = Folder::medium(root).await.open();
    let replica = Replica::open(Yrs::engine(), Sqlite::open(&root.join(state)), transport, test_config(state))
        .await
        .expect("open replica");
    Arc::new(replica)
}

/// The child: edit, acknowledge on stdout, flush every third edit; until killed.
fn child(root: &Path, start: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let replica = open(root, "state").await;
        let lib = Library::new(replica.clone());
        let mut out = std::io::stdout();
        for n in start..start + 100_000 {
            lib.create_tag(None, &format!("edit {n}"), None).expect("edit");
            writeln!(out, "ACK {n}").unwrap();
            out.flush().unwrap();
            if n % 3 == 0 {
                replica.flush().await.expect("flush");
            }
        }
    });
}

#[test]
fn acknowledged_edits_survive_sigkill() {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        let start = std::env::var("ONEFOLDER_CRASH_START").unwrap().parse().unwrap();
        child(Path::new(&root), start);
        return;
    }
    let kills: usize = std::env::var("ONEFOLDER_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("library")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked = BTreeSet::new();
    let mut next = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let target = 1 + rng % 12;
        let mut child = Command::new(&exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .env("ONEFOLDER_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < target {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(n) = line.strip_prefix("ACK ") {
                let n: u64 = n.parse().unwrap();
                acked.insert(n);
                next = n + 1;
                seen += 1;
            }
        }
        child.kill().unwrap();
        // Acknowledgements already in the pipe count too: they were printed after the commit.
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("ACK ") {
                let n: u64 = n.parse().unwrap();
                acked.insert(n);
                next = n + 1;
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child ran to completion instead of being killed");
        assert!(seen > 0, "the child acknowledged nothing before the kill (it failed to start?)");
    }
    eprintln!("{kills} kills survived, {} acknowledged edits", acked.len());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let replica = open(tmp.path(), "state").await;
        let tags: BTreeSet<String> =
            Library::new(replica.clone()).tags().unwrap().into_values().map(|t| t.name).collect();
        for n in &acked {
            assert!(tags.contains(&format!("edit {n}")), "acknowledged edit {n} lost locally");
        }
        replica.flush().await.unwrap();

        // No torn segment: every segment on the medium passes every check.
        let library = replica.manifest().library_id;
        let me = replica.device();
        let transport = replica.transport().clone();
        let files = transport.list(&me).await.unwrap();
        assert!(!files.is_empty());
        for f in files.iter().filter(|f| names::SegmentName::parse(&f.name).is_some()) {
            let bytes = transport.read(&me, &f.name, u64::MAX).await.unwrap();
            let expect = Expect { library, engine: "yrs", max_payload: segment::DEFAULT_MAX_PAYLOAD };
            segment::decode(&bytes, &expect).unwrap_or_else(|e| panic!("{} is torn: {e}", f.name));
        }

        let peer = open(tmp.path(), "peer").await;
        peer.ingest().await.unwrap();
        assert!(peer.status().warnings.is_empty(), "{:?}", peer.status().warnings);
        let on_peer: BTreeSet<String> =
            Library::new(peer.clone()).tags().unwrap().into_values().map(|t| t.name).collect();
        for n in &acked {
            assert!(on_peer.contains(&format!("edit {n}")), "acknowledged edit {n} never reached the peer");
        }
    });
}
