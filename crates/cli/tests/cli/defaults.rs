//! Without `--state`: the state lives in the OS data directory, and later commands find it
//! through the current-library pointer or `--library`.

use crate::common::{World, copy_new};

#[test]
fn default_state_follows_the_current_library() {
    let w = World::new();
    let mut laptop = w.computer("laptop");
    laptop.state = None;
    laptop.write("2026/tom.jpg", b"tom");
    let init = laptop.json(&["init", &laptop.lib(), "--name", "laptop"]);
    let id = init["libraryId"].as_str().unwrap();
    let expected = w.xdg().join("onefolder-sync/libraries").join(id);
    assert_eq!(init["state"], expected.display().to_string());
    assert!(expected.join("state.json").is_file());
    assert!(
        !w.xdg()
            .join("onefolder-sync/libraries")
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with(".new-") })
    );
    // No --state needed afterwards.
    laptop.ok(&["index"]);
    laptop.ok(&["tag", "create", "Cats"]);
    laptop.ok(&["tag", "add", "2026/tom.jpg", "Cats"]);
    assert_eq!(laptop.tags_of("2026/tom.jpg"), ["Cats"]);
    laptop.ok(&["sync", "--once"]);
    // --library finds the same state.
    let status = laptop.json(&["--library", &laptop.lib(), "status"]);
    assert_eq!(status["state"], expected.display().to_string());

    // A second library, joined without --state, becomes the current one.
    let mut second = w.computer("second");
    second.state = None;
    let copy = w.path().join("second/Copy");
    std::fs::create_dir_all(&copy).unwrap();
    // Same library id as the laptop's: this computer already joined it.
    copy_new(&laptop.library, &copy, "");
    let msg = second.fails(&["join", &copy.display().to_string()], 1);
    assert!(msg.contains("already joined") && msg.contains("--state"), "{msg}");
    // A different library is fine.
    let fresh = w.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    second.ok(&["init", &fresh.display().to_string()]);
    let status = second.json(&["status"]);
    assert_eq!(status["library"], fresh.canonicalize().unwrap().display().to_string());
    // The first library stays reachable by its folder.
    let tags = second.json(&["--library", &laptop.lib(), "tags"]);
    assert_eq!(tags[0]["path"], "Cats");
    // A current library whose state was deleted says how to get it back.
    std::fs::remove_dir_all(w.xdg().join("onefolder-sync/libraries")).unwrap();
    let msg = second.fails(&["tags"], 1);
    assert!(msg.contains("is gone") && msg.contains("join"), "{msg}");
}

#[test]
fn demo_still_converges() {
    let w = World::new();
    let out = w.cmd().arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("converged"));
}
