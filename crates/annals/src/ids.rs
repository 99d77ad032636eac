//! Session and segment identifiers: UUID v7, so that sorting by id sorts by creation time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (UUID v7) id. Ids made later compare greater.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Wraps an existing UUID (any version) as this id.
            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID behind this id.
            #[must_use]
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|e| crate::Error::InvalidId {
                    what: $what,
                    input: s.chars().take(80).collect(),
                    reason: e.to_string(),
                })
            }
        }
    };
}

id_type!(
    /// Identifies a session: one agent conversation, a directory holding its segments.
    SessionId,
    "session id"
);
id_type!(
    /// Identifies a segment: one linear history inside a session, one log file.
    SegmentId,
    "segment id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_later_sort_later_and_round_trip_through_text() {
        let a = SessionId::new();
        let b = SessionId::new();
        assert!(b > a, "v7 ids are time ordered");
        let parsed: SessionId = a.to_string().parse().unwrap();
        assert_eq!(parsed, a);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{a}\""));
    }

    #[test]
    fn parsing_garbage_names_what_was_expected() {
        let err = "not-a-uuid".parse::<SegmentId>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("segment id"), "{msg}");
        assert!(msg.contains("not-a-uuid"), "{msg}");
    }
}
