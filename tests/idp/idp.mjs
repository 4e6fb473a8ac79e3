// A real OIDC provider for the end-to-end tests (npm `oidc-provider`): client
// credentials, JWT access tokens, discovery and JWKS on 127.0.0.1:$PORT.
// Clients (secret: "<id>-secret"):
//   agent-1     groups ["ai-agents"], audience urn:airlock, 600 s tokens
//   other-aud   a token for audience urn:something-else
//   brief       groups ["ai-agents"], audience urn:airlock, $BRIEF_TTL s tokens (default 4)
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
const provider = new Provider(`http://127.0.0.1:${port}`, {
  jwks: { keys: [jwk] },
  clients: [client('agent-1'), client('other-aud'), client('brief')],
  scopes: ['db:read'],
  extraTokenClaims: async () => ({ groups: ['ai-agents'] }),
  features: {
    devInteractions: { enabled: false }, clientCredentials: { enabled: true },
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
