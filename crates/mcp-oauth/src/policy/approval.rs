//! Human approval of one exact call: the signed ticket an approval link carries, the approver
//! check, and the single-use approval the retried call redeems.
//!
//! A call that needs approval is described by an [`ApprovalCall`]: the user, the upstream, the
//! tool, the SHA-256 of the canonical arguments (RFC 8785, as in the audit log) and the policy
//! version. [`Approvals::ticket`] signs it (HMAC-SHA-256) with an expiry, for a link;
//! [`Approvals::open`] checks a ticket (a forged or altered one, or an expired one, is
//! refused) so that a page can show the call; [`Approvals::decide`] records the approver's
//! answer in the store under the call's binding, once; [`Approvals::redeem`] takes it when the
//! identical call comes again, so one approval lets one call through. Any change in the user,
//! the tool, the arguments or the policy version is another binding, with no approval.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::Approvers;
use crate::auth_server::store::{Kind, Store, StoreError};

/// The call an approval is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalCall {
    /// The caller's subject.
    pub user: String,
    /// The upstream's name (empty with one upstream).
    pub upstream: String,
    /// The tool.
    pub tool: String,
    /// The SHA-256 (hex) of the canonical JSON of the arguments.
    pub arguments_sha256: String,
    /// The version of the policy that asked for the approval.
    pub policy_version: String,
}

impl ApprovalCall {
    /// The call of `tool` on `upstream` by `user` with `arguments`, under `policy_version`.
    pub fn new(
        user: impl Into<String>,
        upstream: impl Into<String>,
        tool: impl Into<String>,
        arguments: &serde_json::Value,
        policy_version: impl Into<String>,
    ) -> Self {
        Self {
            user: user.into(),
            upstream: upstream.into(),
            tool: tool.into(),
            arguments_sha256: crate::audit::canonical_sha256(arguments),
            policy_version: policy_version.into(),
        }
    }

    /// The store key: the SHA-256 of the whole binding.
    fn binding(&self) -> String {
        let value = serde_json::json!([
            self.user,
            self.upstream,
            self.tool,
            self.arguments_sha256,
            self.policy_version
        ]);
        crate::audit::canonical_sha256(&value)
    }
}

/// The answer an approver gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// Whether the call may go through.
    pub approved: bool,
    /// Who answered (their subject).
    pub approver: String,
}

/// Why a ticket or an answer was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ApprovalError {
    /// The ticket is not one this gateway signed, or was altered.
    Forged,
    /// The ticket has expired.
    Expired,
    /// The approver may not approve this call.
    NotAnApprover,
    /// The call was already approved or refused.
    AlreadyDecided,
    /// The store failed.
    Store(StoreError),
}

impl std::fmt::Display for ApprovalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Forged => "this approval link is not valid",
            Self::Expired => "this approval link has expired: make the call again for a new one",
            Self::NotAnApprover => "you may not approve this call",
            Self::AlreadyDecided => "this call was already approved or refused",
            Self::Store(e) => return write!(f, "the approval cannot be recorded: {e}"),
        })
    }
}

impl std::error::Error for ApprovalError {}

#[derive(Serialize, Deserialize)]
struct Ticket {
    call: ApprovalCall,
    /// Unix seconds.
    expires_at: i64,
    /// Random: each ticket is another one, even for the identical call in the same second
    /// (a ticket is answered once; the next call's link must be answerable).
    #[serde(default)]
    nonce: String,
}

/// Signs approval tickets and keeps the answers: a ticket binds one exact call (user,
/// upstream, tool, SHA-256 of the canonical arguments, policy version) and expires; an answer
/// is recorded once per ticket and redeemed once by the identical call (`docs/policy.md`,
/// "Approvals").
pub struct Approvals {
    key: hmac::Key,
    store: Arc<dyn Store>,
    ttl: Duration,
    clock: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Approvals {
    /// Tickets signed with `secret` (keep it secret, and the same on every instance), valid
    /// for `ttl`, answers kept in `store`.
    pub fn new(secret: &[u8], store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            store,
            ttl,
            clock: Arc::new(unix_now),
        }
    }

