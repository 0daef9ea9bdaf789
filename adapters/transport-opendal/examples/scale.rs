//! Scale figures on real servers (moto for S3, wsgidav for WebDAV; `cargo xtask test-servers`
//! installs them): `devices` devices on one bucket / folder, each with `segments` segments of
//! `size` bytes and a `device.json`. Prints the requests and bytes of an idle pass
//! (`changes_since` from the previous cursor), of a pass after one new segment, and of a join
//! (manifest, a complete listing, every file read once).
//!
//! `cargo run -p onefolder-transport-opendal --features test-servers --example scale -- [devices] [segments] [size]`

use std::time::Instant;

use onefolder_core::names::{DEVICE_FILE, delta_name};
use onefolder_core::{DeviceId, Transport, TransportExt};
use onefolder_transport_opendal::{HttpStats, OpendalTransport, servers};

fn delta(a: HttpStats, b: HttpStats) -> String {
    format!(
        "{} requests, {} B sent, {} B received",
        b.requests - a.requests,
        b.bytes_sent - a.bytes_sent,
        b.bytes_received - a.bytes_received
    )
}

async fn figures(
    label: &str,
    writer: OpendalTransport,
    reader: OpendalTransport,
    devices: usize,
    segments: u64,
    size: usize,
) {
    let started = Instant::now();
    let ids: Vec<DeviceId> = (0..devices).map(|_| DeviceId::random()).collect();
    writer.create_manifest(b"{\"format\":1}").await.unwrap();
    for id in &ids {
        for seq in 1..=segments {
            writer.create(id, &delta_name(seq), &vec![seq as u8; size]).await.unwrap();
        }
        writer.replace(id, DEVICE_FILE, b"{\"name\":\"a device\"}").await.unwrap();
    }
    let files = devices as u64 * (segments + 1);
    let w = writer.http_stats();
    println!(
        "{label}: writing: {:.2} requests per file ({} requests for {files} files and the manifest)",
        w.requests as f64 / (files + 1) as f64,
        w.requests
    );
    println!(
        "{label}: {devices} devices x ({segments} segments of {size} B + device.json) = {files} files, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Join: the manifest, a complete listing, every file read once.
    let own = DeviceId::random();
    let a = reader.http_stats();
    let t = Instant::now();
    reader.read_manifest().await.unwrap();
    let set = reader.changes_since(None, Some(&own)).await.unwrap();
    for (folder, f) in &set.files {
        reader.read(&folder.parse().unwrap(), &f.name, 1 << 20).await.unwrap();
    }
    let b = reader.http_stats();
    println!("{label}: join: {} ({} files, {:.2} s)", delta(a, b), set.files.len(), t.elapsed().as_secs_f64());

    // An idle pass.
    let t = Instant::now();
    let idle = reader.changes_since(Some(&set.cursor), Some(&own)).await.unwrap();
    let c = reader.http_stats();
    println!(
        "{label}: idle pass: {} ({} files reported, {:.3} s)",
        delta(b, c),
        idle.files.len(),
        t.elapsed().as_secs_f64()
    );

    // One new segment of one peer, then the pass that finds and reads it.
    writer.create(&ids[0], &delta_name(segments + 1), &vec![1u8; size]).await.unwrap();
    let d = reader.http_stats();
    let next = reader.changes_since(Some(&idle.cursor), Some(&own)).await.unwrap();
    // Read what the replica would: files it has not seen with this version (a complete
    // listing, as on WebDAV, reports every file).
    let seen: std::collections::HashSet<_> =
        set.files.iter().map(|(d, f)| (d.clone(), f.name.clone(), f.version.clone())).collect();
    let mut read = 0;
    for (folder, f) in &next.files {
        if !seen.contains(&(folder.clone(), f.name.clone(), f.version.clone())) {
            reader.read(&folder.parse().unwrap(), &f.name, 1 << 20).await.unwrap();
            read += 1;
        }
    }
    let e = reader.http_stats();
    println!("{label}: pass after one new segment: {} ({} files reported, {read} read)", delta(d, e), next.files.len());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let devices = args.first().copied().unwrap_or(50);
    let segments = args.get(1).copied().unwrap_or(20) as u64;
    let size = args.get(2).copied().unwrap_or(2048);

    let s3 = servers::s3();
    let bucket = s3.new_bucket().await;
    let options = s3.options(&bucket, "library");
    let (w, r) = (OpendalTransport::s3(options.clone()).unwrap(), OpendalTransport::s3(options).unwrap());
    figures("s3", w, r, devices, segments, size).await;

    let dav = servers::webdav();
    let (path, _dir) = dav.new_folder();
    let options = dav.options(&path);
    let (w, r) = (OpendalTransport::webdav(options.clone()).unwrap(), OpendalTransport::webdav(options).unwrap());
    figures("webdav", w, r, devices, segments, size).await;
}
