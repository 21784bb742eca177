//! The friendly rule layer: the `[policy]` TOML table and the same rules as a Rust builder.
//!
//! Why one file of this size: the TOML form and the Rust builder are two spellings of the same
//! rules and must stay in step (each TOML key has its builder method); keeping both here makes
//! a drift visible in one review.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::error::{Origin, PolicyError, Problems, line_of};
use super::ratelimit::{Per, Rate, RateLimit};

/// Who a rule is about. A user matches when **any** of the listed conditions holds; a `Who`
/// with nothing listed matches everyone who signed in.
///
/// ```
/// use mcp_oauth::policy::Who;
///
/// let staff = Who::new().email_domains(["example.com"]).emails(["contractor@partner.io"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Who {
    #[serde(default)]
    emails: Option<Vec<String>>,
    #[serde(default)]
    email_domains: Option<Vec<String>>,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    subjects: Option<Vec<String>>,
    #[serde(default)]
    clients: Option<Vec<String>>,
    #[serde(default)]
    claims: Option<BTreeMap<String, Vec<String>>>,
}

impl Who {
    /// Everyone who signed in.
    pub fn new() -> Self {
        Self::default()
    }

    /// These email addresses (compared in lower case).
    #[must_use]
    pub fn emails<I: IntoIterator<Item = S>, S: Into<String>>(mut self, emails: I) -> Self {
        self.emails
            .get_or_insert_with(Vec::new)
            .extend(emails.into_iter().map(Into::into));
        self
    }

    /// Addresses in these domains (`example.com`; compared in lower case).
    #[must_use]
    pub fn email_domains<I: IntoIterator<Item = S>, S: Into<String>>(mut self, domains: I) -> Self {
        self.email_domains
            .get_or_insert_with(Vec::new)
            .extend(domains.into_iter().map(Into::into));
        self
    }

    /// Members of these groups.
    #[must_use]
    pub fn groups<I: IntoIterator<Item = S>, S: Into<String>>(mut self, groups: I) -> Self {
        self.groups
            .get_or_insert_with(Vec::new)
            .extend(groups.into_iter().map(Into::into));
        self
    }

    /// These subject identifiers (`sub`).
    #[must_use]
    pub fn subjects<I: IntoIterator<Item = S>, S: Into<String>>(mut self, subjects: I) -> Self {
        self.subjects
            .get_or_insert_with(Vec::new)
            .extend(subjects.into_iter().map(Into::into));
        self
    }

    /// Tokens issued to these OAuth clients.
    #[must_use]
    pub fn clients<I: IntoIterator<Item = S>, S: Into<String>>(mut self, clients: I) -> Self {
        self.clients
            .get_or_insert_with(Vec::new)
            .extend(clients.into_iter().map(Into::into));
        self
    }

    /// Users whose claim (declared under `[policy.claims]`) has one of these values.
    #[must_use]
    pub fn claim<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        claim: impl Into<String>,
        values: I,
    ) -> Self {
        self.claims
            .get_or_insert_with(BTreeMap::new)
            .entry(claim.into())
            .or_default()
            .extend(values.into_iter().map(Into::into));
        self
    }

    pub(crate) fn emails_lower(&self) -> Vec<String> {
        list(&self.emails)
            .iter()
            .map(|e| e.to_lowercase())
            .collect()
    }

    pub(crate) fn domains_lower(&self) -> Vec<String> {
        list(&self.email_domains)
            .iter()
            .map(|d| d.trim_start_matches('@').to_lowercase())
            .collect()
    }

    pub(crate) fn group_names(&self) -> &[String] {
        list(&self.groups)
    }

    pub(crate) fn subject_ids(&self) -> &[String] {
        list(&self.subjects)
    }

    pub(crate) fn client_ids(&self) -> &[String] {
        list(&self.clients)
    }

    pub(crate) fn claim_values(&self) -> impl Iterator<Item = (&String, &Vec<String>)> {
        self.claims.iter().flatten()
    }

    /// The lists given but empty: an empty list would match nobody, which is never meant.
    pub(crate) fn empty_lists(&self) -> Vec<&'static str> {
        let mut empty = Vec::new();
        for (name, list) in [
            ("emails", &self.emails),
            ("email_domains", &self.email_domains),
            ("groups", &self.groups),
            ("subjects", &self.subjects),
            ("clients", &self.clients),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                empty.push(name);
            }
        }
        if self
            .claims
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.values().any(Vec::is_empty))
        {
            empty.push("claims");
        }
        empty
    }
}

fn list(list: &Option<Vec<String>>) -> &[String] {
    list.as_deref().unwrap_or(&[])
}

