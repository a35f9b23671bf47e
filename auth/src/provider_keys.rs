//! The identity provider's current public keys, replaceable while tokens are verified: a
//! key set fetched from a JWKS URL is swapped in whole by the caller, which also learns
//! when a token named a key the set lacks (`docs/auth.md#jwks`).

use std::sync::{Arc, RwLock};

use crate::external::PublicKey;

/// Called with nothing when a token names a `kid` the current set does not have.
pub type UnknownKid = Arc<dyn Fn() + Send + Sync>;

/// A shared, replaceable set of provider keys. Clones share the set.
#[derive(Clone)]
pub struct ProviderKeys {
    // Read once per provider-signed token (an `Arc` clone under a read lock held for no
    // longer than that); Switchboard's own HS256 tokens never touch it.
    current: Arc<RwLock<Arc<Vec<PublicKey>>>>,
    unknown_kid: Option<UnknownKid>,
}

impl std::fmt::Debug for ProviderKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderKeys({:?})", self.current())
    }
}

impl ProviderKeys {
    /// A set holding `keys`.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(keys))),
            unknown_kid: None,
        }
    }

    /// Calls `hook` whenever a token names a `kid` the set lacks. The hook must not block:
    /// it runs inside verification.
    pub fn on_unknown_kid(mut self, hook: UnknownKid) -> Self {
        self.unknown_kid = Some(hook);
        self
    }

    /// Replaces every key at once.
    pub fn replace(&self, keys: Vec<PublicKey>) {
        let keys = Arc::new(keys);
        // A poisoned lock only means a writer panicked between two whole sets.
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = keys;
    }

    /// The keys as they are now.
    pub fn current(&self) -> Arc<Vec<PublicKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn report_unknown_kid(&self) {
        if let Some(hook) = &self.unknown_kid {
            hook();
        }
    }
}
