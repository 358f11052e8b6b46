//! The Collector's server authenticators, as extensions a listener names in its
//! `auth: {authenticator: <id>}` block:
//! - `basicauth`: users from `htpasswd` (`file` and/or `inline`, one `user:password` per
//!   line; bcrypt hashes as `htpasswd -B` writes them, or plain passwords, e.g. from
//!   `${env:…}`);
//! - `bearertokenauth`: `Authorization: <scheme> <token>` with the token from `token` or
//!   the first line of `filename` (reread on every config reload).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use podnet_pipeline::auth::{Authenticator, ServerAuthenticator};
use podnet_pipeline::component::{
    BoxFuture, BuildError, ComponentContext, Extension, ExtensionFactory, Factory, FactoryInfo, Kind, Stability,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Htpasswd {
    pub file: Option<PathBuf>,
    pub inline: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuthConfig {
    pub htpasswd: Htpasswd,
}

/// user → password (bcrypt hash or plain).
fn users(c: &BasicAuthConfig) -> Result<BTreeMap<String, String>, String> {
    let mut text = String::new();
    if let Some(file) = &c.htpasswd.file {
        text = std::fs::read_to_string(file).map_err(|e| format!("htpasswd::file {}: {e}", file.display()))?;
        text.push('\n');
    }
    if let Some(inline) = &c.htpasswd.inline {
        text.push_str(inline);
    }
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
        let (user, password) = line.split_once(':').ok_or_else(|| format!("htpasswd line {}: expected user:password", i + 1))?;
        if user.is_empty() {
            return Err(format!("htpasswd line {}: empty user name", i + 1));
        }
        if password.starts_with('$') && !password.starts_with("$2") {
            return Err(format!(
                "htpasswd line {} ({user}): only bcrypt hashes ($2y$…, htpasswd -B) or plain passwords are supported",
                i + 1
            ));
        }
        users.insert(user.to_string(), password.to_string());
    }
    if users.is_empty() {
        return Err("htpasswd: no users (set htpasswd::file or htpasswd::inline)".into());
    }
    Ok(users)
}

/// Equal without telling by its timing how much of `a` matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct BasicAuth {
    users: BTreeMap<String, String>,
}

impl ServerAuthenticator for BasicAuth {
    fn authenticate(&self, authorization: Option<&str>) -> bool {
        use base64::Engine as _;
        let Some(encoded) = authorization.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(text) = String::from_utf8(decoded) else { return false };
        let Some((user, password)) = text.split_once(':') else { return false };
        match self.users.get(user) {
            Some(hash) if hash.starts_with("$2") => bcrypt::verify(password, hash).unwrap_or(false),
            Some(plain) => same(plain.as_bytes(), password.as_bytes()),
            None => false,
        }
    }
    fn challenge(&self) -> &'static str {
        "Basic realm=\"podnet\""
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BearerTokenAuthConfig {
    pub scheme: String,
    pub token: Option<String>,
    pub filename: Option<PathBuf>,
}

impl Default for BearerTokenAuthConfig {
    fn default() -> Self {
        BearerTokenAuthConfig { scheme: "Bearer".into(), token: None, filename: None }
    }
}

fn token(c: &BearerTokenAuthConfig) -> Result<String, String> {
    let token = match (&c.token, &c.filename) {
        (Some(t), None) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| format!("filename {}: {e}", f.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string(),
        (Some(_), Some(_)) => return Err("set token or filename, not both".into()),
        (None, None) => return Err("set token (e.g. ${env:OTLP_TOKEN}) or filename".into()),
    };
    if token.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(token)
}

struct BearerAuth {
    expected: String,
}

impl ServerAuthenticator for BearerAuth {
    fn authenticate(&self, authorization: Option<&str>) -> bool {
        authorization.is_some_and(|h| same(h.trim().as_bytes(), self.expected.as_bytes()))
    }
    fn challenge(&self) -> &'static str {
        "Bearer realm=\"podnet\""
    }
}

/// An auth extension runs nothing: it only offers its authenticator until shutdown.
struct Offered {
    service: Authenticator,
    ctx: ComponentContext,
}

impl Extension for Offered {
    fn service(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(Arc::new(self.service.clone()))
    }
    fn run(self: Box<Self>) -> BoxFuture {
        Box::pin(async move { self.ctx.shutdown.cancelled().await })
    }
}

pub struct BasicAuthExtensionFactory;

impl Factory for BasicAuthExtensionFactory {
    type Config = BasicAuthConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "basicauth",
            aliases: &[],
            kind: Kind::Extension,
            signals: &[],
            stability: Stability::Beta,
            description: "HTTP basic auth for listeners (htpasswd users, bcrypt or plain), named by their auth::authenticator",
            probes: &[],
        }
    }
    fn validate(&self, c: &BasicAuthConfig) -> Result<(), String> {
        users(c).map(|_| ())
    }
}

