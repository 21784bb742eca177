//! Client metadata (RFC 7591 §2): the [`Registration`] policy, the redirect-URI rules every
//! client follows, and a client record from registered or published metadata.

use serde_json::{Map, Value};
use url::Url;

use super::protocol::{ApplicationType, ClientAuthMethod, ErrorCode, GrantType};
use super::store::ClientRecord;
use crate::claims::now_unix;
use crate::jose::{Algorithms, KeySet};
use crate::scope::parse_scope_list;

/// Who may register clients at `POST /register` (RFC 7591). Set with
/// `AuthServerBuilder::registration`; the default is [`Registration::Open`].
/// `Debug` never shows the token ([`Secret`](crate::secret::Secret) is redacted).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Registration {
    /// Anyone may register a client that acts for a user (`authorization_code`,
    /// `refresh_token`): what MCP clients do. `client_credentials` is refused.
    #[default]
    Open,
    /// Every registration needs this initial access token (RFC 7591 §3, `Authorization:
    /// Bearer <token>`; 401 without it). With it, machine clients (`client_credentials`, with
    /// the `scope` they may use) can register too, and no registration lapses unused.
    InitialAccessToken(crate::secret::Secret),
    /// No registration: the endpoint answers 403 and the metadata names none.
    Off,
}

/// The largest registration request (the whole JSON body).
pub(crate) const METADATA_LIMIT: usize = 8 * 1024;

/// RFC 7591 §2 members kept besides the ones the server uses: a string each, `contacts` an
/// array of strings. Everything else is dropped.
const KEPT_STRINGS: [&str; 6] = [
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
];

/// Whether `uri` may be registered: `https`; `http` to a loopback host; a private-use scheme
/// for native applications. Never a fragment, never a script or file scheme.
pub(crate) fn check_redirect_uri(uri: &str, native: bool) -> Result<(), String> {
    let url = Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URL"))?;
    if url.fragment().is_some() {
        return Err(format!("{uri:?} has a fragment"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(format!(
            "{uri:?}: plain http is only allowed for loopback redirects (127.0.0.1, [::1], localhost)"
        )),
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ftp" | "ws" | "wss" => {
            Err(format!("{uri:?}: the scheme is not allowed"))
        }
        _ if native => Ok(()),
        other => Err(format!(
            "{uri:?}: the scheme {other:?} is only allowed for application_type native"
        )),
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether a presented redirect URI matches a registered one: exactly, or, for `http`
/// loopback redirects, with any port (RFC 8252 §7.3).
pub(crate) fn redirect_matches(registered: &str, presented: &str) -> bool {
    if registered == presented {
        return true;
    }
    let (Ok(reg), Ok(pre)) = (Url::parse(registered), Url::parse(presented)) else {
        return false;
    };
    reg.scheme() == "http"
        && pre.scheme() == "http"
        && is_loopback_host(&reg)
        && reg.host() == pre.host()
        && reg.path() == pre.path()
        && reg.query() == pre.query()
        && pre.fragment().is_none()
        && pre.username().is_empty()
        && pre.password().is_none()
}

fn strings(value: Option<&Value>) -> Result<Option<Vec<String>>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or(()))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(()),
    }
}

