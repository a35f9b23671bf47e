//! The wire protocol of `/ws` (docs/protocol.md): typed client requests decoded from text
//! frames (`decode.rs`), the server events encoded back (`encode.rs`), and the names and
//! shapes both sides share, defined here.
//!
//! Every item is re-exported at `protocol::`, which is the path the rest of the crate uses.

mod decode;
mod encode;

pub use decode::{
    decode, request_id, whole_number, ClientMessage, CreateOptions, DecodeError, Request,
    MAX_CHAT_CHARS, MAX_TTL_SECONDS,
};
pub use encode::{
    error_frame, AuthOk, ErrorBody, Expiring, Heartbeat, HostChanged, PeerData, Reason, RelayOut,
    RoomJoined, RoomRef, ServerMessage, Shutdown,
};

use serde::{Deserialize, Serialize};
use strum::{EnumCount, IntoStaticStr, VariantArray};

/// The message types counted per type (`switchboard_messages_relayed_total`,
/// docs/operations.md#metrics): the three relays, the three broadcasts and `/yjs` publishes.
///
/// The label is the variant's name in kebab-case, which for every `/ws` message is also its
/// `type` on the wire; the position is its counter's index, so counting is an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoStaticStr, EnumCount, VariantArray)]
#[strum(serialize_all = "kebab-case")]
pub enum RelayType {
    /// [`RelayKind::Offer`].
    SdpOffer,
    /// [`RelayKind::Answer`].
    SdpAnswer,
    /// [`RelayKind::Candidate`].
    IceCandidate,
    /// [`BroadcastKind::Presence`].
    Presence,
    /// [`BroadcastKind::Cursor`].
    CursorUpdate,
    /// [`BroadcastKind::Chat`].
    Message,
    /// A `/yjs` publish (one count per subscriber that received it).
    YjsPublish,
}

impl RelayType {
    /// The metric label, and for `/ws` messages the `type` on the wire.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Index of its counter in [`Stats`](crate::Stats).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Which of the three WebRTC relay messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, VariantArray)]
pub enum RelayKind {
    /// `sdp-offer` with `data.offer`.
    Offer,
    /// `sdp-answer` with `data.answer`.
    Answer,
    /// `ice-candidate` with `data.candidate`.
    Candidate,
}

impl RelayKind {
    /// Its message type, which names it on the wire and in metrics.
    pub const fn relay_type(self) -> RelayType {
        match self {
            Self::Offer => RelayType::SdpOffer,
            Self::Answer => RelayType::SdpAnswer,
            Self::Candidate => RelayType::IceCandidate,
        }
    }

    /// The message type on the wire.
    pub fn type_name(self) -> &'static str {
        self.relay_type().as_str()
    }

    /// The `data` field its payload travels under.
    pub fn field(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Candidate => "candidate",
        }
    }

    /// Index of its counter in [`Stats`](crate::Stats): a constant, so the relay path does
    /// not look the name up per message.
    pub fn stat_index(self) -> usize {
        self.relay_type().index()
    }
}

/// Which of the three room broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, VariantArray)]
pub enum BroadcastKind {
    /// `presence`: status change, also recorded in the sender's PeerInfo.
    Presence,
    /// `cursor-update`: any JSON.
    Cursor,
    /// `message`: chat text.
    Chat,
}

impl BroadcastKind {
    /// Its message type, which names it on the wire and in metrics.
    pub const fn relay_type(self) -> RelayType {
        match self {
            Self::Presence => RelayType::Presence,
            Self::Cursor => RelayType::CursorUpdate,
            Self::Chat => RelayType::Message,
        }
    }

    /// The message type on the wire.
    pub fn type_name(self) -> &'static str {
        self.relay_type().as_str()
    }

    /// Index of its counter in [`Stats`](crate::Stats).
    pub fn stat_index(self) -> usize {
        self.relay_type().index()
    }
}