impl ExtensionFactory for BasicAuthExtensionFactory {
    fn create(&self, c: &BasicAuthConfig, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError> {
        let users = users(c).map_err(BuildError::new)?;
        Ok(Box::new(Offered { service: Authenticator(Arc::new(BasicAuth { users })), ctx }))
    }
}

pub struct BearerTokenAuthExtensionFactory;

impl Factory for BearerTokenAuthExtensionFactory {
    type Config = BearerTokenAuthConfig;
    fn info(&self) -> FactoryInfo {
        FactoryInfo {
            type_name: "bearertokenauth",
            aliases: &[],
            kind: Kind::Extension,
            signals: &[],
            stability: Stability::Beta,
            description: "Bearer-token auth for listeners (token or filename), named by their auth::authenticator",
            probes: &[],
        }
    }
    fn validate(&self, c: &BearerTokenAuthConfig) -> Result<(), String> {
        if c.scheme.is_empty() || c.scheme.contains(' ') {
            return Err(format!("scheme \"{}\" must be one word, like Bearer", c.scheme));
        }
        // A token file may be written after the config (a mounted Secret): checked at start.
        if c.filename.is_none() { token(c).map(|_| ()) } else { Ok(()) }
    }
}

impl ExtensionFactory for BearerTokenAuthExtensionFactory {
    fn create(&self, c: &BearerTokenAuthConfig, ctx: ComponentContext) -> Result<Box<dyn Extension>, BuildError> {
        let expected = format!("{} {}", c.scheme, token(c).map_err(BuildError::new)?);
        Ok(Box::new(Offered { service: Authenticator(Arc::new(BearerAuth { expected })), ctx }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn basic(s: &str) -> String {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s))
    }

    #[test]
    fn basic_auth_takes_bcrypt_and_plain_passwords() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let c = BasicAuthConfig { htpasswd: Htpasswd { file: None, inline: Some(format!("agent:{hash}\n# comment\nops:plain-pw\n")) } };
        let auth = BasicAuth { users: users(&c).unwrap() };
        assert!(auth.authenticate(Some(&basic("agent:s3cret"))));
        assert!(auth.authenticate(Some(&basic("ops:plain-pw"))));
        assert!(!auth.authenticate(Some(&basic("agent:wrong"))));
        assert!(!auth.authenticate(Some(&basic("ops:plain-p"))));
        assert!(!auth.authenticate(Some(&basic("nobody:s3cret"))));
        assert!(!auth.authenticate(None));
        assert!(!auth.authenticate(Some("Bearer s3cret")));
    }

    #[test]
    fn basic_auth_config_errors_say_what_to_fix() {
        let bad = |inline: &str| users(&BasicAuthConfig { htpasswd: Htpasswd { file: None, inline: Some(inline.into()) } }).unwrap_err();
        assert_eq!(bad("no-colon"), "htpasswd line 1: expected user:password");
        assert!(bad("u:$apr1$xyz$abc").contains("only bcrypt hashes"));
        assert_eq!(bad(""), "htpasswd: no users (set htpasswd::file or htpasswd::inline)");
        let missing =
            users(&BasicAuthConfig { htpasswd: Htpasswd { file: Some("/nonexistent/htpasswd".into()), inline: None } }).unwrap_err();
        assert!(missing.starts_with("htpasswd::file /nonexistent/htpasswd: "), "{missing}");
    }

    #[test]
    fn bearer_token_from_config_or_file() {
        let auth = BearerAuth {
            expected: format!("Bearer {}", token(&BearerTokenAuthConfig { token: Some("t0k".into()), ..Default::default() }).unwrap()),
        };
        assert!(auth.authenticate(Some("Bearer t0k")));
        assert!(!auth.authenticate(Some("Bearer t0")));
        assert!(!auth.authenticate(Some("Basic t0k")));
        assert!(!auth.authenticate(None));
        let dir = std::env::temp_dir().join(format!("podnet-bearer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "from-file\n").unwrap();
        let c = BearerTokenAuthConfig { filename: Some(dir.join("token")), ..Default::default() };
        assert_eq!(token(&c).unwrap(), "from-file");
        assert_eq!(token(&BearerTokenAuthConfig::default()).unwrap_err(), "set token (e.g. ${env:OTLP_TOKEN}) or filename");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
