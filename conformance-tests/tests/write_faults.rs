//! A shared medium that refuses, rate-limits or loses the reply of a device's own writes, for
//! every engine × store × transport. Device 0 writes through a [`FaultLayer`] with write
//! faults; device 1 reads the medium directly.
//!
//! The backoff checks run on tokio's paused clock (an injected clock: virtual time advances
//! only while every task waits), so they count attempts over ten minutes without sleeping.

use std::sync::Arc;
use std::time::Duration;

use onefolder_conformance::{Backend, Cluster, Env, test_config, wait_for};
use onefolder_core::fault::{FaultConfig, FaultLayer};
use onefolder_core::names;
use onefolder_core::{Clock, ReplicaConfig, RetryLayer, RetryPolicy};
use tokio::sync::Notify;

/// Generous virtual deadline for a condition on the paused clock.
const DEADLINE: Duration = Duration::from_secs(900);

/// Two devices; device 0 writes through a fault layer with `config`, returned too.
async fn cluster<B: Backend>(config: FaultConfig) -> (Cluster<B>, Arc<FaultLayer>) {
    Cluster::<B>::with_layer_on(Env::PLAIN, 2, 0, test_config, move |t| FaultLayer::new(t, config.clone())).await
}

fn is_segment(name: &str) -> bool {
    name.ends_with(".seg")
}

/// Runs device 0's sync loop until the returned notify fires.
fn run_device_0<B: Backend>(c: &Cluster<B>) -> (Arc<Notify>, tokio::task::JoinHandle<onefolder_core::Result<()>>) {
    let stop = Arc::new(Notify::new());
    let (replica, s) = (c.dev(0).replica.clone(), stop.clone());
    (stop, tokio::spawn(async move { replica.run(s.notified()).await }))
}

/// A device whose writes are all refused makes a handful of attempts in ten minutes (never a
/// busy loop), consumes one seq for its segment and none per retry, says so in `status`, and
/// publishes the pending edit under that seq once writes work again.
async fn persistent_refusal_backs_off<B: Backend>() {
    let (c, faults) = cluster::<B>(FaultConfig::write_faults(1, 1.0, 0.0, 0.0)).await;
    let seq = c.dev(0).replica.status().next_seq;
    let tag = c.lib(0).create_tag(None, "Waiting", None).unwrap();
    let (segments, all) = (faults.write_attempts_of(is_segment), faults.write_attempts());
    let (stop, run) = run_device_0(&c);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let attempts = faults.write_attempts_of(is_segment) - segments;
    // 1 s, 2 s, 4 s … (less up to a quarter of jitter): about ten in ten minutes.
    assert!((4..=14).contains(&attempts), "{attempts} segment write attempts in 10 minutes");
    // device.json, which the loop refreshes, backs off the same way.
    let others = faults.write_attempts() - all - attempts;
    assert!(others <= 14, "{others} other write attempts in 10 minutes");
    let status = c.dev(0).replica.status();
    assert_eq!(status.next_seq, seq + 1, "one seq for the segment, none per retry");
    assert_eq!(status.pending_edits, 1);
    let failure = status.flush_failure.expect("the failure is in status");
    assert!(failure.attempts as u64 >= attempts - 1 && failure.retry_in_ms > 0, "{failure:?}");

    faults.set_active(false);
    assert!(wait_for(DEADLINE, || c.dev(0).replica.status().last_flush.is_some()).await, "never flushed");
    let status = c.dev(0).replica.status();
    assert_eq!(status.last_flush.map(|f| f.seq), Some(seq), "published under the seq it had");
    assert_eq!((status.pending_edits, status.flush_failure), (0, None));
    stop.notify_one();
    run.await.unwrap().unwrap();
    c.dev(1).replica.ingest().await.unwrap();
    assert!(c.lib(1).tags().unwrap().contains_key(&tag));
}

