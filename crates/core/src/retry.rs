//! [`RetryLayer`]: a [`Transport`] layer that retries what [`TransportError::is_retryable`]
//! calls retryable, with exponential backoff and jitter, honouring a provider's
//! `retry_after`, within a bounded number of attempts and a bounded total delay per call.
//!
//! It sits over any transport (a remote API above all), as OpenDAL's `RetryLayer` does over a
//! service. What it cannot absorb within its bounds reaches the caller, whose run loop backs
//! off for longer ([`Replica::run`](crate::Replica::run)). Retrying a create-only write is
//! safe: when an earlier attempt did land, the retry fails with `AlreadyExists` and the
//! replica reads the file back to tell its own bytes from another writer's.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::DeviceId;
use crate::transport::{
    Capabilities, ChangeCursor, ChangeSet, ChangeStream, FileEntry, Transport, TransportError, WriteMode,
};

/// How a [`RetryLayer`] retries one call.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; each further retry doubles it.
    pub first_delay: Duration,
    /// Longest delay between two attempts (a longer `retry_after` gives up instead).
    pub max_delay: Duration,
    /// Longest total delay spent on one call; a retry that would exceed it is not made.
    pub max_total: Duration,
    /// Shorten each delay by up to this fraction at random (0.0 = none), so that clients that
    /// failed together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts, 250 ms doubling to at most 8 s, 20 s in all, a quarter of jitter.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_total: Duration::from_secs(20),
            jitter: 0.25,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based) after `error`, or `None` when the
    /// policy gives up (`spent` is the delay already spent on this call).
    pub fn delay(&self, retry: u32, error: &TransportError, spent: Duration) -> Option<Duration> {
        if !error.is_retryable() || retry >= self.max_attempts.max(1) {
            return None;
        }
        let exp = self.first_delay.saturating_mul(1u32 << (retry - 1).min(20)).min(self.max_delay);
        let jitter = if self.jitter > 0.0 {
            (uuid::Uuid::new_v4().as_u128() as u64 % 10_000) as f64 / 10_000.0 * self.jitter.min(1.0)
        } else {
            0.0
        };
        let mut delay = exp.mul_f64(1.0 - jitter);
        if let TransportError::RateLimited { retry_after: Some(wait) } = error {
            if *wait > self.max_delay {
                return None;
            }
            delay = delay.max(*wait);
        }
        (spent + delay <= self.max_total).then_some(delay)
    }
}

/// Counts of a [`RetryLayer`].
#[derive(Debug, Default)]
struct Counters {
    retries: AtomicU64,
    gave_up: AtomicU64,
}

/// The retrying layer over any transport.
pub struct RetryLayer {
    inner: Arc<dyn Transport>,
    policy: RetryPolicy,
    counters: Counters,
}

impl RetryLayer {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Transport>, policy: RetryPolicy) -> Arc<Self> {
        Arc::new(Self { inner, policy, counters: Counters::default() })
    }

    /// Retries made so far (attempts after the first, over every call).
    pub fn retries(&self) -> u64 {
        self.counters.retries.load(Ordering::Relaxed)
    }

    /// Calls that still failed with a retryable error after the policy gave up.
    pub fn gave_up(&self) -> u64 {
        self.counters.gave_up.load(Ordering::Relaxed)
    }

    async fn retry<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<T, TransportError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let mut spent = Duration::ZERO;
        let mut retry = 1;
        loop {
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let Some(delay) = self.policy.delay(retry, &error, spent) else {
                if error.is_retryable() {
                    self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
                }
                return Err(error);
            };
            tracing::debug!(op, retry, ?delay, error = %error, "retrying");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            spent += delay;
            retry += 1;
        }
    }
}

