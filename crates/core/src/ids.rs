//! Identifiers shared by every layer: devices and libraries.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(Uuid::new_v4())
            }

            /// The 16 raw bytes, as written in segment headers.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Builds the identifier from the 16 raw bytes of a segment header.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lower case: the canonical folder name on the shared medium.
                write!(f, "{}", self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            /// Parses only the canonical hyphenated lower-case form, so that a folder
            /// name maps to exactly one id and back.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let id = Uuid::try_parse(s)?;
                if id.hyphenated().to_string() != s {
                    // Reuse uuid's own error type: parse a string that is certainly invalid.
                    return Err(Uuid::try_parse("not-canonical").unwrap_err());
                }
                Ok(Self(id))
            }
        }
    };
}

uuid_id!(
    /// One device (one computer's local state for one library). It names the device's folder
    /// on the shared medium.
    DeviceId
);
uuid_id!(
    /// One library: written in `library.json` and in every segment header.
    LibraryId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_round_trips_only_canonical_form() {
        let id = DeviceId::random();
        let s = id.to_string();
        assert_eq!(s.parse::<DeviceId>().unwrap(), id);
        assert!(s.to_uppercase().parse::<DeviceId>().is_err());
        assert!(id.0.simple().to_string().parse::<DeviceId>().is_err());
        assert!("..".parse::<DeviceId>().is_err());
    }
}
