//! The `mcp-oauth` command.
//!
//! ```text
//! mcp-oauth serve --issuer https://auth.example.com --mcp-url http://127.0.0.1:8080/mcp
//! ```
//!
//! A `.env` file in the current directory is read first (see [`dotenv`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod data_dir;
mod demo;
mod dev;
#[cfg(test)]
mod docs_commands;
mod doctor;
mod dotenv;
mod gateway;
mod gateway_args;
mod gateway_config;
mod gateway_identity_key;
mod gateway_login;
mod gateway_pages;
mod gateway_policy;
mod gateway_reload;
mod gateway_tools;
mod gateway_upstream_args;
mod gateway_upstreams;
mod listen;
mod mcp_json;
mod metrics_arg;
mod options;
mod policy;
mod policy_server;
mod proxy;
mod serve;
mod store_arg;
mod token;
mod trust_args;

/// OAuth 2.1 for MCP servers.
#[derive(Debug, Parser)]
#[command(name = "mcp-oauth", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an authorization server and the demo MCP server it protects on 127.0.0.1: the
    /// whole OAuth flow on one machine, no account anywhere.
    Dev(dev::DevCommand),
    /// Mint an access token with the signing key of `mcp-oauth dev`.
    Token(token::TokenArgs),
    /// Run the demo MCP server (tools whoami, echo, admin_action) protected by an existing
    /// OAuth / OIDC issuer.
    Serve(serve::ServeArgs),
    /// Run the demo MCP server behind an OAuth proxy to Google, GitHub, Okta, Entra ID or any
    /// OpenID Connect issuer: clients register here, users sign in at the provider.
    Proxy(Box<proxy::ProxyArgs>),
    /// Put OAuth in front of any MCP server: a stdio command (`-- CMD ARGS…`) or a Streamable
    /// HTTP endpoint (`--upstream URL`), with the embedded authorization server or an
    /// existing issuer (`--issuer`).
    Gateway(Box<gateway::GatewayArgs>),
    /// Check an authorization server (and optionally an MCP endpoint and a token) the way
    /// MCP clients and this library will, and explain every check.
    Doctor(doctor::DoctorArgs),
    /// Check an authorization policy against a server's tools, explain one decision, or run
    /// allow/deny fixtures (see docs/policy.md).
    Policy(policy::PolicyArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    // Before the options: clap reads their environment variables.
    let dotenv = match dotenv::load(std::path::Path::new(".env")) {
        Ok(read) => read,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MCP_OAUTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or a pipe gets plain text.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    if let Some(path) = dotenv {
        tracing::debug!(target: "mcp_oauth_cli", path = %path.display(), "read environment variables from .env");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Token(args) => token::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve::run(args).await.map(|()| ExitCode::SUCCESS),
        Command::Proxy(args) => proxy::run(*args).await.map(|()| ExitCode::SUCCESS),
        Command::Gateway(args) => gateway::run(*args).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Policy(args) => Ok(policy::run(args).await),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
