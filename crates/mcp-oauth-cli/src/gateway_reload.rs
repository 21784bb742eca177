//! `mcp-oauth gateway` reloads its configuration file and its policy file when they change
//! (checked every second: modification time, size and content) and on SIGHUP, while it serves.
//!
//! - The upstreams: [`Gateway::reload`] serves the new set; those whose configuration did not
//!   change keep running with their sessions. From one upstream to several or back the
//!   endpoint changes shape (every client session ends); with a policy, it is out of service
//!   (every call refused) until it compiles against the new names, and if it does not, the
//!   previous upstreams come back with it.
//! - The policy: read again and compiled against the tools the upstreams list now; it replaces
//!   the one in force only when it compiles.
//! - Other options (listen address, issuer, audit, …) take effect at the next start; a change
//!   to them is logged.
//!
//! A file that does not parse, an upstream that cannot be configured (an unset `${NAME}`) or a
//! policy that does not compile against the tools leaves everything as it was, and the log
//! says why: one line per problem, naming the file and the line.

use std::ffi::OsString;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mcp_oauth_gateway::Gateway;

use crate::gateway_config::{self, ConfigFile, FileOption, UpstreamSpec};
use crate::gateway_policy::{self, PolicyGate};

const TARGET: &str = "mcp_oauth_cli::reload";
/// How often the files are looked at.
const EVERY: Duration = Duration::from_secs(1);
/// How long new stdio upstreams have to start after a reload.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the running gateway was started with, and what reloads change.
pub(crate) struct Reloader {
    pub(crate) gateway: Gateway,
    /// The policy gatekeeper, when the gateway was started with one.
    pub(crate) gate: Option<PolicyGate>,
    pub(crate) config: Option<PathBuf>,
    /// The arguments after `gateway` (they keep winning over the file).
    pub(crate) argv: Vec<OsString>,
    pub(crate) policy: Option<PathBuf>,
    pub(crate) upstreams: Vec<UpstreamSpec>,
    pub(crate) options: Vec<FileOption>,
}

/// What a file looks like now: modification time, size and a hash of its content.
fn stamp(path: Option<&Path>) -> Option<(Option<SystemTime>, u64)> {
    let path = path?;
    let content = std::fs::read(path).ok()?;
    let modified = std::fs::metadata(path).ok().and_then(|m| m.modified().ok());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    content.hash(&mut hasher);
    Some((modified, hasher.finish()))
}

/// Watches the files (and SIGHUP) for as long as the process runs.
pub(crate) fn spawn(mut reloader: Reloader) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let stamps = |r: &Reloader| (stamp(r.config.as_deref()), stamp(r.policy.as_deref()));
        let mut seen = stamps(&reloader);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // With a policy: the upstreams' list changes make it checked again.
        let watch = |r: &Reloader| r.gate.is_some().then(|| r.gateway.list_changes());
        let mut changes = watch(&reloader);
        loop {
            let changed = async {
                match changes.as_mut() {
                    Some(changes) => changes.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(unix)]
            let why = tokio::select! {
                _ = tick.tick() => None,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                } => Some("SIGHUP"),
                Some(list) = changed => {
                    tracing::info!(target: TARGET, "an upstream's {} list changed: checking the policy against it", list.member());
                    reloader.apply_policy().await;
                    continue;
                }
            };
            #[cfg(not(unix))]
            let why = tokio::select! {
                _ = tick.tick() => None,
                Some(list) = changed => {
                    tracing::info!(target: TARGET, "an upstream's {} list changed: checking the policy against it", list.member());
                    reloader.apply_policy().await;
                    continue;
                }
            };
            let why = match why {
                Some(why) => why,
                None if stamps(&reloader) != seen => "a file changed",
                None => continue,
            };
            if reloader.reload(why).await {
                // New upstreams are heard from a new watch.
                changes = watch(&reloader);
            }
            // What the reload read (the policy file may be another one now).
            seen = stamps(&reloader);
        }
    });
}

/// The file's options as written, without their lines (a moved line is no change).
fn option_values(options: &[FileOption]) -> Vec<(&str, &gateway_config::OptionValue)> {
    options
        .iter()
        .map(|o| (o.long.as_str(), &o.value))
        .collect()
}

