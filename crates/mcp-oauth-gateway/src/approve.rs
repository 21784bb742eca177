//! Human approval of one exact call: the answer a call gets while it waits, the approval
//! page, and the retried call that passes once.
//!
//! A gatekeeper that finds a call needs approval (the policy's `[[policy.approve]]`) hands it
//! to [`ApprovalDesk::admit`] with the call's binding ([`ApprovalCall`]: user, upstream, tool,
//! SHA-256 of the canonical arguments, policy version):
//!
//! - with no answer yet, a client that declared URL-mode elicitation gets a JSON-RPC error
//!   [`APPROVAL_REQUIRED`] (-32042, the MCP 2025-11-25 `URLElicitationRequiredError`) whose
//!   `data.elicitations[0]` is a URL-mode elicitation: the link to the approval page, carrying
//!   a signed ticket that expires; any other client gets a tool error result whose text names
//!   the link (the gateway turns the refusal into what the session's client declared it
//!   handles);
//! - an approver opens the link, signs in ([`crate::web`]), sees the user, the upstream, the
//!   tool, the canonical arguments and the expiry, and approves or refuses; they must be one
//!   of the rule's approvers (the caller themself by default, or a member of a group); the
//!   session that waited (with URL-mode elicitation, on this instance) then gets
//!   `notifications/elicitation/complete` on its GET stream;
//! - the identical call, retried, redeems the answer: approved, it goes upstream once (the
//!   audit line says `approved_by`); refused, the client is told so. A call with other
//!   arguments is another binding and needs its own approval; a ticket is answered once.
//!
//! Answers live in the authorization server's store ([`Approvals`]), so every gateway
//! instance sharing the store agrees; tickets are signed with a key every instance shares.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use mcp_oauth::auth_server::store::{Kind, Store};
use mcp_oauth::policy::{ApprovalCall, ApprovalError, Approvals, Approvers};
use serde::Deserialize;

use crate::gate::{Decision, Refusal};
use crate::web::{self, Pages, SignedIn, Visitor};

/// Where the approval page is.
pub const APPROVE_PATH: &str = "/gateway/approve";
/// The JSON-RPC error code of a call waiting for approval: the MCP (2025-11-25)
/// `URLElicitationRequiredError`, as for a missing upstream credential.
pub use crate::upstream::ACTION_REQUIRED as APPROVAL_REQUIRED;
/// The JSON-RPC error code of a call an approver refused.
pub const APPROVAL_REFUSED: i64 = -32043;

/// What the approval page asks of the policy in force.
pub trait ApprovalPolicy: Send + Sync + 'static {
    /// Who may approve `call` under the policy in force; `None` when that policy no longer
    /// asks for approval of it (another policy version, a tool no rule names): the link is
    /// then stale.
    fn approvers(&self, call: &ApprovalCall) -> Option<Vec<Approvers>>;

    /// The groups `visitor` is in, as the policy sees them. Default: their token's `groups`.
    fn groups(&self, visitor: &Visitor) -> Vec<String> {
        visitor.groups().to_vec()
    }
}

/// Approvals at the gateway: the gatekeeper's answer for a call that needs one, and the page
/// where it is given; cheap to clone. See the [module docs](self).
#[derive(Clone)]
pub struct ApprovalDesk {
    approvals: Arc<Approvals>,
    /// Where the canonical arguments of a waiting call are kept for the page.
    store: Arc<dyn Store>,
    pages: Pages,
    policy: Arc<dyn ApprovalPolicy>,
}

impl std::fmt::Debug for ApprovalDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalDesk")
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<ApprovalDesk> for Pages {
    fn from_ref(desk: &ApprovalDesk) -> Self {
        desk.pages.clone()
    }
}

fn refusal(code: i64, message: String, data: Option<serde_json::Value>, reason: &str) -> Decision {
    Decision::Refuse(Refusal {
        code,
        message,
        data,
        reason: reason.to_owned(),
    })
}

impl ApprovalDesk {
    /// A desk keeping answers with `approvals` (and the waiting calls' arguments in `store`,
    /// the same store), showing its page on `pages`, asking `policy` who may approve.
    pub fn new(
        approvals: Approvals,
        store: Arc<dyn Store>,
        pages: Pages,
        policy: impl ApprovalPolicy,
    ) -> Self {
        Self {
            approvals: Arc::new(approvals),
            store,
            pages,
            policy: Arc::new(policy),
        }
    }

    /// The link to the approval page for `ticket`.
    fn link(&self, ticket: &str) -> String {
        self.pages.url(&format!("{APPROVE_PATH}?ticket={ticket}"))
    }

