//! Vocabulary shared by every layer: checked newtypes for the values that cross module lines.
//!
//! Owns: `CacheKey`, `Staleness`, `CacheSeed`, `Namespace`, `StepOutputs`, `EntryId`.
//! Must not import any other module of this crate.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The key format version; bumping it starts every cache over, so it is part of every key.
pub const KEY_FORMAT: &str = "v3";

/// Longest accepted cache seed: seeds are labels for a cache track, not payloads.
pub const MAX_SEED_BYTES: usize = 253;

/// Errors raised when a raw value does not satisfy a vocabulary type's invariant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypeError {
    /// A key string is not `<format>:<64 lowercase hex>`.
    #[error("cache key {0:?} is not of the form v3:<64 lowercase hex digits>")]
    MalformedKey(String),
    /// A seed is longer than [`MAX_SEED_BYTES`] or contains control characters.
    #[error("cache seed is invalid: {0}")]
    InvalidSeed(String),
    /// A namespace is not a DNS-1123 label.
    #[error("namespace {0:?} is not a valid Kubernetes namespace name")]
    InvalidNamespace(String),
    /// A staleness in seconds is negative or beyond the representable range.
    #[error("staleness {0} seconds is out of range")]
    StalenessOutOfRange(i64),
}

impl TypeError {
    /// Bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TypeError::MalformedKey(_) => "malformed_key",
            TypeError::InvalidSeed(_) => "invalid_seed",
            TypeError::InvalidNamespace(_) => "invalid_namespace",
            TypeError::StalenessOutOfRange(_) => "staleness_out_of_range",
        }
    }
}

/// A versioned cache key (`v3:<sha256 hex>`); only built by key derivation or by parsing a stored one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CacheKey(String);

impl CacheKey {
    /// Builds a key from a SHA-256 digest so the format prefix is applied in exactly one place.
    pub fn from_digest(digest: &[u8]) -> CacheKey {
        CacheKey(format!("{KEY_FORMAT}:{}", hex::encode(digest)))
    }

    /// Parses a key read from a pod mark, the store or the command line. Keys of earlier formats
    /// (`v2:`, `v1:`) still parse, so entries recorded before a format bump can be listed,
    /// invalidated and purged; they never equal a key derived now.
    pub fn parse(raw: &str) -> Result<CacheKey, TypeError> {
        let ok = [KEY_FORMAT, "v2", "v1"]
            .iter()
            .find_map(|f| raw.strip_prefix(f).and_then(|r| r.strip_prefix(':')))
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if ok {
            Ok(CacheKey(raw.to_owned()))
        } else {
            Err(TypeError::MalformedKey(raw.chars().take(80).collect()))
        }
    }

    /// The key as text, for storage and annotations.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CacheKey {
    type Error = TypeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CacheKey::parse(&value)
    }
}

impl From<CacheKey> for String {
    fn from(k: CacheKey) -> String {
        k.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How old a cached execution may be and still be served to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Staleness {
    /// No age bound: any live entry may be served.
    Unbounded,
    /// Entries finished at most this many seconds ago may be served; 0 never reuses.
    Seconds(u64),
}

impl Staleness {
    /// Stored representation shared by both backends: seconds, or -1 for unbounded.
    pub fn to_db(self) -> i64 {
        match self {
            Staleness::Unbounded => -1,
            Staleness::Seconds(s) => i64::try_from(s).unwrap_or(i64::MAX),
        }
    }

    /// Inverse of [`Staleness::to_db`]; any negative value means unbounded.
    pub fn from_db(v: i64) -> Staleness {
        if v < 0 {
            Staleness::Unbounded
        } else {
            Staleness::Seconds(v.unsigned_abs())
        }
    }

    /// True when this staleness forbids serving any entry.
    pub fn never_reuse(self) -> bool {
        self == Staleness::Seconds(0)
    }

    /// The smaller of two bounds, so an admin cap can be applied to an author's value.
    ///
    /// ```
    /// use stepcache_core::types::Staleness;
    /// let cap = Staleness::Seconds(3600);
    /// assert_eq!(Staleness::Unbounded.min(cap), cap);
    /// assert_eq!(Staleness::Seconds(60).min(cap), Staleness::Seconds(60));
    /// ```
    pub fn min(self, other: Staleness) -> Staleness {
        match (self, other) {
            (Staleness::Unbounded, o) => o,
            (s, Staleness::Unbounded) => s,
            (Staleness::Seconds(a), Staleness::Seconds(b)) => Staleness::Seconds(a.min(b)),
        }
    }
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Staleness::Unbounded => f.write_str("unbounded"),
            Staleness::Seconds(s) => write!(f, "{s}s"),
        }
    }
}

/// The author's cache track; the empty seed is the default track.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CacheSeed(String);