impl Reloader {
    /// Reads everything again; whether the upstreams were reloaded.
    async fn reload(&mut self, why: &str) -> bool {
        tracing::info!(target: TARGET, "{why}: reading the configuration again");
        let mut reloaded = false;
        if let Some(path) = self.config.clone() {
            let Some(config) = self.read_config(&path) else {
                return false;
            };
            let Some((args, upstreams)) = self.apply_config(&path, &config).await else {
                return false;
            };
            reloaded = upstreams;
            let policy = args.access.file();
            if policy != self.policy {
                match (&self.gate, &policy) {
                    (Some(_), Some(_)) => self.policy = policy,
                    _ => tracing::warn!(
                        target: TARGET,
                        "{}: a policy file set or removed takes effect at the next start",
                        path.display()
                    ),
                }
            }
        }
        self.apply_policy().await;
        reloaded
    }

    fn read_config(&self, path: &Path) -> Option<ConfigFile> {
        match gateway_config::load(path) {
            Ok(config) => Some(config),
            Err(problems) => {
                for problem in problems {
                    tracing::error!(target: TARGET, "{problem}; the running configuration stays");
                }
                None
            }
        }
    }

    /// The upstreams of the file (and the options, which only log); the merged options, and
    /// whether the upstreams were reloaded.
    async fn apply_config(
        &mut self,
        path: &Path,
        config: &ConfigFile,
    ) -> Option<(crate::gateway_args::GatewayArgs, bool)> {
        let stays = "the running configuration stays";
        let args = match gateway_config::merge(config, &self.argv) {
            Ok(args) => args,
            Err(problem) => {
                tracing::error!(target: TARGET, "{problem}; {stays}");
                return None;
            }
        };
        let specs = match crate::gateway_upstreams::all_upstreams(&args, Some(config)) {
            Ok(specs) => specs,
            Err(problems) => {
                for problem in problems {
                    tracing::error!(target: TARGET, "{problem}; {stays}");
                }
                return None;
            }
        };
        let configs = match crate::gateway_upstreams::upstream_configs(&specs) {
            Ok(configs) => configs,
            Err(problem) => {
                tracing::error!(target: TARGET, "{}: {problem}; {stays}", path.display());
                return None;
            }
        };
        if option_values(&config.options) != option_values(&self.options) {
            let mut changed: Vec<String> = Vec::new();
            for option in config.options.iter().chain(&self.options) {
                let key = option.long.replace('-', "_");
                let before = self.options.iter().find(|o| o.long == option.long);
                let after = config.options.iter().find(|o| o.long == option.long);
                if before.map(|o| &o.value) != after.map(|o| &o.value) && !changed.contains(&key) {
                    changed.push(key);
                }
            }
            changed.retain(|k| k != "policy");
            if !changed.is_empty() {
                tracing::warn!(
                    target: TARGET,
                    "{}: {} changed; these take effect at the next start",
                    path.display(),
                    changed.join(", ")
                );
            }
            self.options = config.options.clone();
        }
        // The gateway compares the upstreams itself, secrets included (a rotated `file:`
        // secret changes an upstream whose file did not change).
        let named: Vec<_> = configs
            .into_iter()
            .map(|(name, config)| (name.unwrap_or_default(), config))
            .collect();
        let tools = crate::gateway_config::tool_names(&specs);
        // From one upstream to several or back, every tool changes its name: no rule of the
        // policy in force fits, so it is out of service (every call refused) until the policy
        // compiles against the new names, or the old upstreams are back.
        let reshape = (self.upstreams.len() > 1) != (specs.len() > 1);
        if !reshape && specs.len() == 1 && specs == self.upstreams {
            // One upstream, the same as before: nothing to do (its `file:` secrets are
            // compared at a reload of several only).
            return Some((args, false));
        }
        let suspended = match (&self.gate, reshape) {
            (Some(gate), true) => Some(gate.suspend()),
            _ => None,
        };
        let report = match self.gateway.reload_tools(named, tools) {
            Ok(report) => report,
            Err(e) => {
                if let (Some(gate), Some(policy)) = (&self.gate, suspended) {
                    gate.restore(policy);
                }
                tracing::error!(target: TARGET, "{}: {e}; {stays}", path.display());
                return None;
            }
        };
        if report.added.is_empty()
            && report.changed.is_empty()
            && report.removed.is_empty()
            && report.renamed.is_empty()
        {
            tracing::debug!(target: TARGET, "{}: the upstreams are the same", path.display());
            return Some((args, false));
        }
        tracing::info!(
            target: TARGET,
            "{}: upstreams reloaded{}: added [{}], changed [{}], removed [{}], kept [{}], tools renamed [{}]",
            path.display(),
            if report.reshaped {
                " (the endpoint changed shape: every client session ended)"
            } else {
                ""
            },
            report.added.join(", "),
            report.changed.join(", "),
            report.removed.join(", "),
            report.kept.join(", "),
            report.renamed.join(", ")
        );
        let before = std::mem::replace(&mut self.upstreams, specs);
        if let Err(e) = self.gateway.ready(START_TIMEOUT).await {
            tracing::error!(target: TARGET, "after the reload: {e}");
        }
        if let Some(policy) = suspended
            && !self.policy_fits(&args).await
        {
            self.undo_reshape(path, before, policy).await;
            return None;
        }
        Some((args, true))
    }

