//! Micro-benchmarks of the segment codec: encode and the full checked decode (header,
//! library, engine, length cap, both checksums) for payloads from one edit to a large batch.
//!
//! `cargo bench -p onefolder-bench --bench codec`

use onefolder_core::segment::{self, Expect, SegmentKind};
use onefolder_core::{DeviceId, LibraryId};

fn main() {
    divan::main();
}

/// Payload sizes: one tag assignment, a debounced batch, a 10k-edit segment, a large import.
const SIZES: &[usize] = &[100, 10_000, 1_000_000, 16_000_000];

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8).collect()
}

#[divan::bench(args = SIZES)]
fn encode(bencher: divan::Bencher, len: usize) {
    let (library, device, payload) = (LibraryId::random(), DeviceId::random(), payload(len));
    bencher
        .counter(divan::counter::BytesCount::new(len))
        .bench(|| segment::encode(SegmentKind::Delta, "yrs", library, device, 1, 1, divan::black_box(&payload)));
}

#[divan::bench(args = SIZES)]
fn decode(bencher: divan::Bencher, len: usize) {
    let (library, device) = (LibraryId::random(), DeviceId::random());
    let bytes = segment::encode(SegmentKind::Delta, "yrs", library, device, 1, 1, &payload(len)).expect("encodes");
    let expect = Expect { library, engine: "yrs", max_payload: segment::DEFAULT_MAX_PAYLOAD };
    bencher.counter(divan::counter::BytesCount::new(len)).bench(|| {
        let seg = segment::decode(divan::black_box(&bytes), &expect).expect("decodes");
        seg.payload.len()
    });
}

#[divan::bench]
fn decode_header_only(bencher: divan::Bencher) {
    let bytes =
        segment::encode(SegmentKind::Delta, "yrs", LibraryId::random(), DeviceId::random(), 1, 1, &payload(100))
            .expect("encodes");
    bencher.bench(|| segment::decode_header(divan::black_box(&bytes)).expect("decodes"));
}
