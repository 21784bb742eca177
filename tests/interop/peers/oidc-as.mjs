// Local OAuth 2.1 / OIDC authorization server for the interop tests (tests/interop/).
// Real AS: panva `oidc-provider` (pinned in ../package.json). Binds 127.0.0.1 only.
// Adapted from the project's shared reference peer (shared/peers/oidc-as.mjs).
//   PORT=9000 AUTO_APPROVE=1 node peers/oidc-as.mjs
// Env:
//   PORT           listen port (default 9000)
//   AUTO_APPROVE=1 GET /interaction/:uid logs in "test-user" and grants consent
//                  automatically (a cookie-keeping redirect follower completes
//                  authorization_code+PKCE with no browser). Without it the
//                  devInteractions HTML forms are shown (POST login/consent).
//   SCOPES         space-separated resource scopes (default "mcp:read mcp:write")
//   TOKEN_TTL      access token lifetime, seconds (default 3600)
//   JWKS_OUT       optional file to write the public JWKS to
//   DEFAULT_RESOURCE resource (aud) used when a request names none (else such a
//                  request gets an opaque, non-JWT access token)
//   DPOP_NONCE=1   DPoP proofs at /token must carry a server nonce (use_dpop_nonce and a
//                  DPoP-Nonce header otherwise, RFC 9449 §8)
// Features: discovery (OIDC + RFC 8414 alias), JWKS, DCR (RFC 7591, open),
// PKCE S256 (required), client_credentials, refresh_token, RFC 8707 resource
// indicators -> RS256 JWT access tokens (aud = resource), introspection,
// revocation, DPoP (RFC 9449: a token request with a proof gets a token bound to its key,
// `cnf.jkt`, token_type DPoP). Static confidential client: svc / svc-secret (client_credentials).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import { autoApprove } from './auto-approve.mjs';
import { generateKeyPair, exportJWK } from 'jose';

const PORT = Number(process.env.PORT || 9000);
const ISSUER = `http://127.0.0.1:${PORT}`;
const SCOPES = (process.env.SCOPES || 'mcp:read mcp:write').split(/\s+/).filter(Boolean);
const TTL = Number(process.env.TOKEN_TTL || 3600);
const AUTO = process.env.AUTO_APPROVE === '1';

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
if (process.env.JWKS_OUT) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  writeFileSync(process.env.JWKS_OUT, JSON.stringify({ keys: [pub] }));
}

const provider = new Provider(ISSUER, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: 'svc',
    client_secret: 'svc-secret',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: SCOPES.join(' '),
  }],
  scopes: ['openid', 'offline_access', ...SCOPES],
  pkce: { required: () => true },
  ttl: { AccessToken: TTL, ClientCredentials: TTL },
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: process.env.DPOP_NONCE === '1'
      ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true }
      : { enabled: true },
    resourceIndicators: {
      enabled: true,
      // a client that sends no `resource` still gets a JWT for the single requested one
      defaultResource: (ctx, client, oneOf) => oneOf || process.env.DEFAULT_RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => ({
        scope: SCOPES.join(' '),
        audience: resourceIndicator,
        accessTokenTTL: TTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // refresh tokens for public (PKCE) clients too, without requiring offline_access
  issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
});
provider.proxy = false;

// RFC 8414 alias (oidc-provider serves only the OIDC discovery path)
provider.use(async (ctx, next) => {
  if (ctx.path === '/.well-known/oauth-authorization-server') ctx.path = '/.well-known/openid-configuration';
  return next();
});

if (AUTO) autoApprove(provider, 'test-user');

provider.listen(PORT, '127.0.0.1', () => {
  console.log(`oidc-provider ${ISSUER} ready auto_approve=${AUTO} scopes=${SCOPES.join(',')}`);
});
