// oidc-provider as the baseline of benches/token_endpoint.rs: the same three token-endpoint jobs
// as our embedded authorization server, each in oidc-provider's own way, with ES256 JWT access
// tokens for one resource:
//   - a public client ("bench-public") with PKCE, a session and a remembered grant, so
//     /auth answers with a code at once (the sign-in below runs once per load client), and a
//     rotated refresh token on every refresh;
//   - a confidential client ("bench-exchanger", client_secret_basic) and RFC 8693 token exchange
//     registered with registerGrantType: the subject token's signature, issuer, audience and
//     expiry are checked, the downstream scopes only narrowed, and an `act` claim names the client.
// Listens on 127.0.0.1 only; prints one JSON line (its endpoints, clients and resource) and
// exits when its standard input closes.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const resource = `${issuer}/mcp`;
const downstream = 'https://crm.bench/api';
const exchangerSecret = crypto.randomBytes(32).toString('base64url');
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

const signing = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ecJwk = { ...signing.privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };
// ID tokens are never asked for; the provider still wants a key for its default algorithm.
const rsaJwk = {
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'bench-rs256',
  use: 'sig',
};

const jwtFor = (audience, scope) => ({
  scope,
  audience,
  accessTokenFormat: 'jwt',
  accessTokenTTL: 3600,
  jwt: { sign: { alg: 'ES256' } },
});
const resourceServers = {
  [resource]: jwtFor(resource, 'mcp'),
  [downstream]: jwtFor(downstream, 'crm:read crm:write'),
};

// The quick-start adapter is an LRU of 1,000 records: under load it drops the session and the
// grant. This one keeps everything (in a Map, as a process-local deployment would), and spends
// consumed and destroyed records as the model expects.
const records = new Map();
const grants = new Map();
class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload) {
    records.set(this.key(id), payload);
    if (payload.grantId) {
      const ids = grants.get(payload.grantId) ?? new Set();
      ids.add(this.key(id));
      grants.set(payload.grantId, ids);
    }
  }

  async find(id) {
    return records.get(this.key(id));
  }

  async findByUid(uid) {
    for (const payload of records.values()) if (payload.uid === uid) return payload;
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const payload of records.values()) if (payload.userCode === userCode) return payload;
    return undefined;
  }

  async consume(id) {
    const payload = records.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    records.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const key of grants.get(grantId) ?? []) records.delete(key);
    grants.delete(grantId);
  }
}

// OIDC_PROVIDER_ADAPTER=quickstart measures the provider as it comes (the refresh and exchange
// jobs only: the code flow loses its session).
const quickstart = process.env.OIDC_PROVIDER_ADAPTER === 'quickstart';

const provider = new Provider(issuer, {
  ...(quickstart ? {} : { adapter: MapAdapter }),
  jwks: { keys: [ecJwk, rsaJwk] },
  clients: [
    {
      client_id: 'bench-public',
      token_endpoint_auth_method: 'none',
      application_type: 'web',
      redirect_uris: ['http://127.0.0.1:9/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    },
    {
      client_id: 'bench-exchanger',
      client_secret: exchangerSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [EXCHANGE],
      response_types: [],
      redirect_uris: [],
    },
  ],
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  issueRefreshToken: () => true,
  rotateRefreshToken: () => true,
  expiresWithSession: () => false,
  extraTokenClaims: (ctx) => (ctx.oidc.params?.grant_type === EXCHANGE ? { act: { sub: ctx.oidc.client.clientId } } : undefined),
  ttl: { Interaction: 600, Grant: 86400, Session: 86400 },
  features: {
    devInteractions: { enabled: false },
    resourceIndicators: {
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, target) => {
        if (target !== resource) throw new errors.InvalidTarget();
        return resourceServers[resource];
      },
    },
  },
});

// RFC 8693 at oidc-provider: its own access tokens (ES256 JWTs for `resource`) for the one
// downstream API, to the one client allowed to exchange.
const verifySubject = (token) => {
  const parts = token.split('.');
  if (parts.length !== 3) throw new errors.InvalidGrant('subject_token is not a JWT');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  if (header.alg !== 'ES256' || header.kid !== ecJwk.kid) throw new errors.InvalidGrant('unknown key');
  const valid = crypto.verify(
    'sha256',
    Buffer.from(`${parts[0]}.${parts[1]}`),
    { key: signing.publicKey, dsaEncoding: 'ieee-p1363' },
    Buffer.from(parts[2], 'base64url'),
  );
  if (!valid) throw new errors.InvalidGrant('bad signature');
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  if (claims.iss !== issuer || claims.aud !== resource || !(claims.exp > Date.now() / 1000)) {
    throw new errors.InvalidGrant('subject_token is not for this exchange');
  }
  return claims;
};

provider.registerGrantType(
  EXCHANGE,
  async (ctx) => {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN) throw new errors.InvalidRequest('unsupported subject_token_type');
    const target = params.audience ?? params.resource;
    if (target !== downstream) throw new errors.InvalidTarget();
    const subject = verifySubject(params.subject_token);
    const allowed = new Set(resourceServers[downstream].scope.split(' '));
    const scope = (params.scope ?? resourceServers[downstream].scope)
      .split(' ')
      .filter((s) => allowed.has(s))
      .join(' ');
    if (!scope) throw new errors.InvalidScope('no downstream scope');
    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      scope,
    });
    token.resourceServer = new provider.ResourceServer(downstream, resourceServers[downstream]);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope,
    };
  },
  ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type'],
);

// The one sign-in: "bench-user" grants what the client asked for.
const signIn = async (req, res) => {
  const { params } = await provider.interactionDetails(req, res);
  const grant = new provider.Grant({ accountId: 'bench-user', clientId: params.client_id });
  grant.addResourceScope(resource, 'mcp');
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: 'bench-user' }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
};

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    signIn(req, res).catch((error) => {
      res.statusCode = 500;
      res.end(String(error));
    });
  } else {
    callback(req, res);
  }
});
process.stdout.write(`${JSON.stringify({
  authorization_endpoint: `${issuer}/auth`,
  token_endpoint: `${issuer}/token`,
  public_client: 'bench-public',
  resource,
  exchanger: 'bench-exchanger',
  exchanger_secret: exchangerSecret,
})}\n`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
