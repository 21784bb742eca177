//! `mcp-oauth doctor` (being written).

use std::process::ExitCode;

use clap::Args;

/// Options of `mcp-oauth doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {}

pub(crate) async fn run(_args: DoctorArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    Err("doctor is not available yet".into())
}
