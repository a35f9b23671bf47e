//! Every error a client can be told about, with its wire code: the one place where internal
//! outcomes become `SOME_CODE` strings.

/// A refusal the server reports to a client (over the WebSocket or, via the binary, HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
    /// The `SOME_CODE` string clients match on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMessage => "INVALID_MESSAGE",
            Self::UnknownType => "UNKNOWN_TYPE",
            Self::InvalidInput => "INVALID_INPUT",
            Self::NotAuthenticated => "NOT_AUTHENTICATED",
            Self::AlreadyAuthenticated => "ALREADY_AUTHENTICATED",
            Self::AuthFailed => "AUTH_FAILED",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::UserMismatch => "USER_MISMATCH",
            Self::RoomMismatch => "ROOM_MISMATCH",
            Self::NotInRoom => "NOT_IN_ROOM",
            Self::AlreadyInRoom => "ALREADY_IN_ROOM",
            Self::RoomFull => "ROOM_FULL",
            Self::RoomClosed => "ROOM_CLOSED",
            Self::RoomExists => "ROOM_EXISTS",
            Self::RoomNotFound => "ROOM_NOT_FOUND",
            Self::TooManyRooms => "TOO_MANY_ROOMS",
            Self::Forbidden => "FORBIDDEN",
            Self::PeerNotFound => "PEER_NOT_FOUND",
            Self::PeerUnavailable => "PEER_UNAVAILABLE",
            Self::InvalidPassword => "INVALID_PASSWORD",
            Self::RateLimited => "RATE_LIMITED",
        }
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
