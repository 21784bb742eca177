// A Google-like OpenID provider for the `mcp-oauth proxy` interop scenarios (tests/interop/):
// panva `oidc-provider` (pinned in ../package.json) configured the way an identity provider
// without dynamic client registration looks to the proxy. Binds 127.0.0.1 only.
//
//   PORT=9100 CLIENT_ID=proxy CLIENT_SECRET=s REDIRECT_URI=http://127.0.0.1:8080/oauth/callback \
//     node peers/oidc-upstream.mjs
//
// Env:
//   PORT           listen port (default 9100)
//   CLIENT_ID, CLIENT_SECRET   the one pre-registered confidential client (the proxy);
//                  client_secret_post, PKCE S256 required
//   REDIRECT_URI   its only redirect URI: the proxy's <public-url>/oauth/callback
//   RECORD_OUT     file to append one JSON line per event to: {"kind":"authorize","params":…}
//                  (the proxy's authorize request), {"kind":"token_request",…} (grant type,
//                  client, whether a code_verifier came) and {"kind":"token_response","body":…}
//                  (exactly what the token endpoint answered: access, refresh and ID token), so
//                  the runner can look for these tokens in what MCP clients received
//   USER_ID, USER_EMAIL, USER_NAME   the signed-in user (default upstream-user-1 /
//                  ada@upstream.example / Ada Lovelace)
//
// Like Google: no dynamic registration, scopes openid email profile, opaque access tokens, a
// refresh token with every code (as with access_type=offline), an RS256 id_token carrying
// email, email_verified and name. Sign-in and consent are automatic (the AUTO_APPROVE
// interaction of oidc-as.mjs): a cookie-keeping redirect follower completes the flow.
import { appendFileSync } from 'node:fs';
import Provider from 'oidc-provider';
import { autoApprove } from './auto-approve.mjs';
import { generateKeyPair, exportJWK } from 'jose';

const PORT = Number(process.env.PORT || 9100);
const ISSUER = `http://127.0.0.1:${PORT}`;
const need = (name) => {
  const v = process.env[name];
  if (!v) { console.error(`oidc-upstream: ${name} is required`); process.exit(2); }
  return v;
};
const CLIENT_ID = need('CLIENT_ID');
const CLIENT_SECRET = need('CLIENT_SECRET');
const REDIRECT_URI = need('REDIRECT_URI');
const RECORD_OUT = process.env.RECORD_OUT;
const USER = {
  sub: process.env.USER_ID || 'upstream-user-1',
  email: process.env.USER_EMAIL || 'ada@upstream.example',
  email_verified: true,
  name: process.env.USER_NAME || 'Ada Lovelace',
};
const record = (event) => { if (RECORD_OUT) appendFileSync(RECORD_OUT, JSON.stringify(event) + '\n'); };

const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'upstream-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(ISSUER, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
    scope: 'openid email profile',
  }],
  scopes: ['openid', 'email', 'profile'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Google puts the profile claims into the id_token of a code flow too.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: false },
  },
  issueRefreshToken: async () => true,
  findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ ...USER, sub }) }),
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  if (ctx.method === 'GET' && ctx.path === '/auth') {
    record({ kind: 'authorize', params: { ...ctx.query } });
  }
  await next();
  if (ctx.path === '/token' && ctx.method === 'POST') {
    const p = ctx.oidc?.params || {};
    record({
      kind: 'token_request',
      status: ctx.status,
      grant_type: p.grant_type ?? null,
      client_id: ctx.oidc?.client?.clientId ?? null,
      code_verifier: Boolean(p.code_verifier),
      redirect_uri: p.redirect_uri ?? null,
    });
    if (ctx.status === 200) record({ kind: 'token_response', body: ctx.body });
  }
});

// Automatic sign-in (as USER) and consent.
autoApprove(provider, USER.sub);

provider.listen(PORT, '127.0.0.1', () => {
  console.log(`oidc-upstream ${ISSUER} ready client=${CLIENT_ID} redirect_uri=${REDIRECT_URI}`);
});
