//! A fault-injecting [`Transport`] layer: what real sync clients do to a shared folder, on
//! demand and deterministically (seeded), so that every adapter is tested against the same
//! misbehaviour without a single special case inside an adapter.
//!
//! Injected (each with its own probability in [`FaultConfig`]):
//! - extra latency on every call, and listings in random order;
//! - listings that miss files (a sync client that has not finished downloading);
//! - segments visible while still partial (a read returns a prefix);
//! - 0-byte placeholders (online-only files on Drive / OneDrive / Dropbox);
//! - read errors: transient I/O and "the cloud file provider is not running";
//! - conflicted copies of segments under Dropbox / OneDrive / Syncthing names;
//! - case changes of names (case-insensitive providers);
//! - junk files and folders (`desktop.ini`, `.DS_Store`, `Icon\r`, `Thumbs.db`, `.dropbox.cache`);
//! - write faults (off in [`FaultConfig::chaos`], on in [`FaultConfig::write_faults`]): refused
//!   writes (a read-only folder, a full disk, a provider that is down), rate limits with a
//!   retry hint, and *ambiguous* writes, whose file becomes visible although the call fails.
//!
//! A write that is refused or rate-limited changes nothing on the medium. Turn the faults off
//! with [`FaultLayer::set_active`] and the layer is a plain pass-through.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::DeviceId;
use crate::names::SegmentName;
use crate::transport::{Capabilities, ChangeStream, FileEntry, Transport, TransportError, WriteMode};

/// Probabilities (0.0–1.0) and limits of each fault.
#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Seed of the deterministic random source.
    pub seed: u64,
    /// Largest extra latency per call.
    pub max_delay: Duration,
    /// A listed file is missing from a listing.
    pub list_miss: f64,
    /// A read of a segment returns only a prefix (still being written).
    pub partial: f64,
    /// A listed segment is a 0-byte placeholder (size 0, reads empty).
    pub placeholder: f64,
    /// A read fails with a transient error.
    pub read_error: f64,
    /// A listing of device folders fails with a transient error.
    pub list_error: f64,
    /// A segment also appears under a conflict-copy name (once created, it stays).
    pub duplicate: f64,
    /// A listed segment name appears with its case changed.
    pub case_change: f64,
    /// Junk files and folders appear beside the real ones.
    pub junk: bool,
    /// A write fails with a transient error and writes nothing.
    pub write_refuse: f64,
    /// A write fails with [`TransportError::RateLimited`] and writes nothing.
    pub write_rate_limit: f64,
    /// The `retry_after` of an injected rate limit.
    pub retry_after: Duration,
    /// A write lands, then the call fails with a transient error (its reply was lost).
    pub write_ambiguous: f64,
}

impl FaultConfig {
    /// Every fault at a rate that makes most passes hit several of them.
    pub fn chaos(seed: u64) -> Self {
        Self {
            seed,
            max_delay: Duration::from_millis(3),
            list_miss: 0.2,
            partial: 0.1,
            placeholder: 0.1,
            read_error: 0.1,
            list_error: 0.05,
            duplicate: 0.1,
            case_change: 0.1,
            junk: true,
            write_refuse: 0.0,
            write_rate_limit: 0.0,
            retry_after: Duration::from_secs(30),
            write_ambiguous: 0.0,
        }
    }

    /// Only write faults: each write is refused, rate-limited (retry after 30 s) or ambiguous
    /// with the given probabilities; reads and listings are clean.
    pub fn write_faults(seed: u64, refuse: f64, rate_limit: f64, ambiguous: f64) -> Self {
        Self {
            seed,
            max_delay: Duration::ZERO,
            list_miss: 0.0,
            partial: 0.0,
            placeholder: 0.0,
            read_error: 0.0,
            list_error: 0.0,
            duplicate: 0.0,
            case_change: 0.0,
            junk: false,
            write_refuse: refuse,
            write_rate_limit: rate_limit,
            retry_after: Duration::from_secs(30),
            write_ambiguous: ambiguous,
        }
    }
}

/// SplitMix64: tiny, fast and the same on every platform and version, which is what a
/// reproducible fault schedule needs.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const JUNK_FILES: &[&str] = &["desktop.ini", ".DS_Store", "Icon\r", "Thumbs.db"];
const JUNK_FOLDERS: &[&str] = &["desktop.ini", ".dropbox.cache", ".stversions"];
const JUNK_BYTES: &[u8] = b"[.ShellClassInfo]\r\nIconResource=C:\\Windows\\system32\\imageres.dll,-3\r\n";

/// What a name seen through the layer really is.
#[derive(Clone, Debug)]
enum Alias {
    /// A conflict copy or case variant of a real file.
    Of(String),
    /// A junk file that exists only in listings.
    Junk,
}