/// Declares an enum that travels by its variants' names. The case rule is written once, in
/// `#[wire_names = "..."]`, and given to both serde (`rename_all`) and strum
/// (`serialize_all`), so what serde writes and what `as_str()` returns cannot drift apart.
macro_rules! wire_enum {
    (
        $(#[doc = $doc:tt])*
        #[wire_names = $case:tt]
        $(#[$extra:meta])*
        pub enum $name:ident {
            $($(#[doc = $variant_doc:tt])* $variant:ident,)+
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[derive(IntoStaticStr, VariantArray)]
        $(#[$extra])*
        #[serde(rename_all = $case)]
        #[strum(serialize_all = $case)]
        pub enum $name {
            $($(#[doc = $variant_doc])* $variant,)+
        }

        impl $name {
            /// The name on the wire, as serde writes and reads it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }
    };
}

wire_enum! {
    /// A peer's presence as set by `presence` messages.
    #[wire_names = "lowercase"]
    #[derive(strum::EnumString)]
    pub enum Presence {
        /// Working in the document.
        Active,
        /// Away.
        Idle,
    }
}

/// A peer as shown to clients.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    /// The peer's userId.
    pub user_id: std::sync::Arc<str>,
    /// Display name.
    pub user_name: String,
    /// Whether the peer hosts the room.
    pub is_host: bool,
    /// When it joined (ms since epoch).
    pub connected_at: u64,
    /// Last sign of life (ms since epoch).
    pub last_heartbeat: u64,
    /// `active`, `idle` or `reconnecting`.
    pub status: PeerStatus,
}

wire_enum! {
    /// A member's state in its room.
    #[wire_names = "lowercase"]
    pub enum PeerStatus {
        /// Connected and active.
        Active,
        /// Connected, presence set to idle.
        Idle,
        /// Connection dropped; its place is kept for the reconnect grace.
        Reconnecting,
    }
}

wire_enum! {
    /// Room lifecycle state as shown to clients.
    #[wire_names = "lowercase"]
    pub enum RoomState {
        /// At least one connected member.
        Active,
        /// No connected member.
        Idle,
        /// Closed (only ever seen in the final events of a room).
        Closed,
    }
}

/// Room metadata as returned by the HTTP API and `room-joined`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomMeta {
    /// Room id.
    pub room_id: std::sync::Arc<str>,
    /// Display name.
    pub room_name: String,
    /// Current host's userId.
    pub host_id: Option<std::sync::Arc<str>>,
    /// Current host's display name.
    pub host_name: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last join, leave, relay or broadcast (ms).
    pub last_activity: u64,
    /// Lifecycle state.
    pub state: RoomState,
    /// Members, including reconnecting ones.
    pub peer_count: usize,
    /// Member limit.
    pub max_peers: usize,
    /// Whether tokens require a password.
    pub has_password: bool,
    /// Absolute expiry (ms), once the TTL clock runs.
    pub expires_at: Option<u64>,
    /// Milliseconds left until expiry.
    pub time_until_expiration: Option<u64>,
    /// Members, when the endpoint includes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<PeerInfo>>,
}

wire_enum! {
    /// Why a peer left, as told to the others.
    #[wire_names = "lowercase"]
    pub enum LeaveReason {
        /// It sent `leave-room`.
        Left,
        /// Its connection dropped and the grace ran out.
        Disconnected,
        /// It went silent past `PEER_TIMEOUT_SECONDS`.
        Timeout,
    }
}

wire_enum! {
    /// Why a room closed.
    #[wire_names = "kebab-case"]
    pub enum CloseReason {
        /// The host sent `close-room`.
        HostClosed,
        /// The host left a `destroyOnHostLeave` room.
        HostLeft,
        /// `DELETE /api/rooms/{id}`.
        Deleted,
        /// Its TTL ran out.
        Expired,
        /// No activity for `ROOM_IDLE_TIMEOUT_SECONDS`.
        Idle,
        /// Closed by aggressive memory cleanup.
        MemoryPressure,
        /// Closed by an operator.
        Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_relay_type_belongs_to_one_kind_or_to_yjs() {
        let mut types: Vec<RelayType> = RelayKind::VARIANTS
            .iter()
            .map(|k| k.relay_type())
            .chain(BroadcastKind::VARIANTS.iter().map(|k| k.relay_type()))
            .chain([RelayType::YjsPublish])
            .collect();
        types.sort_by_key(|t| t.index());
        assert_eq!(types, RelayType::VARIANTS);
    }

    /// The client-facing reference: `docs/protocol.md`.
    const PROTOCOL_DOC: &str = include_str!("../../../docs/protocol.md");

    /// serde writes and reads every variant of `T` as its `as_str` name, which
    /// docs/protocol.md mentions (in backticks or quotes) when `documented`.
    fn serde_agrees_with_as_str<T>(documented: bool)
    where
        T: VariantArray + Serialize + serde::de::DeserializeOwned,
        T: Copy + PartialEq + std::fmt::Debug + Into<&'static str>,
    {
        for v in T::VARIANTS {
            let name: &'static str = (*v).into();
            assert_eq!(serde_json::to_value(v).unwrap(), name, "{v:?}");
            assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), *v);
            let mentioned = [format!("`{name}`"), format!("\"{name}\"")]
                .iter()
                .any(|quoted| PROTOCOL_DOC.contains(quoted.as_str()));
            assert!(
                !documented || mentioned,
                "{name} is not in docs/protocol.md"
            );
        }
    }

    #[test]
    fn serde_and_as_str_agree_on_every_wire_name() {
        serde_agrees_with_as_str::<Presence>(true);
        serde_agrees_with_as_str::<PeerStatus>(true);
        serde_agrees_with_as_str::<LeaveReason>(true);
        serde_agrees_with_as_str::<CloseReason>(true);
        // `state` values are not listed in docs/protocol.md.
        serde_agrees_with_as_str::<RoomState>(false);
    }

    #[test]
    fn wire_names_are_the_variants_in_the_serde_case() {
        assert_eq!(CloseReason::MemoryPressure.as_str(), "memory-pressure");
        assert_eq!(PeerStatus::Reconnecting.as_str(), "reconnecting");
        assert_eq!("idle".parse(), Ok(Presence::Idle));
        assert!("Idle".parse::<Presence>().is_err());
    }

    #[test]
    fn relay_type_index_is_its_position() {
        for (i, t) in RelayType::VARIANTS.iter().enumerate() {
            assert_eq!(t.index(), i, "{t:?}");
        }
    }
}
