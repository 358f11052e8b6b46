//! Prometheus' web config file (`--web.config.file` of Prometheus and its exporters, the
//! exporter-toolkit format) for the scrape endpoint: TLS (`tls_server_config`, with client
//! certificates for mTLS) and basic auth (`basic_auth_users`, bcrypt hashes). The same file a
//! node_exporter user already has works here, and Prometheus scrapes with its usual
//! `scheme: https`, `tls_config` and `basic_auth`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use podnet_configtls::{ClientAuth, ServerFiles};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    #[serde(default = "no_client_cert")]
    client_auth_type: String,
}

fn no_client_cert() -> String {
    "NoClientCert".into()
}

/// What the endpoint enforces.
#[derive(Clone)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// user → bcrypt hash.
    pub users: Arc<BTreeMap<String, String>>,
}

/// Paths in the file are relative to the file, as in Prometheus.
fn relative(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { base.parent().unwrap_or(Path::new(".")).join(p) }
}

impl WebConfig {
    /// Reads and checks `path`; errors name the file and the key.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let at = |key: &str, e: &dyn std::fmt::Display| format!("web_config_file {}: {key}: {e}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| format!("web_config_file {}: cannot read: {e}", path.display()))?;
        let file: File = serde_norway::from_str(&text).map_err(|e| format!("web_config_file {}: {e}", path.display()))?;
        for (user, hash) in &file.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(at(&format!("basic_auth_users::{user}"), &"not a bcrypt hash (htpasswd -nBC 10 \"\" | tr -d ':\\n')"));
            }
        }
        let tls = match &file.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(server_config(t, path).map_err(|(key, e)| at(&format!("tls_server_config::{key}"), &e))?)),
        };
        Ok(WebConfig { tls, users: Arc::new(file.basic_auth_users) })
    }

    /// Whether `authorization` (the header's value) names a user and the password of its hash.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        use base64::Engine as _;
        let Some(encoded) = authorization.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(text) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = text.split_once(':') else { return false };
        self.users.get(user).is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }
}

fn server_config(t: &TlsServerConfig, file: &Path) -> Result<rustls::ServerConfig, (&'static str, String)> {
    let client_auth = match t.client_auth_type.as_str() {
        "NoClientCert" => ClientAuth::None,
        "RequireAndVerifyClientCert" => ClientAuth::Required,
        "VerifyClientCertIfGiven" => ClientAuth::IfGiven,
        other => {
            return Err((
                "client_auth_type",
                format!("{other:?} is not supported (NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"),
            ));
        }
    };
    let client_ca = t.client_ca_file.as_ref().map(|ca| relative(file, ca));
    podnet_configtls::server_config(&ServerFiles {
        cert_file: &relative(file, &t.cert_file),
        key_file: &relative(file, &t.key_file),
        client_ca_file: client_ca.as_deref(),
        client_auth,
        min_tls13: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_checks_users_and_bcrypt_hashes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let web = WebConfig { tls: None, users: Arc::new([("prom".to_string(), hash)].into()) };
        use base64::Engine as _;
        let header = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(web.authorized(Some(&header("prom:s3cret"))));
        assert!(!web.authorized(Some(&header("prom:wrong"))));
        assert!(!web.authorized(Some(&header("other:s3cret"))));
        assert!(!web.authorized(None));
        assert!(!web.authorized(Some("Bearer x")));
        let open = WebConfig { tls: None, users: Arc::new(BTreeMap::new()) };
        assert!(open.authorized(None));
    }

    #[test]
    fn errors_name_the_file_and_key() {
        let dir = std::env::temp_dir().join(format!("podnet-webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("web.yml");
        std::fs::write(&file, "basic_auth_users:\n  prom: plaintext\n").unwrap();
        let err = WebConfig::load(&file).err().unwrap();
        assert!(err.contains("web.yml: basic_auth_users::prom: not a bcrypt hash"), "{err}");
        std::fs::write(&file, "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n").unwrap();
        let err = WebConfig::load(&file).err().unwrap();
        assert!(err.contains("tls_server_config::cert_file") && err.contains("missing.crt"), "{err}");
        std::fs::write(&file, "http_server_config: {}\n").unwrap();
        assert!(WebConfig::load(&file).err().unwrap().contains("http_server_config"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
