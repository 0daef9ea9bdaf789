//! Deterministic identities: the same file or tag gets the same id on every computer.

use unicode_normalization::UnicodeNormalization;

use crate::ModelError;

fn hash_id(domain: &str, parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"onefolder-sync:");
    h.update(domain.as_bytes());
    for p in parts {
        // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    encode_id(&h.finalize().as_bytes()[..ID_BYTES])
}

/// Bytes in an id: 96 bits, so that a library would need ~2^48 files before two are likely to
/// collide, in 16 characters.
const ID_BYTES: usize = 12;

/// An id's text: unpadded base64url (`A–Z a–z 0–9 - _`), 16 characters. Ids are the keys of
/// every record and set member, so their length is a large share of the document.
fn encode_id(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Normalises a path relative to a location (or to the library): NFC, `/` separators, no
/// leading `./`, not absolute, no empty, `.` or `..` components. `""` is the location itself.
pub fn normalize_rel_path(path: &str) -> Result<String, ModelError> {
    let nfc: String = path.nfc().collect::<String>().replace('\\', "/");
    let bytes = nfc.as_bytes();
    if nfc.starts_with('/') || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic()) {
        return Err(ModelError::InvalidPath(format!("{path:?} is absolute; give a path relative to its location")));
    }
    let mut parts = Vec::new();
    for part in nfc.split('/') {
        match part {
            "" | "." => continue,
            ".." => return Err(ModelError::InvalidPath(format!("{path:?} leaves its location"))),
            p if p.chars().any(char::is_control) => {
                return Err(ModelError::InvalidPath(format!("{path:?} contains a control character")));
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// The key under which tag names are compared: NFC, trimmed, inner whitespace collapsed,
/// lower case. "Cats", " cats " and "CATS" are one tag under the same parent.
pub fn tag_name_key(name: &str) -> String {
    name.nfc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Cleans a tag name for display: NFC, trimmed, inner whitespace collapsed. Rejects empty
/// names and names containing `/` (the tag path separator) or control characters.
pub fn clean_tag_name(name: &str) -> Result<String, ModelError> {
    let cleaned = name.nfc().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    if cleaned.is_empty() {
        return Err(ModelError::InvalidName("a tag name cannot be empty".into()));
    }
    if cleaned.contains('/') {
        return Err(ModelError::InvalidName(format!("tag name {cleaned:?} cannot contain '/'")));
    }
    if cleaned.chars().any(char::is_control) {
        return Err(ModelError::InvalidName(format!("tag name {cleaned:?} contains a control character")));
    }
    Ok(cleaned)
}

/// File id: hash of the location id and the normalised location-relative path. Never the
/// absolute path, never an inode: two computers indexing the same folder agree.
pub fn file_id(location_id: &str, rel_path: &str) -> Result<String, ModelError> {
    let path = normalize_rel_path(rel_path)?;
    if path.is_empty() {
        return Err(ModelError::InvalidPath("a file path cannot be empty".into()));
    }
    Ok(hash_id("file", &[location_id, &path]))
}

/// Tag id: hash of the parent id (`""` for the root) and the normalised name, so the same tag
/// created offline on two computers is one tag.
pub fn tag_id(parent: Option<&str>, name: &str) -> String {
    hash_id("tag", &[parent.unwrap_or(""), &tag_name_key(name)])
}

/// Id of a location inside the library folder: hash of its library-relative path, so a second
/// computer adding the same folder matches it instead of duplicating it.
pub fn library_location_id(rel_path: &str) -> Result<String, ModelError> {
    Ok(hash_id("location", &[&normalize_rel_path(rel_path)?]))
}

/// The id of a record that another program named `foreign` (an id that may hold any
/// character, e.g. one of OneFolder's prototype): the same foreign id gives the same id on
/// every computer.
pub fn foreign_id(collection: &str, foreign: &str) -> String {
    hash_id("foreign", &[collection, foreign])
}

/// A random id (locations outside the library, saved searches), in the same form.
pub fn random_id() -> String {
    encode_id(&uuid::Uuid::new_v4().as_bytes()[16 - ID_BYTES..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_ignore_separators_and_normalization_form() {
        let nfd = "Cafe\u{301}/photo.jpg";
        let nfc = "Café/photo.jpg";
        assert_eq!(file_id("loc", nfd).unwrap(), file_id("loc", nfc).unwrap());
        assert_eq!(file_id("loc", "a\\b.jpg").unwrap(), file_id("loc", "./a/b.jpg").unwrap());
        assert_ne!(file_id("loc", "a/b.jpg").unwrap(), file_id("other", "a/b.jpg").unwrap());
        assert!(file_id("loc", "../x.jpg").is_err());
        assert!(file_id("loc", "").is_err());
        assert!(file_id("loc", "/etc/passwd").is_err());
        assert!(file_id("loc", "C:\\x.jpg").is_err());
    }

    #[test]
    fn ids_are_16_url_safe_characters() {
        for id in [file_id("loc", "a.jpg").unwrap(), tag_id(None, "x"), random_id(), library_location_id("").unwrap()] {
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{id}");
        }
        assert_ne!(random_id(), random_id());
    }

    #[test]
    fn tag_ids_depend_on_parent_and_normalized_name() {
        assert_eq!(tag_id(None, "Cats"), tag_id(None, "  cats "));
        assert_ne!(tag_id(None, "Cats"), tag_id(Some("x"), "Cats"));
        assert!(clean_tag_name("a/b").is_err());
        assert!(clean_tag_name("  ").is_err());
        assert_eq!(clean_tag_name(" Big   cats ").unwrap(), "Big cats");
    }
}
