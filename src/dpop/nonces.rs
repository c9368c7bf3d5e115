//! [`DpopNonces`]: server nonces (RFC 9449 §8–9) that replicas share through a secret.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::decode_part;
use crate::clock::now_secs;

/// Server nonces (RFC 9449 §8–9) without server state: a nonce is a time step and its HMAC, so
/// any replica holding the same secret accepts it. A nonce is good for the step it was made in
/// and the next one.
pub struct DpopNonces {
    key: ring::hmac::Key,
    step: u64,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("step", &Duration::from_secs(self.step))
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces that change every `step` (at least a second), under a random secret.
    pub fn new(step: Duration) -> Self {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        Self::with_secret(&secret, step)
    }

    /// Nonces under `secret`, shared by every replica that must accept each other's nonces.
    pub fn with_secret(secret: &[u8], step: Duration) -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
            step: step.as_secs().max(1),
        }
    }

    fn for_step(&self, step: u64) -> String {
        let tag = ring::hmac::sign(&self.key, &step.to_be_bytes());
        let mut raw = Vec::with_capacity(24);
        raw.extend_from_slice(&step.to_be_bytes());
        raw.extend_from_slice(&tag.as_ref()[..16]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The nonce to hand out now.
    pub fn current(&self) -> String {
        self.for_step(now_secs() / self.step)
    }

    /// Whether `nonce` is one of the current or the previous step.
    pub fn accepts(&self, nonce: &str) -> bool {
        let Some(raw) = decode_part(nonce).filter(|raw| raw.len() == 24) else {
            return false;
        };
        let step = u64::from_be_bytes(raw[..8].try_into().unwrap_or_default());
        let now = now_secs() / self.step;
        (step == now || step.saturating_add(1) == now)
            && bool::from(self.for_step(step).as_bytes().ct_eq(nonce.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nonces_are_accepted_for_two_steps_and_never_forged() {
        let nonces = DpopNonces::new(Duration::from_secs(60));
        let current = nonces.current();
        assert!(nonces.accepts(&current));
        let step = now_secs() / 60;
        assert!(nonces.accepts(&nonces.for_step(step - 1)));
        assert!(!nonces.accepts(&nonces.for_step(step - 2)));
        assert!(!nonces.accepts(&nonces.for_step(step + 1)));
        assert!(
            !DpopNonces::new(Duration::from_secs(60)).accepts(&current),
            "another secret"
        );
        assert!(DpopNonces::with_secret(b"s", Duration::from_secs(60))
            .accepts(&DpopNonces::with_secret(b"s", Duration::from_secs(60)).current()));
        assert!(!nonces.accepts("garbage"));
    }

    proptest! {
        #[test]
        fn any_nonce_string_is_refused_unless_issued(nonce in any::<String>()) {
            prop_assert!(!DpopNonces::new(Duration::from_secs(60)).accepts(&nonce));
        }
    }
}