impl CacheSeed {
    /// Checks length and rejects control characters so seeds stay printable and bounded.
    pub fn parse(raw: &str) -> Result<CacheSeed, TypeError> {
        if raw.len() > MAX_SEED_BYTES {
            return Err(TypeError::InvalidSeed(format!("{} bytes, at most {MAX_SEED_BYTES} allowed", raw.len())));
        }
        if raw.chars().any(char::is_control) {
            return Err(TypeError::InvalidSeed("contains control characters".into()));
        }
        Ok(CacheSeed(raw.to_owned()))
    }

    /// The seed as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CacheSeed {
    type Error = TypeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        CacheSeed::parse(&value)
    }
}

impl From<CacheSeed> for String {
    fn from(s: CacheSeed) -> String {
        s.0
    }
}

/// A Kubernetes namespace name (DNS-1123 label), the default cache scope.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    /// Validates a DNS-1123 label so a namespace can be trusted inside keys and queries.
    pub fn parse(raw: &str) -> Result<Namespace, TypeError> {
        let b = raw.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric);
        if ok {
            Ok(Namespace(raw.to_owned()))
        } else {
            Err(TypeError::InvalidNamespace(raw.chars().take(80).collect()))
        }
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Namespace {
    type Error = TypeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Namespace::parse(&value)
    }
}

impl From<Namespace> for String {
    fn from(n: Namespace) -> String {
        n.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Row id of a stored execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntryId(pub i64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One output parameter as Argo reports it: the value plus whatever else the template declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputParameter {
    /// Parameter name as declared in the template.
    pub name: String,
    /// The value the run produced; `None` means the run did not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Other fields (`valueFrom`, `description`, ...) kept verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// One output artifact as Argo reports it: a reference to its stored location, never its bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputArtifact {
    /// Artifact name as declared in the template (or `main-logs`).
    pub name: String,
    /// Location and options (`s3.key`, `path`, ...) kept verbatim.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// The outputs of a step in the shape Argo's `Outputs` has, minus `exitCode`
/// (the controller derives the exit code from the `main` container).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepOutputs {
    /// Output parameters with their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<OutputParameter>,
    /// Output artifacts by reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<OutputArtifact>,
    /// Captured stdout of script templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl StepOutputs {
    /// True when nothing at all was reported.
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty() && self.artifacts.is_empty() && self.result.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parse_accepts_current_and_previous_format_hex_only() {
        for f in ["v3", "v2", "v1"] {
            let good = format!("{f}:{}", "a".repeat(64));
            assert!(CacheKey::parse(&good).is_ok());
            assert!(CacheKey::parse(&format!("{f}:abc")).is_err());
            assert!(CacheKey::parse(&format!("{f}:{}", "A".repeat(64))).is_err());
        }
        assert!(CacheKey::parse(&format!("v4:{}", "a".repeat(64))).is_err());
        assert!(CacheKey::parse(&format!("v3{}", "a".repeat(64))).is_err());
        assert!(CacheKey::from_digest(&[0u8; 32]).as_str().starts_with("v3:"));
    }

    #[test]
    fn staleness_round_trips_through_db_form() {
        for s in [Staleness::Unbounded, Staleness::Seconds(0), Staleness::Seconds(86400)] {
            assert_eq!(Staleness::from_db(s.to_db()), s);
        }
    }

    #[test]
    fn staleness_min_applies_cap() {
        assert_eq!(Staleness::Unbounded.min(Staleness::Seconds(5)), Staleness::Seconds(5));
        assert_eq!(Staleness::Seconds(3).min(Staleness::Seconds(5)), Staleness::Seconds(3));
        assert_eq!(Staleness::Unbounded.min(Staleness::Unbounded), Staleness::Unbounded);
    }

    #[test]
    fn namespace_must_be_dns_label() {
        assert!(Namespace::parse("ml-team").is_ok());
        assert!(Namespace::parse("ML").is_err());
        assert!(Namespace::parse("-a").is_err());
        assert!(Namespace::parse("").is_err());
        assert!(Namespace::parse(&"a".repeat(64)).is_err());
    }

    #[test]
    fn seed_rejects_oversize_and_control_chars() {
        assert!(CacheSeed::parse("track-2").is_ok());
        assert!(CacheSeed::parse(&"x".repeat(MAX_SEED_BYTES + 1)).is_err());
        assert!(CacheSeed::parse("a\nb").is_err());
    }

    #[test]
    fn outputs_keep_unknown_fields() {
        let raw = serde_json::json!({"parameters":[{"name":"p","value":"1","valueFrom":{"path":"/x"}}],
            "artifacts":[{"name":"a","s3":{"key":"k"}}],"result":"r"});
        let o: StepOutputs = serde_json::from_value(raw.clone()).unwrap_or_default();
        assert_eq!(serde_json::to_value(&o).ok(), Some(raw));
    }
}
