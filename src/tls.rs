//! Serving certificates: generating a development CA and serving certificate, loading PEM
//! files, and reloading them when they change on disk without a restart.
//!
//! Reload is by periodic re-stat of the files' contents (Kubernetes swaps Secret files through
//! symlinks, which file watchers miss); a bad new pair keeps the last good configuration.

use axum_server::tls_rustls::RustlsConfig;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Certificate generation and loading errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// File I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The PEM pair could not be loaded.
    #[error("invalid certificate or key: {0}")]
    Load(String),
}

impl TlsError {
    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsError::Generate(_) => "generate",
            TlsError::Io { .. } => "io",
            TlsError::Load(_) => "load",
        }
    }
}

/// Paths of a generated set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedCerts {
    /// CA certificate (PEM): the `caBundle`.
    pub ca_cert: PathBuf,
    /// Serving certificate (PEM).
    pub cert: PathBuf,
    /// Serving key (PEM).
    pub key: PathBuf,
    /// Base64 of the CA PEM, for `webhooks[].clientConfig.caBundle`.
    pub ca_bundle_b64: String,
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Io { path: path.to_owned(), source })?;
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| TlsError::Io { path: path.to_owned(), source })?;
    }
    Ok(())
}

/// Generates a CA and a serving certificate for `names` (DNS names or IPs) into `dir`
/// as `ca.crt`, `tls.crt`, `tls.key` (the names Kubernetes TLS Secrets use).
pub fn generate(dir: &Path, names: &[String]) -> Result<GeneratedCerts, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_owned(), source })?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "stepcache webhook CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (ca.not_before, ca.not_after) = validity(10);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut leaf = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("stepcache"));
    leaf.distinguished_name = dn;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    (leaf.not_before, leaf.not_after) = validity(2);
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key)?;

    let out = GeneratedCerts {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("tls.crt"),
        key: dir.join("tls.key"),
        ca_bundle_b64: base64::engine::general_purpose::STANDARD.encode(ca_cert.pem()),
    };
    write(&out.ca_cert, &ca_cert.pem(), false)?;
    write(&out.key, &leaf_key.serialize_pem(), true)?;
    write(&out.cert, &leaf_cert.pem(), false)?;
    Ok(out)
}

/// Validity window starting yesterday (clock skew) and lasting `years`.
fn validity(years: i16) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let today = jiff::Zoned::now().date().yesterday().unwrap_or(jiff::civil::date(2026, 1, 1));
    let start = rcgen::date_time_ymd(i32::from(today.year()), today.month() as u8, today.day() as u8);
    let end = rcgen::date_time_ymd(i32::from(today.year() + years), today.month() as u8, today.day().min(28) as u8);
    (start, end)
}

/// Fingerprint of the current file contents, to detect rotation.
pub fn fingerprint(cert: &Path, key: &Path) -> Option<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(std::fs::read(cert).ok()?);
    h.update(std::fs::read(key).ok()?);
    Some(h.finalize().into())
}

/// Loads the pair into a server configuration (TLS 1.2+, rustls defaults, h2 and http/1.1).
pub async fn load(cert: &Path, key: &Path) -> Result<RustlsConfig, TlsError> {
    RustlsConfig::from_pem_file(cert, key).await.map_err(|e| TlsError::Load(format!("{}: {e}", cert.display())))
}

/// Re-reads the pair every `interval`; reloads when the contents changed; keeps the last good
/// configuration when the new files are invalid. Runs until the task is dropped.
pub async fn reload_loop(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) {
    let mut last = fingerprint(&cert, &key);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = fingerprint(&cert, &key);
        if now.is_none() || now == last {
            continue;
        }
        match config.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                last = now;
                metrics.cert_reloads.get_or_create(&crate::metrics::ReasonLabel { reason: "ok".into() }).inc();
                tracing::info!(cert = %cert.display(), "serving certificate reloaded");
            }
            Err(e) => {
                metrics.cert_reloads.get_or_create(&crate::metrics::ReasonLabel { reason: "error".into() }).inc();
                tracing::warn!(cert = %cert.display(), error = %e, "new certificate invalid; keeping the previous one");
            }
        }
    }
}