    /// After a reload that renamed every tool: whether the policy file (the one `args` name)
    /// compiles against the new names; if so it is in force.
    async fn policy_fits(&self, args: &crate::gateway_args::GatewayArgs) -> bool {
        let Some(gate) = &self.gate else {
            return true;
        };
        // The file, or the built-in `demo` policy.
        let config = match args.access.config() {
            Ok(Some(config)) => config,
            Ok(None) => {
                tracing::error!(target: TARGET, "the policy set at the start is no longer named; the upstreams go back");
                return false;
            }
            Err(problem) => {
                log_lines(&problem, "the upstreams go back");
                return false;
            }
        };
        let file = args.access.file().unwrap_or_else(|| PathBuf::from("demo"));
        let catalog = match self.gateway.catalog().await {
            Ok(catalog) => catalog,
            Err(e) => {
                tracing::error!(target: TARGET, "{}: cannot list the upstreams' tools: {e}; the upstreams go back", file.display());
                return false;
            }
        };
        match gate.install(config, &catalog, &file) {
            Ok(()) => {
                tracing::info!(target: TARGET, "{}: policy in force", file.display());
                true
            }
            Err(problem) => {
                log_lines(&problem, "the upstreams go back");
                false
            }
        }
    }

    /// Serves the upstreams of `before` again, with the policy that was in force with them.
    async fn undo_reshape(
        &mut self,
        path: &Path,
        before: Vec<UpstreamSpec>,
        policy: Option<std::sync::Arc<mcp_oauth::policy::Policy>>,
    ) {
        let Some(gate) = &self.gate else { return };
        let configs = match crate::gateway_upstreams::upstream_configs(&before) {
            Ok(configs) => configs,
            Err(problem) => {
                tracing::error!(target: TARGET, "{}: the upstreams cannot go back ({problem}); every call is refused until the policy compiles", path.display());
                return;
            }
        };
        let named: Vec<_> = configs
            .into_iter()
            .map(|(name, config)| (name.unwrap_or_default(), config))
            .collect();
        let tools = crate::gateway_config::tool_names(&before);
        match self.gateway.reload_tools(named, tools) {
            Ok(_) => {
                gate.restore(policy);
                self.upstreams = before;
                if let Err(e) = self.gateway.ready(START_TIMEOUT).await {
                    tracing::error!(target: TARGET, "after going back: {e}");
                }
                tracing::error!(
                    target: TARGET,
                    "{}: the policy does not fit the new upstreams' names; the running configuration stays (the previous upstreams, started again, and their policy)",
                    path.display()
                );
            }
            Err(e) => tracing::error!(
                target: TARGET,
                "{}: the upstreams cannot go back ({e}); every call is refused until the policy compiles",
                path.display()
            ),
        }
    }

    /// Reads the policy file again and compiles it against the tools listed now.
    async fn apply_policy(&self) {
        let (Some(gate), Some(path)) = (&self.gate, &self.policy) else {
            return;
        };
        let stays = "the policy in force stays";
        let config = match gateway_policy::load(path) {
            Ok(config) => config,
            Err(problem) => {
                log_lines(&problem, stays);
                return;
            }
        };
        let catalog = match self.gateway.catalog().await {
            Ok(catalog) => catalog,
            Err(e) => {
                tracing::error!(target: TARGET, "{}: cannot list the upstreams' tools: {e}; {stays}", path.display());
                return;
            }
        };
        match gate.install(config, &catalog, path) {
            Ok(()) => tracing::info!(target: TARGET, "{}: policy in force", path.display()),
            Err(problem) => log_lines(&problem, stays),
        }
    }
}

/// A multi-line problem (`--policy FILE:` then one line per problem), one log line each.
fn log_lines(problem: &str, stays: &str) {
    let mut lines = problem.lines().filter(|l| !l.trim().is_empty()).peekable();
    let header = lines.next().unwrap_or_default();
    if lines.peek().is_none() {
        tracing::error!(target: TARGET, "{header}; {stays}");
    }
    for line in lines {
        tracing::error!(target: TARGET, "{}; {stays}", line.trim());
    }
}
