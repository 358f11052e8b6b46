//! Server authentication as the Collector does it: an extension (`basicauth`,
//! `bearertokenauth`) offers an [`Authenticator`], and a listener names it in its
//! `auth: {authenticator: <extension id>}` block and asks it about every request.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::host::Host;

/// Checks the `Authorization` header of one request.
pub trait ServerAuthenticator: Send + Sync {
    /// Whether the request may pass. Can be slow (bcrypt): call it off the async threads.
    fn authenticate(&self, authorization: Option<&str>) -> bool;
    /// The `WWW-Authenticate` challenge sent with a 401.
    fn challenge(&self) -> &'static str;
}

/// What an auth extension registers as its service ([`Host::extension`]).
#[derive(Clone)]
pub struct Authenticator(pub Arc<dyn ServerAuthenticator>);

/// A listener's `auth` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSetting {
    /// The id of the auth extension, e.g. `basicauth/server`; it must be listed under
    /// `service::extensions`.
    pub authenticator: String,
}

/// What a request gets from an `auth` block.
pub enum Verdict {
    Pass,
    /// 401 with this challenge.
    Refused(&'static str),
    /// The named extension is not running (a config error the operator must see).
    Missing(String),
}

impl AuthSetting {
    /// Asks the running extension about `authorization` (looked up per request, so a
    /// reloaded extension is used at once).
    pub async fn check(&self, host: &Host, authorization: Option<String>) -> Verdict {
        let Some(auth) = host.extension::<Authenticator>(&self.authenticator) else {
            return Verdict::Missing(format!(
                "auth::authenticator \"{}\" is not a running extension: configure it under extensions and list it in service::extensions",
                self.authenticator
            ));
        };
        let challenge = auth.0.challenge();
        let ok = tokio::task::spawn_blocking(move || auth.0.authenticate(authorization.as_deref())).await.unwrap_or(false);
        if ok { Verdict::Pass } else { Verdict::Refused(challenge) }
    }
}
