//! Who may do what.
//!
//! [`ScopePolicy`] (always built) says which OAuth scopes each JSON-RPC method and tool needs.
//!
//! With the `policy` feature, [`Policy`] is the authorization engine: who may sign in, which
//! scopes each user may be granted, and which tools, prompts and resources they may use, with
//! which arguments. Rules are written in TOML ([`PolicyConfig::from_toml`]) or with the Rust
//! builder ([`Rule`], [`Who`], [`ArgRule`]), compiled to [Cedar](https://www.cedarpolicy.com),
//! and checked against a Cedar schema generated from the server's tools ([`Catalog`]): a rule
//! that names an unknown tool, an argument the tool does not have, or a claim that is never
//! present is an error naming the rule and its line, never a silent deny. Raw `.cedar` files
//! are the escape hatch.
//!
//! Cedar's rules hold: nothing is allowed unless a rule permits it, and a `forbid` that applies
//! beats every `permit`. Arguments are made canonical first: paths are joined to the configured
//! root and normalised (leaving the root is a deny), URLs are parsed to scheme and host, and an
//! array argument is checked element by element.
//!
//! One function decides both a call ([`Policy::decide`]) and whether a list shows the item
//! ([`Policy::visible`], the same decision with the arguments unknown), so a list never shows
//! what cannot be called, nor hides what can.
//!
//! See `docs/policy.md` for the rule layer, the Cedar model and examples.

mod scopes;

pub use scopes::ScopePolicy;

#[cfg(all(feature = "policy", feature = "auth-server"))]
mod approval;
#[cfg(feature = "policy")]
mod approve_rule;
#[cfg(feature = "policy")]
mod args;
#[cfg(feature = "policy")]
mod canon;
#[cfg(feature = "policy")]
mod catalog;
#[cfg(feature = "policy")]
mod cedar_file;
#[cfg(feature = "policy")]
mod compile;
#[cfg(feature = "policy")]
mod config;
#[cfg(feature = "policy")]
mod decision;
#[cfg(feature = "policy")]
mod enforce;
#[cfg(feature = "policy")]
mod engine;
#[cfg(feature = "policy")]
mod error;
#[cfg(feature = "policy")]
mod fixtures;
#[cfg(feature = "policy")]
mod glob;
#[cfg(feature = "policy")]
mod lists;
#[cfg(feature = "policy")]
mod parts;
#[cfg(feature = "policy")]
mod principal;
#[cfg(feature = "policy")]
mod ratelimit;
#[cfg(feature = "policy")]
mod strict;
#[cfg(feature = "policy")]
mod subject;

#[cfg(all(feature = "policy", feature = "auth-server"))]
pub use approval::{Answer, ApprovalCall, ApprovalError, Approvals};
#[cfg(feature = "policy")]
pub use approve_rule::{ApproveRule, Approvers};
#[cfg(feature = "policy")]
pub use catalog::{Catalog, ToolInfo};
#[cfg(feature = "policy")]
pub use config::{ArgRule, ClaimKind, PolicyConfig, Rule, Who};
#[cfg(feature = "policy")]
pub use decision::{Decision, Effect, Explanation, ScopeGrant, Target};
#[cfg(feature = "policy")]
pub use enforce::POLICY_DENIED;
#[cfg(feature = "policy")]
pub(crate) use enforce::{Enforcer, Verdict};
#[cfg(feature = "policy")]
pub use engine::Policy;
#[cfg(feature = "policy")]
pub use error::{Origin, PolicyError, Problem};
#[cfg(feature = "policy")]
pub use fixtures::{FixtureFailure, FixtureReport, Fixtures};
#[cfg(feature = "policy")]
pub(crate) use lists::{ListError, ListFilter, SseFilter};
#[cfg(feature = "policy")]
pub(crate) use principal::PrincipalCache;
#[cfg(feature = "policy")]
pub use ratelimit::{Limited, Per, Rate, RateLimit, RateLimitError, RateLimiter};
#[cfg(feature = "policy")]
pub use subject::{GroupSource, Membership, Subject};

/// The examples of `docs/policy.md`, compiled as doctests.
#[cfg(all(doctest, feature = "policy"))]
#[doc = include_str!("../../../../docs/policy.md")]
pub struct PolicyDocDoctests;
