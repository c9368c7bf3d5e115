//! [`SealingKey`]: AES-256-GCM for what is kept at rest (the client's sealed file store, the
//! authorization server's kept upstream tokens). Ring is the crate's one crypto backend.

/// A key that seals records (AES-256-GCM, a random 96-bit nonce per record). `Debug` shows
/// nothing of it.
pub struct SealingKey(ring::aead::LessSafeKey);

impl SealingKey {
    /// A key from 32 random bytes (AES-256).
    pub fn new(bytes: &[u8; 32]) -> Self {
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, bytes)
            .expect("32 bytes make an AES-256 key");
        Self(ring::aead::LessSafeKey::new(key))
    }

    /// 32 new random bytes for a key, to keep wherever the key is kept.
    pub fn generate_bytes() -> [u8; 32] {
        rand::random()
    }

    /// `plaintext` sealed and bound to `context` (which must be given again to open it): the
    /// nonce, then the ciphertext and its tag.
    pub(crate) fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; 12] = rand::random();
        let mut sealed = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce_bytes),
                ring::aead::Aad::from(context),
                &mut sealed,
            )
            .expect("AES-GCM seals anything shorter than 64 GiB");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext, or `None` when `sealed` was not sealed by this key for `context` or was
    /// altered.
    pub(crate) fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(12)?;
        let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plaintext = self
            .0
            .open_in_place(nonce, ring::aead::Aad::from(context), &mut buffer)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_with_its_key_and_context() {
        let key = SealingKey::new(&[3; 32]);
        let sealed = key.seal(b"refresh token", b"alice");
        assert_eq!(
            key.open(&sealed, b"alice").as_deref(),
            Some(&b"refresh token"[..])
        );
        assert!(
            key.open(&sealed, b"mallory").is_none(),
            "bound to its context"
        );
        assert!(SealingKey::new(&[4; 32]).open(&sealed, b"alice").is_none());
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(key.open(&altered, b"alice").is_none());
        assert!(key.open(&sealed[..11], b"alice").is_none());
    }
}