/// A rate limit's `retry_after` (30 s here) is honoured: no attempt comes sooner.
async fn rate_limit_honours_retry_after<B: Backend>() {
    let (c, faults) = cluster::<B>(FaultConfig::write_faults(2, 0.0, 1.0, 0.0)).await;
    c.lib(0).create_tag(None, "Limited", None).unwrap();
    let before = faults.write_attempts_of(is_segment);
    let (stop, run) = run_device_0(&c);
    tokio::time::sleep(Duration::from_secs(125)).await;
    let attempts = faults.write_attempts_of(is_segment) - before;
    assert!((2..=5).contains(&attempts), "{attempts} attempts in 125 s with retry_after 30 s");
    faults.set_active(false);
    assert!(wait_for(DEADLINE, || c.dev(0).replica.status().pending_edits == 0).await, "never flushed");
    stop.notify_one();
    run.await.unwrap().unwrap();
}

/// A write that landed although the call failed is recognised on the retry: one content per
/// name, no new device id, and every edit reaches the peer.
async fn ambiguous_write_keeps_one_content<B: Backend>() {
    let (c, faults) = cluster::<B>(FaultConfig::write_faults(3, 0.0, 0.0, 1.0)).await;
    let (device, seq) = (c.dev(0).replica.device(), c.dev(0).replica.status().next_seq);
    let first = c.lib(0).create_tag(None, "First", None).unwrap();
    c.dev(0).replica.flush().await.expect_err("the reply was lost");
    let name = names::delta_name(seq);
    let landed = c.dev(1).transport.read(&device, &name, u64::MAX).await.expect("the segment landed");
    // An edit made before the retry goes into the next segment, not into this name.
    let second = c.lib(0).create_tag(None, "Second", None).unwrap();
    faults.set_active(false);
    assert_eq!(c.dev(0).replica.flush().await.unwrap().map(|f| f.seq), Some(seq));
    assert_eq!(c.dev(1).transport.read(&device, &name, u64::MAX).await.unwrap(), landed);
    assert_eq!(c.dev(0).replica.flush().await.unwrap().map(|f| f.seq), Some(seq + 1));
    assert_eq!(c.dev(0).replica.device(), device, "our own segment is not a clone's");
    c.dev(1).replica.ingest().await.unwrap();
    let tags = c.lib(1).tags().unwrap();
    assert!(tags.contains_key(&first) && tags.contains_key(&second));
    c.assert_converged();
}

/// Over a medium that refuses or loses the reply of a third of the writes, the retry layer
/// absorbs the faults: every flush succeeds, seqs follow one another, every edit arrives.
async fn retry_layer_absorbs_flaky_writes<B: Backend>() {
    let (c, retry) = Cluster::<B>::with_layer_on(Env::PLAIN, 2, 0, test_config, |t| {
        RetryLayer::new(FaultLayer::new(t, FaultConfig::write_faults(6, 0.2, 0.0, 0.15)), RetryPolicy::default())
    })
    .await;
    let first = c.dev(0).replica.status().next_seq;
    let mut tags = Vec::new();
    for k in 0..20u64 {
        tags.push(c.lib(0).create_tag(None, &format!("tag {k}"), None).unwrap());
        let flushed = c.dev(0).replica.flush().await.expect("the retry layer absorbs the faults");
        assert_eq!(flushed.map(|f| f.seq), Some(first + k));
    }
    assert!(retry.retries() > 0 && retry.gave_up() == 0, "{} retries, {} gave up", retry.retries(), retry.gave_up());
    c.dev(1).replica.ingest().await.unwrap();
    assert_eq!(c.lib(1).tags().unwrap().len(), tags.len());
    c.assert_converged();
}