    /// Reads the time (Unix seconds) from `clock` (tests). Keep it at or ahead of the real
    /// time: the store lets an answer lapse by its own clock.
    #[must_use]
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A signed ticket for `call`, valid for the configured time (URL-safe text).
    pub fn ticket(&self, call: &ApprovalCall) -> String {
        let mut nonce = [0u8; 16];
        // The system source does not fail on supported platforms; a zero nonce only makes
        // this ticket equal to another one for the identical call in the same second.
        let _ =
            aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut nonce);
        let ticket = Ticket {
            nonce: URL_SAFE_NO_PAD.encode(nonce),
            call: call.clone(),
            expires_at: (self.clock)()
                .saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
        };
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&ticket).unwrap_or_default());
        let tag = URL_SAFE_NO_PAD.encode(hmac::sign(&self.key, body.as_bytes()));
        format!("{body}.{tag}")
    }

    /// The call a ticket names and when it expires.
    ///
    /// # Errors
    ///
    /// [`ApprovalError::Forged`] or [`ApprovalError::Expired`].
    pub fn open(&self, ticket: &str) -> Result<(ApprovalCall, i64), ApprovalError> {
        let (body, tag) = ticket.split_once('.').ok_or(ApprovalError::Forged)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| ApprovalError::Forged)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| ApprovalError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| ApprovalError::Forged)?;
        let ticket: Ticket = serde_json::from_slice(&json).map_err(|_| ApprovalError::Forged)?;
        if ticket.expires_at <= (self.clock)() {
            return Err(ApprovalError::Expired);
        }
        Ok((ticket.call, ticket.expires_at))
    }

    /// Records `approver`'s answer to the call `ticket` names: `approver` must be the caller
    /// (with [`Approvers::Caller`]) or in the group (`groups` are the approver's groups). The
    /// first answer stands.
    ///
    /// # Errors
    ///
    /// The ticket is forged or expired, the approver may not answer, the call was already
    /// answered, or the store failed.
    pub async fn decide(
        &self,
        ticket: &str,
        approvers: &Approvers,
        approver: &str,
        groups: &[String],
        approved: bool,
    ) -> Result<ApprovalCall, ApprovalError> {
        let (call, expires_at) = self.open(ticket)?;
        if !approvers.admits(&call.user, approver, groups) {
            return Err(ApprovalError::NotAnApprover);
        }
        // A ticket is answered once, even after its answer was used: replaying the link does
        // not approve the call again.
        let (_, tag) = ticket.split_once('.').unwrap_or_default();
        let first = self
            .store
            .put_if_absent(
                Kind::Approval,
                &format!("ticket:{tag}"),
                Vec::new(),
                Some(expires_at),
            )
            .await
            .map_err(ApprovalError::Store)?;
        if !first {
            return Err(ApprovalError::AlreadyDecided);
        }
        let answer = Answer {
            approved,
            approver: approver.to_owned(),
        };
        let data = serde_json::to_vec(&answer).unwrap_or_default();
        let saved = self
            .store
            .put_if_absent(Kind::Approval, &call.binding(), data, Some(expires_at))
            .await
            .map_err(ApprovalError::Store)?;
        if saved {
            Ok(call)
        } else {
            Err(ApprovalError::AlreadyDecided)
        }
    }

    /// The answer to `call`, taken (so it serves once); `None` when nobody answered, the
    /// answer lapsed, or it was already used.
    ///
    /// # Errors
    ///
    /// The store failed or holds a damaged answer.
    pub async fn redeem(&self, call: &ApprovalCall) -> Result<Option<Answer>, ApprovalError> {
        let Some(data) = self
            .store
            .take(Kind::Approval, &call.binding())
            .await
            .map_err(ApprovalError::Store)?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| ApprovalError::Store(StoreError::damaged(format!("an approval: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use serde_json::json;

    use super::*;
    use crate::auth_server::store::MemoryStore;

    fn approvals(store: Arc<dyn Store>) -> (Approvals, Arc<AtomicI64>) {
        let now = Arc::new(AtomicI64::new(unix_now() + 60));
        let read = now.clone();
        let approvals = Approvals::new(
            b"0123456789abcdef0123456789abcdef",
            store,
            Duration::from_secs(300),
        )
        .clock(move || read.load(Ordering::SeqCst));
        (approvals, now)
    }

    fn delete(user: &str, path: &str) -> ApprovalCall {
        ApprovalCall::new(user, "fs", "delete_file", &json!({"path": path}), "v1")
    }

    #[tokio::test]
    async fn an_approved_call_passes_once_and_only_unchanged() {
        let (approvals, _) = approvals(Arc::new(MemoryStore::new()));
        let call = delete("alice", "/srv/a");
        let ticket = approvals.ticket(&call);
        assert_eq!(approvals.open(&ticket).expect("open").0, call);
        assert!(
            approvals.redeem(&call).await.expect("redeem").is_none(),
            "not yet approved"
        );
        approvals
            .decide(&ticket, &Approvers::Caller, "alice", &[], true)
            .await
            .expect("alice approves her own call");
        // Changed arguments, another user, another policy version: no approval.
        for other in [
            delete("alice", "/srv/b"),
            delete("bob", "/srv/a"),
            ApprovalCall::new(
                "alice",
                "fs",
                "delete_file",
                &json!({"path": "/srv/a"}),
                "v2",
            ),
        ] {
            assert!(approvals.redeem(&other).await.expect("redeem").is_none());
        }
        // Key order does not change the binding (canonical JSON).
        let same = ApprovalCall::new(
            "alice",
            "fs",
            "delete_file",
            &json!({"path": "/srv/a"}),
            "v1",
        );
        let answer = approvals
            .redeem(&same)
            .await
            .expect("redeem")
            .expect("approved");
        assert_eq!(
            answer,
            Answer {
                approved: true,
                approver: "alice".into()
            }
        );
        assert!(
            approvals.redeem(&call).await.expect("redeem").is_none(),
            "used once"
        );
        // Replaying the approval link after the call went through approves nothing.
        assert!(matches!(
            approvals
                .decide(&ticket, &Approvers::Caller, "alice", &[], true)
                .await,
            Err(ApprovalError::AlreadyDecided)
        ));
        assert!(approvals.redeem(&call).await.expect("redeem").is_none());
    }

    #[tokio::test]
    async fn forged_altered_and_expired_tickets_are_refused() {
        let (approvals, now) = approvals(Arc::new(MemoryStore::new()));
        let ticket = approvals.ticket(&delete("alice", "/srv/a"));
        let (body, tag) = ticket.split_once('.').expect("two parts");
        // The body changed to another path, signed with another key, or no tag at all.
        let other_body = approvals.ticket(&delete("alice", "/srv/b"));
        let other_body = other_body.split_once('.').expect("two parts").0;
        let foreign = Approvals::new(
            b"another key of thirty-two bytes!",
            Arc::new(MemoryStore::new()),
            Duration::from_secs(300),
        )
        .ticket(&delete("alice", "/srv/a"));
        for bad in [
            format!("{other_body}.{tag}"),
            foreign,
            body.to_owned(),
            format!("{body}."),
            format!("{body}.{tag}x"),
            String::new(),
            "..".to_owned(),
        ] {
            assert!(
                matches!(approvals.open(&bad), Err(ApprovalError::Forged)),
                "{bad}"
            );
            assert!(matches!(
                approvals
                    .decide(&bad, &Approvers::Caller, "alice", &[], true)
                    .await,
                Err(ApprovalError::Forged)
            ));
        }
        now.fetch_add(301, Ordering::SeqCst);
        assert!(matches!(
            approvals.open(&ticket),
            Err(ApprovalError::Expired)
        ));
        assert!(matches!(
            approvals
                .decide(&ticket, &Approvers::Caller, "alice", &[], true)
                .await,
            Err(ApprovalError::Expired)
        ));
    }

    #[tokio::test]
    async fn only_approvers_answer_and_the_first_answer_stands() {
        let (approvals, _) = approvals(Arc::new(MemoryStore::new()));
        let call = delete("alice", "/srv/a");
        let ticket = approvals.ticket(&call);
        let ops = Approvers::Group("ops".into());
        let none: &[String] = &[];
        for (who, rule, groups) in [
            ("mallory", &Approvers::Caller, none),
            ("alice", &ops, none),
            ("mallory", &ops, &["dev".to_owned()][..]),
            ("", &Approvers::Caller, none),
        ] {
            assert!(matches!(
                approvals.decide(&ticket, rule, who, groups, true).await,
                Err(ApprovalError::NotAnApprover)
            ));
        }
        approvals
            .decide(&ticket, &ops, "olga", &["ops".to_owned()], false)
            .await
            .expect("olga refuses");
        assert!(matches!(
            approvals
                .decide(&ticket, &ops, "oscar", &["ops".to_owned()], true)
                .await,
            Err(ApprovalError::AlreadyDecided)
        ));
        let answer = approvals
            .redeem(&call)
            .await
            .expect("redeem")
            .expect("answered");
        assert_eq!(
            answer,
            Answer {
                approved: false,
                approver: "olga".into()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_racing_retries_redeem_one_approval_once() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let (approvals, _) = approvals(store);
        let approvals = Arc::new(approvals);
        let call = delete("alice", "/srv/a");
        let ticket = approvals.ticket(&call);
        approvals
            .decide(&ticket, &Approvers::Caller, "alice", &[], true)
            .await
            .expect("approve");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (approvals, call) = (approvals.clone(), call.clone());
                tokio::spawn(async move { approvals.redeem(&call).await.expect("redeem") })
            })
            .collect();
        let mut passed = 0;
        for task in tasks {
            passed += usize::from(task.await.expect("task").is_some());
        }
        assert_eq!(passed, 1);
    }
}
