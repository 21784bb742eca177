//! Where `mcp-oauth dev` keeps its signing keys and state, and what `mcp-oauth token` reads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The data folder: `--data-dir`, else `MCP_OAUTH_DATA_DIR`, else
/// `$XDG_DATA_HOME/mcp-oauth`, else `~/.local/share/mcp-oauth`, else `./.mcp-oauth`.
pub(crate) fn resolve(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir;
    }
    if let Some(dir) = std::env::var_os("MCP_OAUTH_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mcp-oauth");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("mcp-oauth");
    }
    PathBuf::from(".mcp-oauth")
}

/// What the last `mcp-oauth dev` run advertised, for `mcp-oauth token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DevState {
    pub(crate) issuer: String,
    pub(crate) mcp_url: String,
    pub(crate) alg: String,
}

const STATE_FILE: &str = "dev.json";

impl DevState {
    pub(crate) fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(STATE_FILE), json)
    }

    pub(crate) fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|_| {
            format!("{} not found: run `mcp-oauth dev` once with this data folder, or pass --iss and --aud", path.display())
        })?;
        serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is damaged ({e}); run `mcp-oauth dev` again",
                path.display()
            )
        })
    }
}