/// A constraint on one tool argument. The argument is canonicalised first (see
/// [`PolicyConfig::path_arguments`] and [`PolicyConfig::url_arguments`]); an array argument
/// is checked element by element. All constraints given must hold.
///
/// ```
/// use mcp_oauth::policy::ArgRule;
///
/// let team_dir = ArgRule::new().under("/srv/shared/team");
/// let public_web = ArgRule::new().schemes(["https"]).hosts(["example.com", "*.example.org"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgRule {
    #[serde(default)]
    pub(crate) under: Option<String>,
    #[serde(default)]
    pub(crate) one_of: Option<Vec<Value>>,
    #[serde(default)]
    pub(crate) hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) schemes: Option<Vec<String>>,
}

impl ArgRule {
    /// No constraint yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A path argument at or below this directory (relative paths are joined to the root).
    #[must_use]
    pub fn under(mut self, directory: impl Into<String>) -> Self {
        self.under = Some(directory.into());
        self
    }

    /// A value in this set (strings, integers or booleans, as the argument's type).
    #[must_use]
    pub fn one_of<I: IntoIterator<Item = V>, V: Into<Value>>(mut self, values: I) -> Self {
        self.one_of = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// A URL argument whose host is one of these (`example.com`, or `*.example.com` for any
    /// subdomain).
    #[must_use]
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }

    /// A URL argument whose scheme is one of these (`https`).
    #[must_use]
    pub fn schemes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, schemes: I) -> Self {
        self.schemes = Some(schemes.into_iter().map(Into::into).collect());
        self
    }
}

/// Whether a rule allows or forbids. A `forbid` that applies beats every `permit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RuleEffect {
    #[default]
    Permit,
    Forbid,
}

/// One rule: who, which tools (or prompts, or resources), which arguments, and whether it
/// permits or forbids. A `permit` may name step-up scopes: a token without them gets a
/// step-up answer (HTTP 403 `insufficient_scope`) rather than a deny.
///
/// ```
/// use mcp_oauth::policy::{ArgRule, Rule, Who};
///
/// let rule = Rule::permit("eng-write-team-dir")
///     .who(Who::new().groups(["eng"]))
///     .tools(["write_file", "edit_file"])
///     .arg("path", ArgRule::new().under("/srv/shared/team"))
///     .step_up(["files:write"]);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) effect: RuleEffect,
    #[serde(default)]
    pub(crate) who: Who,
    #[serde(default)]
    pub(crate) tools: Vec<String>,
    #[serde(default)]
    pub(crate) prompts: Vec<String>,
    #[serde(default)]
    pub(crate) resources: Vec<String>,
    #[serde(default)]
    pub(crate) args: BTreeMap<String, ArgRule>,
    #[serde(default)]
    pub(crate) step_up_scopes: Vec<String>,
    /// Only for grants: the scopes granted.
    #[serde(default)]
    pub(crate) scopes: Vec<String>,
}

impl Rule {
    fn with(id: impl Into<String>, effect: RuleEffect) -> Self {
        Self {
            id: id.into(),
            effect,
            who: Who::default(),
            tools: Vec::new(),
            prompts: Vec::new(),
            resources: Vec::new(),
            args: BTreeMap::new(),
            step_up_scopes: Vec::new(),
            scopes: Vec::new(),
        }
    }

    /// A rule that allows.
    pub fn permit(id: impl Into<String>) -> Self {
        Self::with(id, RuleEffect::Permit)
    }

    /// A rule that forbids (and beats every permit).
    pub fn forbid(id: impl Into<String>) -> Self {
        Self::with(id, RuleEffect::Forbid)
    }

    /// Who the rule is about (default: everyone who signed in).
    #[must_use]
    pub fn who(mut self, who: Who) -> Self {
        self.who = who;
        self
    }

    /// The tools, by name or glob (`*` any characters, `?` one).
    #[must_use]
    pub fn tools<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tools: I) -> Self {
        self.tools.extend(tools.into_iter().map(Into::into));
        self
    }

    /// The prompts, by name or glob.
    #[must_use]
    pub fn prompts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, prompts: I) -> Self {
        self.prompts.extend(prompts.into_iter().map(Into::into));
        self
    }

    /// The resources, by URI or glob.
    #[must_use]
    pub fn resources<I: IntoIterator<Item = S>, S: Into<String>>(mut self, resources: I) -> Self {
        self.resources.extend(resources.into_iter().map(Into::into));
        self
    }

    /// A constraint on a tool argument (every tool the rule names must have it).
    #[must_use]
    pub fn arg(mut self, name: impl Into<String>, rule: ArgRule) -> Self {
        self.args.insert(name.into(), rule);
        self
    }

    /// Scopes the token must hold for this permit to allow; without them the decision is a
    /// step-up naming the missing ones.
    #[must_use]
    pub fn step_up<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.step_up_scopes
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// For a scope grant ([`PolicyConfig::grant`]): the scopes this rule grants.
    #[must_use]
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The rule's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a claim declared under `[policy.claims]` is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClaimKind {
    /// One string (`principal.claims.name`, may be absent).
    String,
    /// A set of strings (`principal.claims.name`, always present, empty when the claim is).
    Set,
}

