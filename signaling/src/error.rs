//! Every error a client can be told about, with its wire code: the one place where internal
//! outcomes become `SOME_CODE` strings.

use strum::{EnumCount, IntoStaticStr, VariantArray};

/// A refusal the server reports to a client (over the WebSocket or, via the binary, HTTP).
///
/// The wire code is derived from the variant's name (`RoomFull` → `ROOM_FULL`), and
/// [`VARIANTS`](strum::VariantArray::VARIANTS) lists every code in declaration order, which
/// is also each code's counter index in [`Stats`](crate::Stats).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, IntoStaticStr, EnumCount, VariantArray,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The frame is not a JSON object of the expected shape (or is binary).
    #[error("message is not valid JSON of the expected shape")]
    InvalidMessage,
    /// The `type` is not one the server knows.
    #[error("unknown message type")]
    UnknownType,
    /// A field has a value outside what is allowed.
    #[error("invalid input")]
    InvalidInput,
    /// A message other than `auth` arrived before authentication.
    #[error("authenticate first")]
    NotAuthenticated,
    /// `auth` arrived on an authenticated connection.
    #[error("connection is already authenticated")]
    AlreadyAuthenticated,
    /// Authentication failed for another reason (e.g. missing token).
    #[error("authentication failed")]
    AuthFailed,
    /// The token's `exp` has passed.
    #[error("token expired")]
    TokenExpired,
    /// The token is malformed, forged or signed with another key or algorithm.
    #[error("invalid token")]
    InvalidToken,
    /// The message's `userId` differs from the token's.
    #[error("userId does not match the token")]
    UserMismatch,
    /// The message's `roomId` differs from the token's.
    #[error("roomId does not match the token")]
    RoomMismatch,
    /// The connection has not joined its room.
    #[error("join the room first")]
    NotInRoom,
    /// The connection has already joined its room.
    #[error("already in the room")]
    AlreadyInRoom,
    /// The room has as many members as it allows.
    #[error("room is full")]
    RoomFull,
    /// The room was closed less than a minute ago.
    #[error("room was closed")]
    RoomClosed,
    /// `create-room` for an id that exists.
    #[error("room already exists")]
    RoomExists,
    /// The room does not exist.
    #[error("room not found")]
    RoomNotFound,
    /// The server refuses new rooms (limit reached or memory pressure).
    #[error("server does not accept new rooms right now")]
    TooManyRooms,
    /// The caller is not allowed to do this (e.g. close a room it does not host).
    #[error("not allowed")]
    Forbidden,
    /// The relay target is not a member of the sender's room.
    #[error("peer not found in this room")]
    PeerNotFound,
    /// The relay target is reconnecting.
    #[error("peer is reconnecting")]
    PeerUnavailable,
    /// The room requires a password the token was not issued with.
    #[error("room requires a password: request a new token")]
    InvalidPassword,
    /// The message exceeded the connection's rate limit and was dropped.
    #[error("rate limit exceeded, message dropped")]
    RateLimited,
}

impl ErrorCode {
    /// The `SOME_CODE` string clients match on: the variant's name in SCREAMING_SNAKE_CASE,
    /// derived, so a new variant cannot be left without its code.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// True for the errors that count towards the "keeps sending garbage" limit.
    pub fn is_garbage(self) -> bool {
        matches!(
            self,
            Self::InvalidMessage | Self::UnknownType | Self::InvalidInput
        )
    }
}

impl From<switchboard_auth::TokenError> for ErrorCode {
    fn from(e: switchboard_auth::TokenError) -> Self {
        match e {
            switchboard_auth::TokenError::Expired => Self::TokenExpired,
            switchboard_auth::TokenError::Invalid => Self::InvalidToken,
        }
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray;

    use super::ErrorCode;

    /// The client-facing reference: `docs/protocol.md`.
    const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

    #[test]
    fn every_code_is_documented_for_clients() {
        let is_code_char = |c: char| c.is_ascii_uppercase() || c == '_';
        for code in ErrorCode::VARIANTS {
            let name = code.as_str();
            let named = PROTOCOL_DOC.match_indices(name).any(|(at, _)| {
                let before = PROTOCOL_DOC[..at].chars().next_back();
                let after = PROTOCOL_DOC[at + name.len()..].chars().next();
                !before.is_some_and(is_code_char) && !after.is_some_and(is_code_char)
            });
            assert!(named, "{name} is not in docs/protocol.md");
        }
    }

    #[test]
    fn codes_documented_in_the_error_table_exist() {
        // docs/protocol.md#4-errors: the first cell of each row names one or more codes.
        let section = PROTOCOL_DOC
            .split("## 4. Errors")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/protocol.md has section 4. Errors");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .flat_map(|l| l.split('|').next().unwrap_or("").split('`'))
            .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .collect();
        assert!(documented.len() >= 20, "{documented:?}");
        for name in documented {
            assert!(
                ErrorCode::VARIANTS.iter().any(|c| c.as_str() == name),
                "docs/protocol.md#4-errors lists {name}, which is no ErrorCode"
            );
        }
    }

    #[test]
    fn codes_are_screaming_snake_case_of_the_variant() {
        assert_eq!(ErrorCode::InvalidMessage.as_str(), "INVALID_MESSAGE");
        assert_eq!(ErrorCode::PeerNotFound.as_str(), "PEER_NOT_FOUND");
        assert_eq!(ErrorCode::Forbidden.as_str(), "FORBIDDEN");
    }
}