    /// The gatekeeper's answer for `call` (made with `arguments`), which needs approval under
    /// the rule `rule`: [`Decision::Approved`] when an approval of this exact call is there
    /// (it is used up), else a refusal carrying the approval link (or saying the call was
    /// refused).
    pub async fn admit(
        &self,
        call: &ApprovalCall,
        arguments: &serde_json::Value,
        rule: &str,
    ) -> Decision {
        let reason = format!("approve:{rule}");
        match self.approvals.redeem(call).await {
            Ok(Some(answer)) if answer.approved => Decision::Approved(answer.approver),
            Ok(Some(answer)) => refusal(
                APPROVAL_REFUSED,
                format!(
                    "{} refused this call of `{}`; make it again to ask for a new approval",
                    answer.approver, call.tool
                ),
                Some(serde_json::json!({ "refusedBy": answer.approver })),
                &reason,
            ),
            Ok(None) if !self.pages.is_available() => refusal(
                APPROVAL_REQUIRED,
                format!(
                    "the call of `{}` needs a human's approval, and this gateway has no approval page (it has no sign-in of its own)",
                    call.tool
                ),
                None,
                &reason,
            ),
            Ok(None) => {
                let ticket = self.approvals.ticket(call);
                let url = self.link(&ticket);
                let expires_at = self.approvals.open(&ticket).map(|(_, at)| at).ok();
                // The page shows the arguments: kept (canonical) until the newest ticket for
                // them expires, never for good.
                if let Some(expires_at) = expires_at {
                    let kept = self
                        .store
                        .put(
                            Kind::Approval,
                            &format!("arguments:{}", call.arguments_sha256),
                            mcp_oauth::audit::canonical_json(arguments).into_bytes(),
                            Some(expires_at),
                        )
                        .await;
                    if let Err(e) = kept {
                        tracing::error!(target: "mcp_oauth_gateway", "approvals: {e}");
                    }
                }
                let message = format!(
                    "the call of `{}` needs approval: open {url}, then make the same call again",
                    call.tool
                );
                let mut data = crate::upstream::user_secret::action_data(&message, &url);
                if let Some(fields) = data.as_object_mut() {
                    fields.insert(
                        "approval".to_owned(),
                        serde_json::json!({ "url": url, "expiresAt": expires_at }),
                    );
                }
                refusal(APPROVAL_REQUIRED, message, Some(data), &reason)
            }
            Err(e) => {
                tracing::error!(target: "mcp_oauth_gateway", "approvals: {e}");
                refusal(
                    -32603,
                    "the approval cannot be checked; try again later".to_owned(),
                    None,
                    &reason,
                )
            }
        }
    }

    /// The canonical arguments of a waiting call, as kept when the link was made (checked
    /// against the call's SHA-256), else that hash.
    async fn arguments(&self, call: &ApprovalCall) -> String {
        let key = format!("arguments:{}", call.arguments_sha256);
        let kept = match self.store.get(Kind::Approval, &key).await {
            Ok(Some(stored)) => String::from_utf8(stored.data).ok(),
            _ => None,
        };
        kept.filter(|text| {
            serde_json::from_str::<serde_json::Value>(text)
                .is_ok_and(|v| mcp_oauth::audit::canonical_sha256(&v) == call.arguments_sha256)
        })
        .unwrap_or_else(|| format!("(not kept; SHA-256 {})", call.arguments_sha256))
    }

    /// The approval page's routes ([`APPROVE_PATH`]); merge them with [`Pages::router`].
    pub fn router(&self) -> Router {
        Router::new()
            .route(APPROVE_PATH, get(show).post(answer))
            .with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct TicketQuery {
    #[serde(default)]
    ticket: String,
}

#[derive(Deserialize)]
struct AnswerForm {
    #[serde(default)]
    ticket: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    decision: String,
}

/// The ticket's call, if it is valid and the policy still asks for it, with who may approve.
fn open(
    desk: &ApprovalDesk,
    ticket: &str,
) -> Result<(ApprovalCall, i64, Vec<Approvers>), Box<Response>> {
    let pages = &desk.pages;
    let (call, expires_at) = desk.approvals.open(ticket).map_err(|e| {
        Box::new(pages.error_page(
            StatusCode::BAD_REQUEST,
            "This approval link cannot be used",
            &e.to_string(),
        ))
    })?;
    let approvers = desk.policy.approvers(&call).ok_or_else(|| {
        Box::new(pages.error_page(
            StatusCode::CONFLICT,
            "This approval link is out of date",
            "The policy changed since the call was made, and this call no longer needs this approval. Make the call again.",
        ))
    })?;
    Ok((call, expires_at, approvers))
}

fn allowed<'a>(
    desk: &ApprovalDesk,
    visitor: &Visitor,
    call: &ApprovalCall,
    approvers: &'a [Approvers],
) -> Option<&'a Approvers> {
    let groups = desk.policy.groups(visitor);
    approvers
        .iter()
        .find(|a| a.admits(&call.user, visitor.subject(), &groups))
}

