// A real OIDC provider for the end-to-end tests (npm `oidc-provider`): client
// credentials, JWT access tokens, discovery and JWKS on 127.0.0.1:$PORT.
// Clients (secret: "<id>-secret"):
//   agent-1     groups ["ai-agents"], audience urn:airlock, 600 s tokens
//   other-aud   a token for audience urn:something-else
//   brief       groups ["ai-agents"], audience urn:airlock, $BRIEF_TTL s tokens (default 4)
//   console     a person's browser sign-in (authorization code + PKCE) returning to
//               $CONSOLE_REDIRECT; the provider's own login form takes any login name
//               and password; `dana` is in group dba, `erin` in auditors, anyone else in none.
// $KID names the signing key; a restart generates a new key (a key rotation).
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';
const port = Number(process.env.PORT || 19000);
const kid = process.env.KID || 'test-rs256';
const briefTtl = Number(process.env.BRIEF_TTL || 4);
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
const client = (id) => ({ client_id: id, client_secret: `${id}-secret`, grant_types: ['client_credentials'],
  redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'db:read' });
const people = { dana: ['dba'], erin: ['auditors'] };
const consoleClient = process.env.CONSOLE_REDIRECT ? [{ client_id: 'console', client_secret: 'console-secret',
  grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: [process.env.CONSOLE_REDIRECT],
  token_endpoint_auth_method: 'client_secret_basic', scope: 'openid groups profile' }] : [];
const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [jwk] },
  clients: [client('agent-1'), client('other-aud'), client('brief'), ...consoleClient],
  scopes: ['openid', 'db:read', 'groups', 'profile'],
  claims: { openid: ['sub'], groups: ['groups'], profile: ['name'] },
  conformIdTokenClaims: false,
  findAccount: async (ctx, sub) => ({ accountId: sub,
    async claims() { return { sub, name: sub, groups: people[sub] || [] }; } }),
  extraTokenClaims: async () => ({ groups: ['ai-agents'] }),
  features: {
    devInteractions: { enabled: !!process.env.CONSOLE_REDIRECT }, clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx) => (ctx.oidc.client?.clientId === 'other-aud' ? 'urn:something-else' : 'urn:airlock'),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({ scope: 'db:read', audience: resource,
        accessTokenTTL: ctx.oidc.client?.clientId === 'brief' ? briefTtl : 600,
        accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
    },
  },
});
provider.listen(port, '127.0.0.1', () => console.log(`issuer http://127.0.0.1:${port}`));
