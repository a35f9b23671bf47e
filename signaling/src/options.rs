//! Room options: the one rule for what a new room may ask for, shared by `POST /api/rooms`
//! and the `create-room` message (`docs/protocol.md#joining-and-leaving`).

use std::time::Duration;

use crate::ids;
use crate::protocol::{CreateOptions, MAX_TTL_SECONDS};

/// Validated settings of a new room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomOptions {
    /// Display name.
    pub name: String,
    /// Member limit.
    pub max_peers: usize,
    /// Lifetime from the first join.
    pub ttl: Option<Duration>,
    /// Close when the host leaves.
    pub destroy_on_host_leave: bool,
}

/// Why requested room options were refused (`INVALID_INPUT`, with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOptions(pub String);

impl RoomOptions {
    /// The options of a room its first peer creates by joining: named after its id, the
    /// server's member limit, no TTL.
    pub fn defaults(room_id: &str, max_peers_per_room: usize) -> Self {
        Self {
            name: room_id.to_owned(),
            max_peers: max_peers_per_room,
            ttl: None,
            destroy_on_host_leave: false,
        }
    }

    /// Checks what a client asked for against the server's limit `max_peers_per_room`;
    /// an absent name becomes `room_id`.
    pub fn from_request(
        req: &CreateOptions,
        room_id: &str,
        max_peers_per_room: usize,
    ) -> Result<Self, InvalidOptions> {
        let max_peers = match req.max_peers {
            None => max_peers_per_room,
            Some(n) if (1..=max_peers_per_room as u64).contains(&n) => n as usize,
            Some(_) => {
                return Err(InvalidOptions(format!(
                    "maxPeers must be between 1 and {max_peers_per_room}"
                )))
            }
        };
        let ttl = match req.ttl_seconds {
            Some(n) if !(1..=MAX_TTL_SECONDS).contains(&n) => {
                return Err(InvalidOptions(format!(
                    "ttlSeconds must be between 1 and {MAX_TTL_SECONDS}"
                )))
            }
            other => other.map(Duration::from_secs),
        };
        let name = match req.room_name.as_deref().map(ids::display_name) {
            None => room_id.to_owned(),
            Some(Some(name)) => name,
            Some(None) => {
                return Err(InvalidOptions(
                    "roomName must be 1 to 100 printable characters".into(),
                ))
            }
        };
        Ok(Self {
            name,
            max_peers,
            ttl,
            destroy_on_host_leave: req.destroy_on_host_leave.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(max_peers: Option<u64>, ttl: Option<u64>, name: Option<&str>) -> CreateOptions {
        CreateOptions {
            room_name: name.map(str::to_owned),
            max_peers,
            ttl_seconds: ttl,
            destroy_on_host_leave: Some(true),
        }
    }

    #[test]
    fn absent_options_take_the_server_defaults() {
        let o = RoomOptions::from_request(&CreateOptions::default(), "r1", 7).unwrap();
        assert_eq!(o, RoomOptions::defaults("r1", 7));
    }

    #[test]
    fn limits_are_inclusive_and_named_in_the_message() {
        let o =
            RoomOptions::from_request(&req(Some(7), Some(MAX_TTL_SECONDS), Some(" A ")), "r", 7)
                .unwrap();
        assert_eq!((o.max_peers, o.name.as_str()), (7, "A"));
        assert_eq!(o.ttl, Some(Duration::from_secs(MAX_TTL_SECONDS)));
        assert!(o.destroy_on_host_leave);
        for (bad, text) in [
            (req(Some(0), None, None), "maxPeers must be between 1 and 7"),
            (req(Some(8), None, None), "maxPeers must be between 1 and 7"),
            (
                req(None, Some(0), None),
                "ttlSeconds must be between 1 and 31536000",
            ),
            (
                req(None, Some(MAX_TTL_SECONDS + 1), None),
                "ttlSeconds must be between 1 and 31536000",
            ),
            (
                req(None, None, Some("  ")),
                "roomName must be 1 to 100 printable characters",
            ),
        ] {
            assert_eq!(RoomOptions::from_request(&bad, "r", 7).unwrap_err().0, text);
        }
    }
}