fn not_an_approver(pages: &Pages, approvers: &[Approvers]) -> Response {
    let who = approvers
        .iter()
        .map(|a| match a {
            Approvers::Caller => "the user who made the call".to_owned(),
            Approvers::Group(g) => format!("members of the group {g}"),
            _ => "someone else".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" or ");
    pages.error_page(
        StatusCode::FORBIDDEN,
        "You may not approve this call",
        &format!("Only {who} may approve it."),
    )
}

/// When a ticket expires, for the page: in how many minutes, and the Unix time.
fn when(pages: &Pages, unix: i64) -> String {
    let minutes = (unix - pages.now()).max(0) / 60;
    format!("in {minutes} min (Unix time {unix})")
}

async fn show(
    State(desk): State<ApprovalDesk>,
    SignedIn(visitor): SignedIn,
    Query(query): Query<TicketQuery>,
) -> Response {
    let pages = &desk.pages;
    let (call, expires_at, approvers) = match open(&desk, &query.ticket) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    if allowed(&desk, &visitor, &call, &approvers).is_none() {
        return not_an_approver(pages, &approvers);
    }
    let arguments = desk.arguments(&call).await;
    let upstream = if call.upstream.is_empty() {
        "(the only one)".to_owned()
    } else {
        call.upstream.clone()
    };
    let body = format!(
        "<h1>Approve this call?</h1>\
<p class=\"warn\"><code>{user}</code> wants to call a tool that needs approval.</p>\
<dl><dt>User</dt><dd><code>{user}</code></dd><dt>Upstream</dt><dd><code>{upstream}</code></dd>\
<dt>Tool</dt><dd><code id=\"tool\">{tool}</code></dd>\
<dt>Arguments</dt><dd><pre id=\"arguments\">{arguments}</pre></dd>\
<dt>Link expires</dt><dd>{expires}</dd></dl>\
<p>You are signed in as <code>{me}</code>. Approving lets this exact call through once.</p>\
<form method=\"post\" action=\"{APPROVE_PATH}\">{csrf}\
<input type=\"hidden\" name=\"ticket\" value=\"{ticket}\">\
<div class=\"buttons\"><button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\
<button type=\"submit\" name=\"decision\" value=\"refuse\">Refuse</button></div></form>",
        user = web::escape(&call.user),
        upstream = web::escape(&upstream),
        tool = web::escape(&call.tool),
        arguments = web::escape(&arguments),
        expires = web::escape(&when(pages, expires_at)),
        me = web::escape(visitor.subject()),
        csrf = visitor.csrf_field(pages),
        ticket = web::escape(&query.ticket),
    );
    pages.page(StatusCode::OK, "Approve this call?", &body)
}

async fn answer(
    State(desk): State<ApprovalDesk>,
    SignedIn(visitor): SignedIn,
    headers: HeaderMap,
    Form(form): Form<AnswerForm>,
) -> Response {
    let pages = &desk.pages;
    if let Err(refused) = pages.check_form(&visitor, &headers, &form.csrf) {
        return refused.into_response();
    }
    let approved = match form.decision.as_str() {
        "approve" => true,
        "refuse" => false,
        _ => {
            return pages.error_page(
                StatusCode::BAD_REQUEST,
                "No answer",
                "Choose Approve or Refuse.",
            );
        }
    };
    let (call, _, approvers) = match open(&desk, &form.ticket) {
        Ok(opened) => opened,
        Err(page) => return *page,
    };
    let Some(approver) = allowed(&desk, &visitor, &call, &approvers) else {
        return not_an_approver(pages, &approvers);
    };
    let groups = desk.policy.groups(&visitor);
    match desk
        .approvals
        .decide(&form.ticket, approver, visitor.subject(), &groups, approved)
        .await
    {
        Ok(_) => {
            // The session that waited for this link hears that it was answered (URL-mode
            // elicitation's completion), when it is on this instance and declared it.
            crate::elicit::complete(&crate::upstream::user_secret::elicitation_id(
                &desk.link(&form.ticket),
            ));
            let (title, text) = if approved {
                (
                    "Approved",
                    "The call may go through once: make the same call again.",
                )
            } else {
                ("Refused", "The call will not go through.")
            };
            pages.page(
                StatusCode::OK,
                title,
                &format!(
                    "<h1 id=\"answer\">{title}</h1><p>{text}</p><p>Tool <code>{}</code> for <code>{}</code>.</p>",
                    web::escape(&call.tool),
                    web::escape(&call.user)
                ),
            )
        }
        Err(ApprovalError::AlreadyDecided) => pages.error_page(
            StatusCode::CONFLICT,
            "Already answered",
            "This call was already approved or refused. Make the call again for a new link.",
        ),
        Err(ApprovalError::NotAnApprover) => not_an_approver(pages, &approvers),
        Err(e @ (ApprovalError::Forged | ApprovalError::Expired)) => pages.error_page(
            StatusCode::BAD_REQUEST,
            "This approval link cannot be used",
            &e.to_string(),
        ),
        Err(e) => {
            tracing::error!(target: "mcp_oauth_gateway", "approvals: {e}");
            pages.error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The answer could not be recorded. Try again later.",
            )
        }
    }
}