/// The fault-injecting layer over any transport.
pub struct FaultLayer {
    inner: Arc<dyn Transport>,
    config: FaultConfig,
    active: AtomicBool,
    rng: Mutex<SplitMix64>,
    aliases: Mutex<HashMap<(DeviceId, String), Alias>>,
    /// Conflict copies made so far, per real file (they persist, like real ones).
    copies: Mutex<BTreeMap<(DeviceId, String), String>>,
    /// Names of the write calls so far, faulted or not, in order.
    writes: Mutex<Vec<String>>,
}

impl FaultLayer {
    /// Wraps `inner`; faults are active from the start.
    pub fn new(inner: Arc<dyn Transport>, config: FaultConfig) -> Arc<Self> {
        let rng = SplitMix64(config.seed);
        Arc::new(Self {
            inner,
            config,
            active: AtomicBool::new(true),
            rng: Mutex::new(rng),
            aliases: Mutex::default(),
            copies: Mutex::default(),
            writes: Mutex::default(),
        })
    }

    /// Write calls made through this layer so far (attempts, faulted or not).
    pub fn write_attempts(&self) -> u64 {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
    }

    /// Write calls so far whose file name satisfies `which` (e.g. segments only).
    pub fn write_attempts_of(&self, which: impl Fn(&str) -> bool) -> u64 {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|n| which(n)).count() as u64
    }

    /// Turns the faults on or off. Off, the layer passes everything through, except that
    /// conflict copies already made stay visible (as real ones would).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::SeqCst);
    }

    /// Whether faults are on.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn roll(&self, p: f64) -> bool {
        self.is_active() && self.rng.lock().unwrap_or_else(|e| e.into_inner()).chance(p)
    }

    fn pick(&self, n: u64) -> u64 {
        self.rng.lock().unwrap_or_else(|e| e.into_inner()).below(n)
    }

    async fn delay(&self) {
        if self.is_active() && !self.config.max_delay.is_zero() {
            let max = self.config.max_delay.as_micros() as u64;
            tokio::time::sleep(Duration::from_micros(self.pick(max + 1))).await;
        }
    }

    fn conflict_name(&self, name: &str) -> String {
        let stem = name.strip_suffix(".seg").unwrap_or(name);
        match self.pick(3) {
            0 => format!("{stem} (Laptop's conflicted copy 2026-11-25).seg"),
            1 => format!("{stem}-DESKTOP-7Q2.seg"),
            _ => format!("{stem}.sync-conflict-20261125-101010-ABCDEFG.seg"),
        }
    }

    fn resolve(&self, device: &DeviceId, name: &str) -> Option<Alias> {
        self.aliases.lock().unwrap_or_else(|e| e.into_inner()).get(&(*device, name.to_owned())).cloned()
    }

    fn alias(&self, device: DeviceId, name: String, alias: Alias) {
        self.aliases.lock().unwrap_or_else(|e| e.into_inner()).insert((device, name), alias);
    }
}

#[async_trait]
impl Transport for FaultLayer {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The inner transport's, but changes are found by listing through this layer, and the
    /// copies and junk it makes up have no version.
    fn capabilities(&self) -> Capabilities {
        Capabilities { changes_feed: false, versions: false, ..self.inner.capabilities() }
    }

    async fn read_manifest(&self) -> Result<Option<Vec<u8>>, TransportError> {
        self.delay().await;
        self.inner.read_manifest().await
    }

    async fn create_manifest(&self, bytes: &[u8]) -> Result<bool, TransportError> {
        self.inner.create_manifest(bytes).await
    }

    async fn list_devices(&self) -> Result<Vec<String>, TransportError> {
        self.delay().await;
        if self.roll(self.config.list_error) {
            return Err(TransportError::Transient("the cloud file provider is not running".into()));
        }
        let mut folders = self.inner.list_devices().await?;
        if self.is_active() && self.config.junk {
            folders.extend(JUNK_FOLDERS.iter().map(|s| s.to_string()));
        }
        Ok(folders)
    }

