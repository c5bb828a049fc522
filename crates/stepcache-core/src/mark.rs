//! Signed marks: the miss path marks a pod with its key; the recorder records only pods whose
//! mark is a valid HMAC over key, namespace, pod and workflow identity, staleness and seed, so
//! a user who can create pods cannot plant outputs under someone else's key.
//!
//! Pure; imports only `types`.

use crate::types::{CacheKey, CacheSeed, Namespace, Staleness};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a mark binds together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkClaims<'a> {
    /// The step's cache key.
    pub key: &'a CacheKey,
    /// Pod namespace.
    pub namespace: &'a Namespace,
    /// Pod name.
    pub pod_name: &'a str,
    /// UID of the owning Workflow (empty when unknown).
    pub workflow_uid: &'a str,
    /// Staleness the step was admitted with.
    pub staleness: Staleness,
    /// Seed the step was admitted with.
    pub seed: &'a CacheSeed,
}

/// The per-install signing secret.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(<redacted>)")
    }
}

/// Why a mark was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkError {
    /// Secrets shorter than 16 bytes are guessable.
    #[error("signing key must be at least 16 bytes")]
    WeakSecret,
    /// Not base64.
    #[error("mark is not valid base64")]
    Encoding,
    /// Signature does not match the claims.
    #[error("mark signature does not match the pod")]
    Mismatch,
}

impl MarkError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            MarkError::WeakSecret => "weak_secret",
            MarkError::Encoding => "encoding",
            MarkError::Mismatch => "mismatch",
        }
    }
}

impl Signer {
    /// Builds a signer; refuses short secrets.
    pub fn new(secret: &[u8]) -> Result<Signer, MarkError> {
        if secret.len() < 16 {
            return Err(MarkError::WeakSecret);
        }
        Ok(Signer { secret: secret.to_vec() })
    }

    fn mac(&self, c: &MarkClaims<'_>) -> HmacSha256 {
        // new_from_slice accepts any key length for HMAC; the fallback is unreachable.
        let mut mac = self.keyed();
        for part in [
            "stepcache-mark-v1",
            c.key.as_str(),
            c.namespace.as_str(),
            c.pod_name,
            c.workflow_uid,
            &c.staleness.to_db().to_string(),
            c.seed.as_str(),
        ] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// Signs the claims.
    pub fn sign(&self, c: &MarkClaims<'_>) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(c).finalize().into_bytes())
    }

    /// Signs an opaque token: `<base64url(payload)>.<base64url(hmac)>`, for latch polls.
    pub fn sign_token(&self, payload: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(payload), b64.encode(self.token_mac(payload).finalize().into_bytes()))
    }

    /// Verifies a token from [`Signer::sign_token`] in constant time and returns its payload.
    pub fn verify_token(&self, token: &str) -> Result<Vec<u8>, MarkError> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (p, sig) = token.trim().split_once('.').ok_or(MarkError::Encoding)?;
        let payload = b64.decode(p).map_err(|_| MarkError::Encoding)?;
        let sig = b64.decode(sig).map_err(|_| MarkError::Encoding)?;
        self.token_mac(&payload).verify_slice(&sig).map_err(|_| MarkError::Mismatch)?;
        Ok(payload)
    }

    /// A keyed digest of `bytes` (hex HMAC, domain-separated from marks and tokens): what key
    /// material may hold of a secret value. Unlike a plain hash it cannot be checked against a
    /// guessed value without the install's key.
    pub fn digest_hex(&self, domain: &str, bytes: &[u8]) -> String {
        let mut mac = self.keyed();
        mac.update(b"stepcache-digest-v1\0");
        mac.update(domain.as_bytes());
        mac.update(b"\0");
        mac.update(bytes);
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// The MAC of a token payload, domain-separated from marks.
    fn token_mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed();
        mac.update(b"stepcache-token-v1");
        mac.update(payload);
        mac
    }

    fn keyed(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()))
    }

    /// Verifies a mark in constant time.
    pub fn verify(&self, c: &MarkClaims<'_>, mark: &str) -> Result<(), MarkError> {
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mark.trim()).map_err(|_| MarkError::Encoding)?;
        self.mac(c).verify_slice(&raw).map_err(|_| MarkError::Mismatch)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::parse(&format!("v1:{}", "ab".repeat(32))).unwrap()
    }

    #[test]
    fn a_signed_mark_verifies_and_a_forged_one_does_not() {
        let s = Signer::new(b"0123456789abcdef-secret").unwrap();
        let k = key();
        let ns = Namespace::parse("team-a").unwrap();
        let seed = CacheSeed::default();
        let c = MarkClaims {
            key: &k,
            namespace: &ns,
            pod_name: "p",
            workflow_uid: "u",
            staleness: Staleness::Unbounded,
            seed: &seed,
        };
        let m = s.sign(&c);
        assert_eq!(s.verify(&c, &m), Ok(()));
        let other = Signer::new(b"another-secret-of-16b").unwrap();
        assert_eq!(other.verify(&c, &m), Err(MarkError::Mismatch));
        assert_eq!(s.verify(&c, "!!"), Err(MarkError::Encoding));
    }

    #[test]
    fn a_mark_replayed_on_another_pod_or_namespace_is_rejected() {
        let s = Signer::new(b"0123456789abcdef-secret").unwrap();
        let k = key();
        let ns = Namespace::parse("team-a").unwrap();
        let ns_b = Namespace::parse("team-b").unwrap();
        let seed = CacheSeed::default();
        let c = MarkClaims {
            key: &k,
            namespace: &ns,
            pod_name: "p",
            workflow_uid: "u",
            staleness: Staleness::Unbounded,
            seed: &seed,
        };
        let m = s.sign(&c);
        assert!(s.verify(&MarkClaims { pod_name: "q", ..c.clone() }, &m).is_err());
        assert!(s.verify(&MarkClaims { namespace: &ns_b, ..c.clone() }, &m).is_err());
        assert!(s.verify(&MarkClaims { staleness: Staleness::Seconds(1), ..c.clone() }, &m).is_err());
        assert!(s.verify(&MarkClaims { workflow_uid: "other", ..c }, &m).is_err());
    }

    #[test]
    fn a_token_round_trips_and_a_tampered_one_is_refused() {
        let s = Signer::new(b"0123456789abcdef-secret").unwrap();
        let t = s.sign_token(b"{\"pod\":\"a\"}");
        assert_eq!(s.verify_token(&t).unwrap(), b"{\"pod\":\"a\"}".to_vec());
        let forged = format!(
            "{}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"{\"pod\":\"b\"}"),
            t.split_once('.').unwrap().1
        );
        assert_eq!(s.verify_token(&forged), Err(MarkError::Mismatch));
        assert_eq!(s.verify_token("nodot"), Err(MarkError::Encoding));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(Signer::new(b"short").err(), Some(MarkError::WeakSecret));
    }
}
