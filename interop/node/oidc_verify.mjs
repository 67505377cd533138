// A relying party that knows nothing but the issuer URL, with the unmodified `jose` library:
// reads the OIDC discovery document, checks its issuer, and validates a JWT-SVID against the
// JWKS at `jwks_uri` (createRemoteJWKSet) for signature, `iss`, `aud` and `exp`. Prints one JSON
// object: {"valid": true, "sub": ...} or {"valid": false, "error": ...}; exits 1 only when
// discovery itself failed. HTTPS trust comes from NODE_EXTRA_CA_CERTS.
//
// Usage: node oidc_verify.mjs ISSUER AUDIENCE TOKEN
import { createRemoteJWKSet, jwtVerify } from "jose";

const [issuer, audience, token] = process.argv.slice(2);
let discovery;
try {
  const response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!response.ok) throw new Error(`discovery answered ${response.status}`);
  discovery = await response.json();
  if (discovery.issuer !== issuer) throw new Error(`discovery names issuer ${discovery.issuer}`);
} catch (e) {
  console.log(JSON.stringify({ error: `${e.name}: ${e.message}` }));
  process.exit(1);
}
try {
  const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer, audience });
  console.log(JSON.stringify({ valid: true, sub: payload.sub, kid: protectedHeader.kid }));
} catch (e) {
  console.log(JSON.stringify({ valid: false, error: `${e.code ?? e.name}: ${e.message}` }));
}
