// oidc-provider in its default configuration (DPoP offered, no dynamic registration, RS256
// development keys), plus only what a deployment must say and a test cannot click through:
//   - one pre-registered native client (loopback redirect, any port: RFC 8252 §7.3);
//   - RFC 8707 resources: any http://127.0.0.1:PORT/... URL, with JWT access tokens for it;
//   - a sign-in page that signs in as "alice" and approves at once (no browser in tests);
//   - when UPSTREAM_REDIRECT_URI is set, a confidential web client "mcp-oauth-server" (secret
//     UPSTREAM_CLIENT_SECRET) redirecting there: an MCP authorization server that signs its
//     users in here. /test/interactions counts the sign-in pages served.
// Listens on 127.0.0.1 only; prints "ISSUER <url>" as its first line.
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const loopbackResource = (value) => {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' && url.hostname === '127.0.0.1' && !url.hash && !url.search;
  } catch {
    return false;
  }
};

const clients = [
  {
    client_id: 'mcp-client',
    token_endpoint_auth_method: 'none',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  },
];
if (process.env.UPSTREAM_REDIRECT_URI) {
  // A web client: the provider remembers its consent (it asks native clients every time).
  clients.push({
    client_id: 'mcp-oauth-server',
    client_secret: process.env.UPSTREAM_CLIENT_SECRET,
    application_type: 'web',
    redirect_uris: [process.env.UPSTREAM_REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  });
}
let interactions = 0;

const provider = new Provider(issuer, {
  clients,
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (!loopbackResource(resource)) throw new errors.InvalidTarget();
        return { scope: 'mcp:tools', audience: resource, accessTokenFormat: 'jwt', accessTokenTTL: 300 };
      },
    },
  },
});

// The user: signs in as alice and grants what the client asked for.
const signIn = async (req, res) => {
  const { params } = await provider.interactionDetails(req, res);
  const grant = new provider.Grant({ accountId: 'alice', clientId: params.client_id });
  grant.addOIDCScope(params.scope ?? '');
  for (const resource of [params.resource].flat().filter(Boolean)) {
    grant.addResourceScope(resource, params.scope ?? '');
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: 'alice' }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
};

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url === '/test/interactions') {
    res.end(String(interactions));
  } else if (req.url.startsWith('/interaction/')) {
    interactions += 1;
    signIn(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  } else {
    callback(req, res);
  }
});
process.stdout.write(`ISSUER ${issuer}\n`);
// The test closes our standard input when it is done: go with it.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
