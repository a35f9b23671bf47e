//! Credentials for Switchboard: signed room tokens, TURN REST credentials, the `iceServers`
//! list and room password hashes.
//!
//! Everything here is pure computation over secrets handed in by the caller: no I/O, no
//! global state, no clock other than the `now` each call is given. That keeps the
//! security-relevant code small enough to read in one sitting and easy to test exhaustively.

mod external;
mod ice;
mod jwk;
mod password;
mod provider_keys;
mod token;
mod turn;

pub use external::{ExternalRules, KeyError, KeyType, PublicKey};
pub use ice::{secret_eq, IceConfig, IceServer};
pub use jwk::{keys_from_jwk_set, JwkSetError};
pub use password::{hash_password, verify_password, PasswordError};
pub use provider_keys::{ProviderKeys, UnknownKid};
pub use token::{Claims, IssuedToken, TokenError, TokenKeys};
pub use turn::{turn_credentials, TurnCredentials};