    async fn list(&self, device: &DeviceId) -> Result<Vec<FileEntry>, TransportError> {
        self.delay().await;
        let real = self.inner.list(device).await?;
        let mut out = Vec::with_capacity(real.len() + 4);
        for file in real {
            let segment = SegmentName::parse(&file.name).is_some_and(|n| !n.variant);
            if segment && self.roll(self.config.duplicate) {
                let copy = self.conflict_name(&file.name);
                self.alias(*device, copy.clone(), Alias::Of(file.name.clone()));
                self.copies.lock().unwrap_or_else(|e| e.into_inner()).insert((*device, file.name.clone()), copy);
            }
            if let Some(copy) = self.copies.lock().unwrap_or_else(|e| e.into_inner()).get(&(*device, file.name.clone()))
            {
                out.push(FileEntry::new(copy.clone(), file.size));
            }
            if self.roll(self.config.list_miss) {
                continue;
            }
            if segment && self.roll(self.config.placeholder) {
                out.push(FileEntry::new(file.name, 0));
                continue;
            }
            if segment && self.roll(self.config.case_change) {
                let upper = format!("{}.SEG", file.name.strip_suffix(".seg").unwrap_or(&file.name));
                self.alias(*device, upper.clone(), Alias::Of(file.name.clone()));
                out.push(FileEntry::new(upper, file.size));
                continue;
            }
            out.push(file);
        }
        if self.is_active() {
            if self.config.junk {
                for junk in JUNK_FILES {
                    self.alias(*device, junk.to_string(), Alias::Junk);
                    out.push(FileEntry::new(junk.to_string(), JUNK_BYTES.len() as u64));
                }
            }
            // Listings come in no particular order.
            for i in (1..out.len()).rev() {
                let j = self.pick(i as u64 + 1) as usize;
                out.swap(i, j);
            }
        }
        Ok(out)
    }

    async fn read(&self, device: &DeviceId, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        self.delay().await;
        let real = match self.resolve(device, name) {
            Some(Alias::Junk) => return Ok(JUNK_BYTES.to_vec()),
            Some(Alias::Of(real)) => real,
            None => name.to_owned(),
        };
        if self.roll(self.config.read_error) {
            return Err(if self.pick(2) == 0 {
                TransportError::Transient("the cloud file provider is not running".into())
            } else {
                TransportError::Io(std::io::Error::other("input/output error (injected)"))
            });
        }
        let bytes = self.inner.read(device, &real, cap).await?;
        if self.roll(self.config.placeholder) {
            return Ok(Vec::new());
        }
        if !bytes.is_empty() && self.roll(self.config.partial) {
            let keep = self.pick(bytes.len() as u64) as usize;
            return Ok(bytes[..keep].to_vec());
        }
        Ok(bytes)
    }

    async fn write(&self, device: &DeviceId, name: &str, bytes: &[u8], mode: WriteMode) -> Result<(), TransportError> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_owned());
        self.delay().await;
        if self.roll(self.config.write_refuse) {
            return Err(TransportError::Transient("the medium refused the write (injected)".into()));
        }
        if self.roll(self.config.write_rate_limit) {
            return Err(TransportError::RateLimited { retry_after: Some(self.config.retry_after) });
        }
        self.inner.write(device, name, bytes, mode).await?;
        if self.roll(self.config.write_ambiguous) {
            return Err(TransportError::Transient("the write landed but its reply was lost (injected)".into()));
        }
        Ok(())
    }

    async fn delete(&self, device: &DeviceId, name: &str) -> Result<(), TransportError> {
        self.inner.delete(device, name).await
    }

    async fn changes(&self) -> Result<Option<ChangeStream>, TransportError> {
        self.inner.changes().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryTransport;
    use crate::names::delta_name;
    use crate::transport::TransportExt;

    #[tokio::test]
    async fn same_seed_same_faults_and_off_means_clean() {
        let medium = MemoryTransport::new();
        let dev = DeviceId::random();
        for seq in 1..=30 {
            medium.create(&dev, &delta_name(seq), &[seq as u8; 50]).await.unwrap();
        }
        let run = |seed| {
            let layer = FaultLayer::new(Arc::new(medium.clone()), FaultConfig::chaos(seed));
            async move {
                let mut seen = Vec::new();
                for _ in 0..5 {
                    let mut names: Vec<String> = layer.list(&dev).await.unwrap().into_iter().map(|f| f.name).collect();
                    names.sort();
                    for n in names.iter().filter(|n| n.ends_with(".seg") || n.ends_with(".SEG")) {
                        seen.push((n.clone(), layer.read(&dev, n, 1 << 20).await.map(|b| b.len()).ok()));
                    }
                    seen.push((names.join(","), None));
                }
                layer.set_active(false);
                let clean = layer.list(&dev).await.unwrap();
                (seen, clean)
            }
        };
        let (a, clean) = run(7).await;
        let (b, _) = run(7).await;
        assert_eq!(a, b, "deterministic for a seed");
        let (c, _) = run(8).await;
        assert_ne!(a, c);
        // Faults actually happened: some reads failed or came back short.
        assert!(
            a.iter().any(|(_, len)| matches!(len, Some(l) if *l < 50))
                || a.iter().any(|(n, l)| n.ends_with(".seg") && l.is_none())
        );
        // Off: every real file, full size (plus the conflict copies already made).
        let real: Vec<&FileEntry> =
            clean.iter().filter(|f| SegmentName::parse(&f.name).is_some_and(|n| !n.variant)).collect();
        assert_eq!(real.len(), 30);
        assert!(real.iter().all(|f| f.size == 50));
    }
}