#[async_trait]
impl Transport for RetryLayer {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.retry("read_manifest", || self.inner.read_manifest()).await
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.retry("create_manifest", || self.inner.create_manifest(bytes)).await
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.retry("list_devices", || self.inner.list_devices()).await
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        self.retry("list", || self.inner.list(device)).await
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        self.retry("read", || self.inner.read(device, name, cap)).await
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.retry("write", || self.inner.write(device, name, bytes, mode)).await
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.retry("delete", || self.inner.delete(device, name)).await
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.retry("changes", || self.inner.changes()).await
    }

    async fn changes_since(
        &self,
        cursor: Option<&ChangeCursor>,
        skip: Option<&DeviceId>,
    ) -> Result<ChangeSet, TransportError> {
        self.retry("changes_since", || self.inner.changes_since(cursor, skip)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;
    use crate::memory::MemoryTransport;
    use crate::transport::TransportExt;

    /// A transport whose `read`s fail with the scripted errors first, then succeed.
    struct Scripted {
        inner: MemoryTransport,
        failures: Mutex<Vec<TransportError>>,
        calls: AtomicU64,
    }

    #[async_trait]
    impl Transport for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
            self.inner.read_manifest().await
        }
        async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
            self.inner.create_manifest(bytes).await
        }
        async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
            self.inner.list_devices().await
        }
        async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
            self.inner.list(device).await
        }
        async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.failures.lock().unwrap().pop();
            match next {
                Some(e) => Err(e),
                None => self.inner.read(device, name, cap).await,
            }
        }
        async fn write(&self, d: &DeviceId, n: &str, b: &[u8], m: WriteMode) -> Result<(), TransportError> {
            self.inner.write(d, n, b, m).await
        }
        async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
            self.inner.delete(device, name).await
        }
        async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
            self.inner.changes().await
        }
    }

    const NO_JITTER: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_total: Duration::from_secs(5),
        jitter: 0.0,
    };

    /// A layer over a medium holding one file, whose reads fail with `failures` (last first).
    async fn setup(failures: Vec<TransportError>, policy: RetryPolicy) -> (Arc<Scripted>, Arc<RetryLayer>, DeviceId) {
        let device = DeviceId::random();
        let inner = MemoryTransport::new();
        inner.create(&device, "f.seg", b"bytes").await.unwrap();
        let scripted = Arc::new(Scripted { inner, failures: Mutex::new(failures), calls: AtomicU64::new(0) });
        let layer = RetryLayer::new(scripted.clone(), policy);
        (scripted, layer, device)
    }

    fn transient() -> TransportError {
        TransportError::Transient("down".into())
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_with_doubling_delays() {
        let (inner, layer, dev) = setup(vec![transient(), transient(), transient()], NO_JITTER).await;
        let start = Instant::now();
        assert_eq!(layer.read(&dev, "f.seg", 100).await.unwrap(), b"bytes");
        assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 400));
        assert_eq!((inner.calls.load(Ordering::SeqCst), layer.retries(), layer.gave_up()), (4, 3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after() {
        let limited = TransportError::RateLimited { retry_after: Some(Duration::from_millis(1500)) };
        let (_, layer, dev) = setup(vec![limited], NO_JITTER).await;
        let start = Instant::now();
        layer.read(&dev, "f.seg", 100).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        // A provider that asks for more than the longest delay is left to the caller's backoff.
        let long = TransportError::RateLimited { retry_after: Some(Duration::from_secs(60)) };
        let (inner, layer, dev) = setup(vec![long], NO_JITTER).await;
        let start = Instant::now();
        assert!(matches!(layer.read(&dev, "f.seg", 100).await, Err(TransportError::RateLimited { .. })));
        assert_eq!((start.elapsed(), inner.calls.load(Ordering::SeqCst), layer.gave_up()), (Duration::ZERO, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_max_total() {
        let (inner, layer, dev) = setup((0..10).map(|_| transient()).collect(), NO_JITTER).await;
        let start = Instant::now();
        assert!(matches!(layer.read(&dev, "f.seg", 100).await, Err(TransportError::Transient(_))));
        assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
        assert_eq!(start.elapsed(), Duration::from_millis(100 + 200 + 400 + 800));
        assert_eq!((layer.retries(), layer.gave_up()), (4, 1));

        let tight = RetryPolicy { max_total: Duration::from_millis(350), ..NO_JITTER };
        let (inner, layer, dev) = setup((0..10).map(|_| transient()).collect(), tight).await;
        let start = Instant::now();
        layer.read(&dev, "f.seg", 100).await.unwrap_err();
        assert_eq!((inner.calls.load(Ordering::SeqCst), start.elapsed()), (3, Duration::from_millis(300)));
    }

    #[tokio::test(start_paused = true)]
    async fn never_retries_what_is_not_retryable() {
        let (inner, layer, dev) = setup(vec![TransportError::NotFound("gone".into())], NO_JITTER).await;
        assert!(matches!(layer.read(&dev, "f.seg", 100).await, Err(TransportError::NotFound(_))));
        assert_eq!((inner.calls.load(Ordering::SeqCst), layer.retries(), layer.gave_up()), (1, 0, 0));
        let refused = TransportError::Unauthorized("sign in again".into());
        let (inner, layer, dev) = setup(vec![refused], NO_JITTER).await;
        assert!(matches!(layer.read(&dev, "f.seg", 100).await, Err(TransportError::Unauthorized(_))));
        assert_eq!((inner.calls.load(Ordering::SeqCst), layer.retries()), (1, 0));
    }

    #[test]
    fn jitter_only_shortens() {
        let policy = RetryPolicy { jitter: 0.5, ..NO_JITTER };
        for _ in 0..200 {
            let d = policy.delay(2, &transient(), Duration::ZERO).unwrap();
            assert!(d <= Duration::from_millis(200) && d >= Duration::from_millis(100), "{d:?}");
        }
    }
}
