// A headless stand-in for the browser in an authorization_code flow, shared by the TS SDK v1 and
// v2 client peers. Follows the authorization server's redirects by hand with a cookie jar and,
// when a hop answers 200 with an HTML form (the login & consent page of `mcp-oauth dev`), fills it
// the way a person would: hidden fields as given, `username` / `password`, and the submit button
// `decision=approve` (or `deny`), then POSTs it to the form's action with the jar's cookies. Stops
// at the first Location that starts with the redirect URI (nothing has to listen there).
//
//   const { callback, trace } = await followToRedirectUri(authUrl, redirectUri, { user, password });
//
// `trace` records every hop (method, URL path, status, cookie names set, form fields seen) for the
// runner's assertions. Needs Node >= 20 (fetch, Headers.getSetCookie).

function keepCookies(jar, res) {
  const names = [];
  for (const sc of res.headers.getSetCookie()) {
    const [kv, ...attrs] = sc.split(';');
    const i = kv.indexOf('=');
    const name = kv.slice(0, i).trim();
    jar.set(name, kv.slice(i + 1));
    names.push({ name, attributes: attrs.map((a) => a.trim()) });
  }
  return names;
}

const cookieHeader = (jar) => [...jar].map(([k, v]) => `${k}=${v}`).join('; ');

function decodeEntities(s) {
  return s.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|#39);/gi, (m, e) => {
    const l = e.toLowerCase();
    if (l === 'amp') return '&';
    if (l === 'lt') return '<';
    if (l === 'gt') return '>';
    if (l === 'quot') return '"';
    if (l === 'apos' || l === '#39') return "'";
    if (l.startsWith('#x')) return String.fromCodePoint(parseInt(l.slice(2), 16));
    return String.fromCodePoint(parseInt(l.slice(1), 10));
  });
}

function attrs(tag) {
  const out = {};
  for (const m of tag.matchAll(/([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g)) {
    out[m[1].toLowerCase()] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

/** The first <form> of an HTML page: action, method, inputs, submit buttons. */
export function parseForm(html) {
  const fm = html.match(/<form\b([^>]*)>([\s\S]*?)<\/form>/i);
  if (!fm) return null;
  const fa = attrs(fm[1]);
  const inputs = [...fm[2].matchAll(/<input\b([^>]*)>/gi)].map((m) => attrs(m[1]));
  const buttons = [...fm[2].matchAll(/<button\b([^>]*)>([\s\S]*?)<\/button>/gi)].map((m) => ({ ...attrs(m[1]), text: m[2].replace(/<[^>]*>/g, '').trim() }));
  return { action: fa.action, method: (fa.method || 'get').toLowerCase(), inputs, buttons };
}

export async function followToRedirectUri(start, redirectUri, { user, password, decision = 'approve', fetchFn = fetch, maxHops = 15 } = {}) {
  const jar = new Map();
  const trace = [];
  let u = new URL(start);
  let method = 'GET';
  let body;
  for (let hop = 0; hop < maxHops; hop++) {
    const headers = {};
    const cookie = cookieHeader(jar);
    const sent = [...jar.keys()];
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const r = await fetchFn(u, { method, redirect: 'manual', headers, body });
    const set = keepCookies(jar, r);
    const step = { method, path: u.pathname, status: r.status, set_cookies: set, sent_cookies: sent };
    trace.push(step);
    const loc = r.headers.get('location');
    if (loc) {
      u = new URL(loc, u);
      method = 'GET';
      body = undefined;
      if (u.href.startsWith(redirectUri)) return { callback: u, trace };
      continue;
    }
    const ctype = r.headers.get('content-type') || '';
    const text = await r.text();
    if (method === 'POST') throw new Error(`the form POST to ${u.pathname} answered ${r.status} without a redirect: ${text.slice(0, 300)}`);
    const form = ctype.includes('text/html') ? parseForm(text) : null;
    if (!form) throw new Error(`no redirect and no form at hop ${hop}: ${method} ${u.pathname} -> ${r.status} ${text.slice(0, 300)}`);
    if (user === undefined) throw new Error(`the AS shows a login form at ${u.pathname} but no LOGIN_USER was given`);
    const title = (text.match(/<title>([\s\S]*?)<\/title>/i) || [])[1];
    step.page = {
      title: title && decodeEntities(title),
      heading: decodeEntities(((text.match(/<h1[^>]*>([\s\S]*?)<\/h1>/i) || [])[1] || '').replace(/<[^>]*>/g, '').trim()),
      form_action: form.action,
      form_method: form.method,
      inputs: form.inputs.map((i) => ({ name: i.name, type: i.type || 'text' })),
      buttons: form.buttons.map((b) => ({ name: b.name, value: b.value, text: b.text })),
      scopes: [...text.matchAll(/<li><code>([^<]*)<\/code><\/li>/g)].map((m) => decodeEntities(m[1])),
    };
    const fields = new URLSearchParams();
    for (const i of form.inputs) {
      if (!i.name) continue;
      if (i.name === 'username') fields.set('username', user);
      else if (i.name === 'password') fields.set('password', password);
      else if ((i.type || 'text') === 'hidden') fields.set(i.name, i.value ?? '');
    }
    const button = form.buttons.find((b) => b.value === decision);
    if (!button) throw new Error(`the form has no button with value ${decision}: ${JSON.stringify(form.buttons)}`);
    fields.set(button.name, button.value);
    u = new URL(form.action || u.href, u);
    method = form.method.toUpperCase();
    body = fields.toString();
  }
  throw new Error('too many redirects');
}