#[derive(Debug, Deserialize)]
struct FileToml {
    policy: Option<PolicyToml>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgumentsToml {
    #[serde(default)]
    root: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyToml {
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    group_claims: Vec<String>,
    #[serde(default)]
    claims: BTreeMap<String, ClaimKind>,
    #[serde(default)]
    cedar_files: Vec<String>,
    #[serde(default)]
    require_dpop: Vec<String>,
    #[serde(default)]
    arguments: ArgumentsToml,
    #[serde(default)]
    groups: BTreeMap<String, toml::Spanned<Who>>,
    #[serde(default)]
    sign_in: Vec<toml::Spanned<Rule>>,
    #[serde(default)]
    grant: Vec<toml::Spanned<Rule>>,
    #[serde(default)]
    rule: Vec<toml::Spanned<Rule>>,
    #[serde(default)]
    rate_limit: Vec<toml::Spanned<RateLimitToml>>,
    #[serde(default)]
    approve: Vec<toml::Spanned<super::approve_rule::ApproveToml>>,
}

/// `[[policy.rate_limit]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitToml {
    #[serde(default)]
    id: Option<String>,
    tools: Vec<String>,
    #[serde(default)]
    per: Option<String>,
    rate: String,
    #[serde(default)]
    burst: Option<u32>,
}

/// Which kind of rule: a tool/prompt/resource rule, a sign-in rule, or a scope grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Call,
    SignIn,
    Grant,
}

/// A policy's source: settings, groups, rules and Cedar text, before it is checked against a
/// server's [`Catalog`](super::Catalog) by [`Policy::new`](super::Policy::new).
///
/// ```
/// use mcp_oauth::policy::PolicyConfig;
///
/// let config = PolicyConfig::from_toml(r#"
/// [policy]
/// group_claims = ["groups"]
///
/// [[policy.sign_in]]
/// id = "staff"
/// who = { email_domains = ["example.com"] }
///
/// [[policy.rule]]
/// id = "eng-reads"
/// who = { groups = ["eng"] }
/// tools = ["read_*"]
/// "#, "policy.toml")?;
/// # Ok::<(), mcp_oauth::policy::PolicyError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub(crate) server: String,
    pub(crate) group_claims: Vec<String>,
    pub(crate) claims: BTreeMap<String, ClaimKind>,
    pub(crate) root: String,
    pub(crate) path_args: Vec<String>,
    pub(crate) url_args: Vec<String>,
    pub(crate) dpop_tools: Vec<String>,
    pub(crate) groups: Vec<(String, Who, Origin)>,
    pub(crate) rules: Vec<(RuleKind, Rule, Origin)>,
    pub(crate) cedar: Vec<(String, String)>,
    pub(crate) rate_limits: Vec<RateLimit>,
    pub(crate) approve: Vec<super::ApproveRule>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            server: "mcp".to_owned(),
            group_claims: Vec::new(),
            claims: BTreeMap::new(),
            root: "/".to_owned(),
            path_args: Vec::new(),
            url_args: Vec::new(),
            dpop_tools: Vec::new(),
            groups: Vec::new(),
            rules: Vec::new(),
            cedar: Vec::new(),
            rate_limits: Vec::new(),
            approve: Vec::new(),
        }
    }
}

impl PolicyConfig {
    /// No rules: every call is denied; sign-in and scope grants are not governed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the `[policy]` table of a TOML text; `name` is used in error messages. Raw Cedar
    /// files (`cedar_files`) need [`from_file`](Self::from_file) or [`cedar`](Self::cedar).
    ///
    /// # Errors
    ///
    /// The TOML is malformed, has no `[policy]` table, has an unknown key, or lists
    /// `cedar_files`.
    pub fn from_toml(text: &str, name: &str) -> Result<Self, PolicyError> {
        let (config, cedar_files) = Self::parse(text, name)?;
        if let Some((file, line)) = cedar_files.first() {
            return Err(PolicyError::one(
                None,
                Origin::new(name, Some(*line)),
                format!(
                    "cedar_files (`{file}`) are read by PolicyConfig::from_file; from a text, add them with PolicyConfig::cedar"
                ),
            ));
        }
        Ok(config)
    }

