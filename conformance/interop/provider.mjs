// What both TypeScript SDK interop clients share: an OAuth client provider whose "browser"
// follows the authorization URL once (the server auto-approves) and reads the redirect.
import assert from 'node:assert/strict';

const redirectUrl = 'http://127.0.0.1:9/callback';

export class Provider {
  constructor(mcpUrl, clientName) {
    this.mcpUrl = mcpUrl;
    this.clientName = clientName;
    this.code = undefined;
    this.callbackParams = undefined;
    this.savedTokens = [];
  }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      client_name: this.clientName,
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return 'ts-sdk-state'; }
  clientInformation() { return this.client; }
  saveClientInformation(info) { this.client = info; }
  tokens() { return this.current; }
  saveTokens(tokens) { this.current = tokens; this.savedTokens.push(tokens); }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  // SEP-2352: the v2 SDK binds the callback to the authorization server it discovered.
  saveDiscoveryState(state) { this.discovery = state; }
  discoveryState() { return this.discovery; }
  async redirectToAuthorization(url) {
    const response = await fetch(url, { redirect: 'manual' });
    assert.equal(response.status, 302, `authorize answered ${response.status}`);
    const location = new URL(response.headers.get('location'));
    assert.equal(location.origin + location.pathname, redirectUrl);
    assert.equal(location.searchParams.get('state'), 'ts-sdk-state');
    assert.equal(location.searchParams.get('iss'), new URL(this.mcpUrl).origin);
    this.code = location.searchParams.get('code');
    this.callbackParams = location.searchParams;
    assert.ok(this.code, 'a code in the redirect');
  }
}

export function text(result) {
  return result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');
}
