//! The gateway's own pages (`mcp_oauth_gateway::web`) and the approval desk on them: built
//! once the gateway's authorization server is, with the key of the data folder (the one
//! `--login` seals upstream tokens with), so that every instance sharing the folder's key and
//! the store agrees on sessions, links and answers.

use std::time::Duration;

use aws_lc_rs::hmac;
use mcp_oauth::auth_server::AuthServer;
use mcp_oauth::policy::Approvals;
use mcp_oauth_gateway::approve::ApprovalDesk;
use mcp_oauth_gateway::web::Pages;

use crate::gateway_args::GatewayArgs;
use crate::gateway_policy::PolicyGate;

/// How long an approval link is valid.
pub(crate) const APPROVAL_TTL: Duration = Duration::from_secs(10 * 60);

/// The pages, and the approval desk when the gateway has a sign-in of its own. With an
/// external issuer the pages say they are unavailable (and a call that needs approval is
/// refused saying so).
pub(crate) async fn pages(
    args: &GatewayArgs,
    server: Option<&AuthServer>,
    gateway_url: &str,
    issuer: &str,
    gate: &PolicyGate,
) -> Result<(Pages, Option<ApprovalDesk>), String> {
    let Some(server) = server else {
        return Ok((
            Pages::unavailable(format!(
                "This gateway verifies the tokens of {issuer} and has no sign-in of its own, so its pages (approvals) cannot be used. Run it without --issuer (its own authorization server, or --login with a provider) to use them."
            )),
            None,
        ));
    };
    let dir = crate::data_dir::resolve(args.dev.data_dir.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create the data folder {}: {e}", dir.display()))?;
    let key = args.login_options.encryption_key(&dir)?;
    let pages = Pages::embedded(server.clone(), gateway_url, key.expose())
        .await
        .map_err(|e| e.to_string())?;
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key.expose()),
        b"mcp-oauth-gateway approval tickets v1",
    );
    let approvals = Approvals::new(derived.as_ref(), server.store().clone(), APPROVAL_TTL);
    let desk = ApprovalDesk::new(
        approvals,
        server.store().clone(),
        pages.clone(),
        gate.clone(),
    );
    gate.approve_with(desk.clone());
    Ok((pages, Some(desk)))
}
