//! The pre-check (`src/precheck.rs`) mirrors yrs' v1 decoder field by field. It is right for
//! exactly one yrs version, so the workspace pins that version (`yrs = "=0.28.1"`); this test
//! fails loudly when the lock file resolves another one, before a silent mismatch could let
//! hostile bytes through or reject good ones.

/// The yrs version `precheck.rs` was written against.
const MIRRORED: &str = "0.28.1";

#[test]
fn yrs_is_the_version_the_precheck_mirrors() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("reading {}: {e}", lock.display()));
    let versions: Vec<&str> = text
        .split("[[package]]")
        .filter(|p| p.lines().any(|l| l.trim() == "name = \"yrs\""))
        .filter_map(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"')))
        .collect();
    assert_eq!(
        versions,
        [MIRRORED],
        "yrs changed: re-read src/precheck.rs against the new `Update::decode_v1` (every `try_reserve`, \
         var-int width and Any tag), then update MIRRORED and the pin in the workspace Cargo.toml"
    );
}
