//! What the CLI's end-to-end tests share: the `mcp-oauth` process under test (the gateway and
//! an MCP client of it among them), a browser that follows redirects by hand, and a GitHub
//! stand-in.

#![allow(
    dead_code, // each test binary uses a part of it
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

pub mod browser;
pub mod gateway;
pub mod github;
pub mod mcp;
pub mod process;
