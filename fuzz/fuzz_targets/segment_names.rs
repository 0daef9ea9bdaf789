//! File-name parsing on the shared folder never panics, and a parsed canonical name is the
//! one the writer would produce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use onefolder_core::names::{self, SegmentName};
use onefolder_core::segment::SegmentKind;

fuzz_target!(|data: &[u8]| {
    let Ok(name) = std::str::from_utf8(data) else { return };
    let _ = onefolder_core::transport::check_name(name);
    let _ = names::is_temporary(name);
    if let Some(parsed) = SegmentName::parse(name) {
        if !parsed.variant {
            let canonical = match parsed.kind {
                SegmentKind::Delta => names::delta_name(parsed.seq),
                SegmentKind::Snapshot => names::snapshot_name(parsed.seq),
            };
            assert_eq!(canonical, name);
        }
    }
});
