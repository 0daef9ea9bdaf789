//! The causal checks (`src/causal.rs`) and the chunk parser (`src/chunks.rs`) mirror automerge's
//! change format and the history rules of one automerge version, so the workspace pins it
//! (`automerge = "=0.12.0"`); this test fails loudly when the lock file resolves another one.

/// The automerge version `causal.rs` and `chunks.rs` were written against.
const MIRRORED: &str = "0.12.0";

#[test]
fn automerge_is_the_version_the_checks_mirror() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("reading {}: {e}", lock.display()));
    let versions: Vec<&str> = text
        .split("[[package]]")
        .filter(|p| p.lines().any(|l| l.trim() == "name = \"automerge\""))
        .filter_map(|p| p.lines().find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"')))
        .collect();
    assert_eq!(
        versions,
        [MIRRORED],
        "automerge changed: re-read src/causal.rs and src/chunks.rs against the new change format and \
         `Automerge::apply_changes` (op counters, dependency checks, what it queues or panics on), then \
         update MIRRORED and the pin in the workspace Cargo.toml"
    );
}
