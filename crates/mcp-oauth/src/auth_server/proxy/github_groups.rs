//! GitHub organisations and teams as groups at sign-in
//! ([`UpstreamBuilder::github_groups`](crate::auth_server::UpstreamBuilder::github_groups)):
//! `GET /user/orgs` gives `org`, `GET /user/teams` gives `org/team`, both with the user's
//! upstream token, added to the `groups` claim of the signed-in user.

use serde_json::Value;
use url::Url;

use crate::auth_server::login::UserIdentity;
use crate::auth_server::upstream::{ProxyError, Upstream};
use crate::fetch::RequestAuth;

/// Items per page (GitHub's largest).
const PER_PAGE: usize = 100;
/// Pages read of each list.
const MAX_PAGES: usize = 10;

/// Adds the user's organisations and teams to `identity`'s `groups` claim, and logs each
/// group with the endpoint it came from.
pub(super) async fn add(
    upstream: &Upstream,
    api: &Url,
    token: &str,
    identity: &mut UserIdentity,
) -> Result<(), ProxyError> {
    let orgs: Vec<String> = list(upstream, api, "user/orgs", token)
        .await?
        .iter()
        .filter_map(|org| org.get("login").and_then(Value::as_str))
        .map(str::to_owned)
        .collect();
    let teams: Vec<String> = list(upstream, api, "user/teams", token)
        .await?
        .iter()
        .filter_map(|team| {
            let org = team.get("organization")?.get("login")?.as_str()?;
            let slug = team.get("slug")?.as_str()?;
            Some(format!("{org}/{slug}"))
        })
        .collect();
    tracing::info!(
        target: "mcp_oauth::proxy",
        subject = %identity.subject,
        from_user_orgs = %orgs.join(" "),
        from_user_teams = %teams.join(" "),
        "groups from GitHub: organisations (GET /user/orgs) and teams (GET /user/teams)"
    );
    let mut groups: Vec<Value> = match identity.claims.remove("groups") {
        Some(Value::Array(existing)) => existing,
        Some(Value::String(one)) => vec![Value::String(one)],
        _ => Vec::new(),
    };
    for group in orgs.into_iter().chain(teams) {
        let group = Value::String(group);
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    identity
        .claims
        .insert("groups".to_owned(), Value::Array(groups));
    Ok(())
}

/// Every item of a paged GitHub list (up to [`MAX_PAGES`] pages).
async fn list(
    upstream: &Upstream,
    api: &Url,
    path: &str,
    token: &str,
) -> Result<Vec<Value>, ProxyError> {
    let mut items = Vec::new();
    for page in 1..=MAX_PAGES {
        let mut url = api
            .join(path)
            .map_err(|e| ProxyError::Identity(format!("GitHub {path}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("per_page", &PER_PAGE.to_string())
            .append_pair("page", &page.to_string());
        let fetched = upstream
            .http
            .get_json_with(&url, RequestAuth::Bearer(token))
            .await
            .map_err(|e| ProxyError::Identity(format!("GitHub {path}: {}", e.kind)))?;
        let Ok(Value::Array(page_items)) = serde_json::from_slice::<Value>(&fetched.body) else {
            return Err(ProxyError::Identity(format!(
                "GitHub {path}: the answer is not a JSON array"
            )));
        };
        let full = page_items.len() >= PER_PAGE;
        items.extend(page_items);
        if !full {
            break;
        }
    }
    Ok(items)
}