fn text(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// Validates registration metadata (RFC 7591 §2) into a client record (without id or
/// secret) of a client that acts for a user: `client_credentials` is refused (Client ID
/// Metadata Documents, open registration).
pub(crate) fn client_from_metadata(
    meta: Map<String, Value>,
) -> Result<ClientRecord, (ErrorCode, String)> {
    client_from_registration(meta, None)
}

/// As [`client_from_metadata`]; `machine` holds the scopes the server offers when the
/// operator's initial access token came with the request, which allows `client_credentials`
/// (with a `scope` of offered scopes, which become the client's machine scopes).
pub(crate) fn client_from_registration(
    meta: Map<String, Value>,
    machine: Option<&[String]>,
) -> Result<ClientRecord, (ErrorCode, String)> {
    let invalid = |msg: &str| (ErrorCode::InvalidClientMetadata, msg.to_owned());
    let redirect_uris = strings(meta.get("redirect_uris"))
        .map_err(|()| invalid("redirect_uris must be an array of strings"))?
        .unwrap_or_default();
    let grant_types = strings(meta.get("grant_types"))
        .map_err(|()| invalid("grant_types must be an array of strings"))?
        .map_or_else(
            || Ok(vec![GrantType::AuthorizationCode]),
            |names| names.iter().map(|g| g.parse::<GrantType>()).collect(),
        )
        .map_err(|e| invalid(&e.to_string()))?;
    let response_types = strings(meta.get("response_types"))
        .map_err(|()| invalid("response_types must be an array of strings"))?
        .unwrap_or_else(|| vec!["code".into()]);
    let auth_method = text(meta.get("token_endpoint_auth_method"))
        .map_err(|()| invalid("token_endpoint_auth_method must be a string"))?
        .map_or(Ok(ClientAuthMethod::ClientSecretBasic), |m| m.parse())
        .map_err(|e| invalid(&e.to_string()))?;
    let application_type = text(meta.get("application_type"))
        .map_err(|()| invalid("application_type must be a string"))?
        .map_or(Ok(ApplicationType::Web), |t| t.parse())
        .map_err(|e| invalid(&e.to_string()))?;
    let client_name =
        text(meta.get("client_name")).map_err(|()| invalid("client_name must be a string"))?;
    let scope = text(meta.get("scope")).map_err(|()| invalid("scope must be a string"))?;
    if meta.contains_key("jwks_uri") {
        return Err(invalid(
            "jwks_uri is not supported: register the public keys inline as jwks",
        ));
    }
    let jwks = if auth_method == ClientAuthMethod::PrivateKeyJwt {
        let Some(jwks) = meta.get("jwks").filter(|j| j.is_object()) else {
            return Err(invalid(
                "a private_key_jwt client registers its public keys as jwks (a JWK Set object)",
            ));
        };
        client_keys(jwks).map_err(|e| invalid(&e))?;
        Some(jwks.clone())
    } else {
        None
    };
    if response_types.iter().any(|r| r != "code") {
        return Err(invalid("only the response type \"code\" is supported"));
    }
    if grant_types.contains(&GrantType::JwtBearer) && machine.is_none() {
        return Err(invalid(
            "jwt-bearer clients are configured by the operator, or registered with an initial access token",
        ));
    }
    let machine_scopes = if grant_types.contains(&GrantType::ClientCredentials) {
        let Some(offered) = machine else {
            return Err(invalid(
                "client_credentials clients are configured by the operator, or registered with an initial access token",
            ));
        };
        if !auth_method.is_confidential() {
            return Err(invalid(
                "client_credentials needs a confidential client (a token_endpoint_auth_method other than none)",
            ));
        }
        let scopes = scope.as_deref().map(parse_scope_list).unwrap_or_default();
        if scopes.is_empty() {
            return Err(invalid(
                "a client_credentials client names the scopes it may use in scope",
            ));
        }
        if let Some(bad) = scopes.iter().find(|s| !offered.contains(s)) {
            return Err(invalid(&format!(
                "the scope {bad} is not offered by this server"
            )));
        }
        Some(scopes)
    } else {
        None
    };
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() {
        return Err((
            ErrorCode::InvalidRedirectUri,
            "authorization_code clients need at least one redirect URI".into(),
        ));
    }
    if redirect_uris.len() > 20 {
        return Err((
            ErrorCode::InvalidRedirectUri,
            "at most 20 redirect URIs".into(),
        ));
    }
    for uri in &redirect_uris {
        check_redirect_uri(uri, application_type == ApplicationType::Native)
            .map_err(|e| (ErrorCode::InvalidRedirectUri, e))?;
    }
    let mut kept = Map::new();
    for (name, value) in meta {
        let ok = match (name.as_str(), &value) {
            (n, Value::String(_)) if KEPT_STRINGS.contains(&n) => true,
            ("contacts", Value::Array(items)) => items.iter().all(Value::is_string),
            (n, Value::Null) if KEPT_STRINGS.contains(&n) || n == "contacts" => continue,
            (n, _) if KEPT_STRINGS.contains(&n) || n == "contacts" => false,
            // Typed above, or unknown: not kept.
            _ => continue,
        };
        if !ok {
            return Err(invalid(&format!("{name} has the wrong type")));
        }
        kept.insert(name, value);
    }
    Ok(ClientRecord {
        client_id: String::new(),
        secret_hash: None,
        redirect_uris,
        token_endpoint_auth_method: auth_method,
        jwks,
        grant_types,
        application_type,
        client_name,
        scope,
        metadata: kept,
        issued_at: now_unix(),
        from_metadata_document: false,
        machine_scopes,
        expires_at: None,
    })
}

/// The most keys a client may register.
const MAX_KEYS: usize = 10;

/// The client's registered keys, checked: a JWK Set with at least one usable public key for
/// an asymmetric algorithm, at most ten.
pub(crate) fn client_keys(jwks: &Value) -> Result<KeySet, String> {
    let bytes = serde_json::to_vec(jwks).map_err(|e| format!("jwks: {e}"))?;
    let (set, skipped) = KeySet::from_jwks_json(&bytes, Algorithms::asymmetric(), MAX_KEYS)
        .map_err(|e| format!("jwks: {e}"))?;
    if set.is_empty() {
        return Err(
            "jwks has no usable public key (RSA, EC P-256/P-384 or Ed25519, no private or symmetric keys)"
                .into(),
        );
    }
    if skipped > 0 && set.len() == MAX_KEYS {
        return Err(format!("jwks has more than {MAX_KEYS} keys"));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn metadata_never_yields_a_machine_client() {
        // What open registration and Client ID Metadata Documents go through.
        for body in [
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic", "scope": "mcp:read"}),
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["authorization_code", "client_credentials"]}),
        ] {
            let err = client_from_metadata(meta(body.clone())).expect_err("refused");
            assert_eq!(err.0.as_str(), "invalid_client_metadata", "{body}");
        }
        let offered = ["mcp:read".to_owned()];
        let machine = client_from_registration(
            meta(json!({"grant_types": ["client_credentials"], "scope": "mcp:read"})),
            Some(&offered),
        )
        .expect("with the initial access token");
        assert_eq!(machine.machine_scopes, Some(vec!["mcp:read".to_owned()]));
        let user = client_from_metadata(meta(
            json!({"redirect_uris": ["https://a.example/cb"], "scope": "mcp:read"}),
        ))
        .expect("a client for users");
        assert_eq!(user.machine_scopes, None);
    }

    #[test]
    fn only_known_members_are_kept() {
        let client = client_from_metadata(meta(json!({
            "redirect_uris": ["https://a.example/cb"],
            "client_uri": "https://a.example/",
            "contacts": ["ops@a.example"],
            "software_id": null,
            "junk": "x",
            "client_secret": "chosen-by-the-caller",
            "jwks": {"keys": []}
        })))
        .expect("registered");
        let kept: Vec<&str> = client.metadata.keys().map(String::as_str).collect();
        assert_eq!(kept, ["client_uri", "contacts"]);
        let err = client_from_metadata(meta(
            json!({"redirect_uris": ["https://a.example/cb"], "logo_uri": 7}),
        ))
        .expect_err("a known member of the wrong type");
        assert_eq!(err.0.as_str(), "invalid_client_metadata");
    }

    #[test]
    fn redirect_rules() {
        assert!(check_redirect_uri("https://app.example/cb", false).is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:3000/cb", false).is_ok());
        assert!(check_redirect_uri("http://[::1]/cb", false).is_ok());
        assert!(check_redirect_uri("http://localhost:1234/cb", false).is_ok());
        assert!(check_redirect_uri("http://app.example/cb", false).is_err());
        assert!(check_redirect_uri("https://app.example/cb#x", false).is_err());
        assert!(check_redirect_uri("cursor://callback", false).is_err());
        assert!(check_redirect_uri("cursor://callback", true).is_ok());
        assert!(check_redirect_uri("javascript:alert(1)", true).is_err());
        assert!(check_redirect_uri("/relative", true).is_err());
    }

    #[test]
    fn loopback_redirects_match_any_port_and_nothing_else() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1:53124/callback"));
        assert!(redirect_matches(
            "http://localhost:3000/cb",
            "http://localhost:4000/cb"
        ));
        assert!(!redirect_matches(reg, "http://127.0.0.1:53124/callback2"));
        assert!(!redirect_matches(
            reg,
            "http://127.0.0.1:53124/callback?x=1"
        ));
        assert!(!redirect_matches(reg, "http://localhost:53124/callback"));
        assert!(!redirect_matches(reg, "http://evil@127.0.0.1:5/callback"));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:8443/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb/"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://APP.example/cb"
        ));
    }
}
