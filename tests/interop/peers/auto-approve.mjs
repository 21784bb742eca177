// Automatic sign-in and consent for an oidc-provider instance (the interop and benchmark
// authorization servers): GET /interaction/<uid> signs `accountId` in, grants every scope,
// claim and resource scope asked for, and redirects back into the authorization flow.
export function autoApprove(provider, accountId) {
  provider.use(async (ctx, next) => {
    if (!(ctx.method === 'GET' && /^\/interaction\/[^/]+$/.test(ctx.path))) return next();
    const { prompt: { name, details }, grantId, session, params } = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (name === 'login') {
      result = { login: { accountId } };
    } else if (name === 'consent') {
      const grant = grantId ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
      if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
      for (const [ind, sc] of Object.entries(details.missingResourceScopes || {})) grant.addResourceScope(ind, sc.join(' '));
      result = { consent: { grantId: await grant.save() } };
    } else {
      ctx.throw(501);
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
    ctx.status = 303;
    ctx.redirect(returnTo);
  });
}
