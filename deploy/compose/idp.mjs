// The quick start's OIDC provider (npm `oidc-provider`): agents get client-credentials
// JWTs for audience urn:airlock with groups ["ai-agents"]. Client `agent-1`, secret
// `agent-1-secret` (a laptop's quick start only). Issuer from $ISSUER.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';
const port = Number(process.env.PORT || 9000);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'quickstart', use: 'sig', alg: 'RS256' };
const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{ client_id: 'agent-1', client_secret: 'agent-1-secret', grant_types: ['client_credentials'],
    redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'db:read' }],
  scopes: ['db:read'],
  extraTokenClaims: async () => ({ groups: ['ai-agents'] }),
  features: {
    devInteractions: { enabled: false }, clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true, defaultResource: () => 'urn:airlock', useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => ({ scope: 'db:read', audience: resource, accessTokenTTL: 600,
        accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
    },
  },
});
provider.listen(port, process.env.LISTEN || '0.0.0.0', () => console.log(`issuer ${issuer}`));