/// The prepared segment survives a restart: a process that could not write it leaves it to
/// the next one, which publishes it under the same seq.
async fn prepared_segment_survives_restart<B: Backend>() {
    let (mut c, faults) = cluster::<B>(FaultConfig::write_faults(4, 1.0, 0.0, 0.0)).await;
    let seq = c.dev(0).replica.status().next_seq;
    let tag = c.lib(0).create_tag(None, "Across restarts", None).unwrap();
    c.dev(0).replica.flush().await.expect_err("refused");
    c.restart(0).await;
    c.dev(0).replica.flush().await.expect_err("still refused");
    assert_eq!(c.dev(0).replica.status().next_seq, seq + 1);
    faults.set_active(false);
    c.restart(0).await;
    assert_eq!(c.dev(0).replica.flush().await.unwrap().map(|f| f.seq), Some(seq));
    assert_eq!(c.dev(0).replica.flush().await.unwrap(), None, "nothing left to write");
    c.dev(1).replica.ingest().await.unwrap();
    assert!(c.lib(1).tags().unwrap().contains_key(&tag));
}

thread_local! {
    /// How far device clocks run ahead of the system clock, per test thread.
    static AHEAD_MS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The test settings, with a wall clock that [`AHEAD_MS`] moves forward.
fn clocked(name: &str) -> ReplicaConfig {
    let clock = Clock::from_fn(|| onefolder_core::manifest::now_ms() + AHEAD_MS.with(|a| a.get()));
    ReplicaConfig { clock, ..test_config(name) }
}

/// Opening, reading and idle syncs leave `device.json` alone; it is written again once its
/// last-seen time is older than `device_info_every` (6 h), at open or by the running loop.
async fn device_info_written_only_when_due<B: Backend>() {
    let (mut c, counter) = Cluster::<B>::with_layer_on(Env::PLAIN, 2, 0, clocked, |t| {
        FaultLayer::new(t, FaultConfig::write_faults(5, 0.0, 0.0, 0.0))
    })
    .await;
    let writes = || counter.write_attempts();
    let before = writes();
    c.restart(0).await;
    c.dev(0).replica.sync_once().await.unwrap();
    c.lib(0).tags().unwrap();
    assert_eq!(writes(), before, "no write on open, read or idle sync");

    AHEAD_MS.with(|a| a.set(7 * 3600 * 1000));
    c.restart(0).await;
    assert_eq!(writes(), before + 1, "written at open once its last-seen time is stale");
    c.restart(0).await;
    assert_eq!(writes(), before + 1);

    let (stop, run) = run_device_0(&c);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(writes(), before + 1, "an idle loop writes nothing");
    AHEAD_MS.with(|a| a.set(14 * 3600 * 1000));
    assert!(wait_for(DEADLINE, || writes() == before + 2).await, "the running loop refreshes it");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(writes(), before + 2, "once");
    stop.notify_one();
    run.await.unwrap().unwrap();
    let device = c.dev(0).replica.device();
    let bytes = c.dev(1).transport.read(&device, names::DEVICE_FILE, 1 << 20).await.unwrap();
    let info: onefolder_core::DeviceInfo = serde_json::from_slice(&bytes).unwrap();
    assert!(info.last_seen_ms >= onefolder_core::manifest::now_ms() + 13 * 3600 * 1000);
}

/// The checks for the combination `B` in scope.
macro_rules! write_faults {
    () => {
        #[tokio::test(start_paused = true)]
        async fn persistent_refusal_backs_off() {
            crate::persistent_refusal_backs_off::<B>().await;
        }
        #[tokio::test(start_paused = true)]
        async fn rate_limit_honours_retry_after() {
            crate::rate_limit_honours_retry_after::<B>().await;
        }
        #[tokio::test]
        async fn ambiguous_write_keeps_one_content() {
            crate::ambiguous_write_keeps_one_content::<B>().await;
        }
        #[tokio::test(start_paused = true)]
        async fn device_info_written_only_when_due() {
            crate::device_info_written_only_when_due::<B>().await;
        }
        #[tokio::test(start_paused = true)]
        async fn retry_layer_absorbs_flaky_writes() {
            crate::retry_layer_absorbs_flaky_writes::<B>().await;
        }
        #[tokio::test]
        async fn prepared_segment_survives_restart() {
            crate::prepared_segment_survives_restart::<B>().await;
        }
    };
}

onefolder_conformance::for_each_combination!(write_faults);
