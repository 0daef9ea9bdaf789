//! The segment decoder must reject anything malformed with an error — never panic, never
//! allocate beyond the cap — and accept only what it would have encoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onefolder_core::segment::{self, Expect};
use onefolder_core::{DeviceId, LibraryId};

fuzz_target!(|data: &[u8]| {
    let library = LibraryId::from_bytes([7; 16]);
    let expect = Expect { library, engine: "yrs", max_payload: 1 << 16 };
    let _ = segment::decode_header(data);
    if let Ok(seg) = segment::decode(data, &expect) {
        // Whatever decodes re-encodes to the same bytes.
        let h = &seg.header;
        let again = segment::encode(h.kind, &h.engine, h.library, h.device, h.seq_start, h.seq_end, seg.payload)
            .expect("a decoded header is encodable");
        assert_eq!(again, data);
    }
    // Wrapping the input as a payload always round-trips.
    let dev = DeviceId::from_bytes([9; 16]);
    if data.len() <= 1 << 16 {
        let bytes = segment::encode(segment::SegmentKind::Delta, "yrs", library, dev, 1, 1, data).unwrap();
        assert_eq!(segment::decode(&bytes, &expect).unwrap().payload, data);
    }
});
