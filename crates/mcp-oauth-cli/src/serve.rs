//! `mcp-oauth serve`: the demo MCP server in front of an existing issuer.

use clap::Args;
use mcp_oauth::OAuth;
use mcp_oauth::verify::JwtVerifier;

/// Options of `mcp-oauth serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Issuer URL of the authorization server (its keys are found through its discovery
    /// document).
    #[arg(long, env = "OIDC_ISSUER")]
    issuer: String,
    /// Public URL of the MCP endpoint; the server listens on its host and port.
    #[arg(long, env = "MCP_URL", default_value = "http://127.0.0.1:8080/mcp")]
    mcp_url: String,
    /// Another accepted token audience (an API identifier, a client id).
    #[arg(long, env = "OIDC_AUDIENCE")]
    audience: Option<String>,
    /// Scopes advertised in the metadata and the 401 challenge, space-separated.
    #[arg(long, env = "OIDC_SCOPES")]
    scopes: Option<String>,
    /// Address to listen on (default: the host and port of --mcp-url).
    #[arg(long)]
    listen: Option<String>,
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let verifier = JwtVerifier::builder()
        .issuer(args.issuer.clone())
        .discover_jwks()
        .build()?;
    let mut oauth = OAuth::builder()
        .resource(args.mcp_url.clone())
        .authorization_server(args.issuer.clone())
        .verifier(verifier);
    if let Some(audience) = args.audience {
        oauth = oauth.audience(audience);
    }
    if let Some(scopes) = args.scopes {
        oauth = oauth.scopes_supported(
            scopes
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
    }
    let oauth = oauth.build()?;
    let listen = match args.listen {
        Some(listen) => listen,
        None => {
            let url = oauth.resource().url();
            format!(
                "{}:{}",
                url.host_str().unwrap_or("127.0.0.1"),
                url.port_or_known_default().unwrap_or(80)
            )
        }
    };
    println!("MCP endpoint:  {}", oauth.resource());
    println!("issuer:        {}", args.issuer);
    println!("metadata:      {}", oauth.resource().metadata_url());
    crate::demo::server().oauth(oauth).listen(listen).await?;
    Ok(())
}