    /// Reads a TOML policy file and the `.cedar` files it lists (relative to its folder).
    ///
    /// # Errors
    ///
    /// A file cannot be read, or see [`from_toml`](Self::from_toml).
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            PolicyError::one(
                None,
                Origin::new(&name, None),
                format!("cannot read the policy: {e}"),
            )
        })?;
        let (mut config, cedar_files) = Self::parse(&text, &name)?;
        let folder = path.parent().unwrap_or_else(|| Path::new("."));
        for (file, line) in cedar_files {
            let cedar_path = folder.join(&file);
            let cedar = std::fs::read_to_string(&cedar_path).map_err(|e| {
                PolicyError::one(
                    None,
                    Origin::new(&name, Some(line)),
                    format!("cannot read cedar file `{}`: {e}", cedar_path.display()),
                )
            })?;
            config = config.cedar(cedar_path.display().to_string(), cedar);
        }
        Ok(config)
    }

    fn parse(text: &str, name: &str) -> Result<(Self, Vec<(String, usize)>), PolicyError> {
        let file: FileToml = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|span| line_of(text, span.start));
            PolicyError::one(None, Origin::new(name, line), e.message().to_owned())
        })?;
        let Some(policy) = file.policy else {
            return Err(PolicyError::one(
                None,
                Origin::new(name, None),
                "there is no [policy] table",
            ));
        };
        let mut config = Self::new();
        if let Some(server) = policy.server {
            config.server = server;
        }
        config.group_claims = policy.group_claims;
        config.claims = policy.claims;
        if let Some(root) = policy.arguments.root {
            config.root = root;
        }
        config.path_args = policy.arguments.paths;
        config.url_args = policy.arguments.urls;
        config.dpop_tools = policy.require_dpop;
        let origin = |start: usize| Origin::new(name, Some(line_of(text, start)));
        for (group, who) in policy.groups {
            let at = origin(who.span().start);
            config.groups.push((group, who.into_inner(), at));
        }
        for (kind, rules) in [
            (RuleKind::SignIn, policy.sign_in),
            (RuleKind::Grant, policy.grant),
            (RuleKind::Call, policy.rule),
        ] {
            for rule in rules {
                let at = origin(rule.span().start);
                config.rules.push((kind, rule.into_inner(), at));
            }
        }
        for (index, limit) in policy.rate_limit.into_iter().enumerate() {
            let at = origin(limit.span().start);
            let limit = limit.into_inner();
            let id = limit
                .id
                .unwrap_or_else(|| format!("rate_limit_{}", index + 1));
            let fail = |message: String| PolicyError::one(Some(&id), at.clone(), message);
            let rate = Rate::parse(&limit.rate).map_err(fail)?;
            let per = match limit.per.as_deref() {
                None | Some("user") => Per::User,
                Some("tool") => Per::Tool,
                Some(other) => {
                    return Err(fail(format!(
                        "per = \"{other}\": a rate limit is per \"user\" (each user has a bucket for each tool) or per \"tool\" (all users share one)"
                    )));
                }
            };
            if limit.tools.is_empty() {
                return Err(fail(
                    "a rate limit needs `tools` (names or globs; [\"*\"] for all)".to_owned(),
                ));
            }
            if limit.burst == Some(0) {
                return Err(fail("`burst` must be at least 1".to_owned()));
            }
            let mut built = RateLimit::new(id.clone(), limit.tools, rate).per(per);
            if let Some(burst) = limit.burst {
                built = built.burst(burst);
            }
            if config.rate_limits.iter().any(|l| l.id() == id) {
                return Err(fail("two rate limits have this id".to_owned()));
            }
            config.rate_limits.push(built);
        }
        for (index, rule) in policy.approve.into_iter().enumerate() {
            let at = origin(rule.span().start);
            let rule = rule.into_inner().build(index, &at)?;
            if config.approve.iter().any(|r| r.id() == rule.id()) {
                return Err(PolicyError::one(
                    Some(rule.id()),
                    at,
                    "two approve rules have this id",
                ));
            }
            config.approve.push(rule);
        }
        // The line of each `cedar_files` entry is not kept by serde; point at the key.
        let line = text
            .find("cedar_files")
            .map_or(1, |offset| line_of(text, offset));
        let cedar_files = policy.cedar_files.into_iter().map(|f| (f, line)).collect();
        Ok((config, cedar_files))
    }

    /// The name of the server's entity (`Server::"name"`; default `mcp`).
    #[must_use]
    pub fn server(mut self, name: impl Into<String>) -> Self {
        self.server = name.into();
        self
    }

    /// A claim that holds group names (`groups`, or Keycloak's `realm_access.roles`).
    #[must_use]
    pub fn group_claim(mut self, claim: impl Into<String>) -> Self {
        self.group_claims.push(claim.into());
        self
    }

    /// Exposes a claim to rules as `principal.claims.<name>`.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, kind: ClaimKind) -> Self {
        self.claims.insert(name.into(), kind);
        self
    }

    /// The directory relative path arguments are joined to, and that no path argument may
    /// leave (default `/`).
    #[must_use]
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// Argument names that hold file paths (strings or arrays of strings).
    #[must_use]
    pub fn path_arguments<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.path_args.extend(names.into_iter().map(Into::into));
        self
    }

    /// Argument names that hold URLs (strings or arrays of strings).
    #[must_use]
    pub fn url_arguments<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.url_args.extend(names.into_iter().map(Into::into));
        self
    }

    /// Tools (names or globs; `*` for all) that may be called only with a DPoP-bound token
    /// presented with the `DPoP` scheme and a valid proof (RFC 9449): a call with a bearer
    /// token is refused with `401 invalid_token` and the `DPoP` challenge, even when a rule
    /// allows it. Needs DPoP accepted at the resource (`OAuthBuilder::dpop`). Default: none.
    #[must_use]
    pub fn require_dpop<I: IntoIterator<Item = S>, S: Into<String>>(mut self, tools: I) -> Self {
        self.dpop_tools.extend(tools.into_iter().map(Into::into));
        self
    }

    /// A group defined by the policy (`Group::"name"`): users matching `who` are in it.
    #[must_use]
    pub fn group(mut self, name: impl Into<String>, who: Who) -> Self {
        self.groups.push((name.into(), who, Origin::default()));
        self
    }

    /// A tool, prompt or resource rule.
    #[must_use]
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push((RuleKind::Call, rule, Origin::default()));
        self
    }

    /// A sign-in rule (only `who` and the effect count).
    #[must_use]
    pub fn sign_in(mut self, rule: Rule) -> Self {
        self.rules.push((RuleKind::SignIn, rule, Origin::default()));
        self
    }

    /// A scope grant: the users in `who` may be granted the rule's [`scopes`](Rule::scopes).
    #[must_use]
    pub fn grant(mut self, rule: Rule) -> Self {
        self.rules.push((RuleKind::Grant, rule, Origin::default()));
        self
    }

    /// Calls of some tools wait for a human's approval (`[[policy.approve]]`).
    #[must_use]
    pub fn approve(mut self, rule: super::ApproveRule) -> Self {
        self.approve.push(rule);
        self
    }

    /// The approve rules, in order (the first that matches a tool is its rule).
    pub fn approve_rules(&self) -> &[super::ApproveRule] {
        &self.approve
    }

    /// A rate limit on calls of some tools (`[[policy.rate_limit]]`).
    #[must_use]
    pub fn rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limits.push(limit);
        self
    }

    /// The rate limits, for a [`RateLimiter`](super::RateLimiter).
    pub fn rate_limits(&self) -> &[RateLimit] {
        &self.rate_limits
    }

    /// Raw Cedar policies (the escape hatch); `name` is used in error messages. Give each an
    /// `@id("...")` annotation so decisions can name it.
    #[must_use]
    pub fn cedar(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.cedar.push((name.into(), text.into()));
        self
    }

    /// Checks the parts that do not depend on the tools.
    pub(crate) fn check_settings(&self, problems: &mut Problems) {
        let origin = Origin::default();
        if !self.root.starts_with('/') {
            problems.push(
                None,
                &origin,
                format!("the root `{}` must be an absolute path", self.root),
            );
        }
        if self.root.contains('\\') || self.root.split('/').any(|c| c == "..") {
            problems.push(
                None,
                &origin,
                format!("the root `{}` must not hold `..` or backslashes", self.root),
            );
        }
        for name in &self.path_args {
            if self.url_args.contains(name) {
                problems.push(
                    None,
                    &origin,
                    format!("argument `{name}` is listed both as a path and as a URL"),
                );
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for (_, rule, at) in &self.rules {
            if !seen.insert(rule.id.as_str()) {
                problems.push(Some(&rule.id), at, "two rules have this id");
            }
            if rule.id.is_empty() {
                problems.push(None, at, "a rule needs an `id`");
            }
        }
    }
}
