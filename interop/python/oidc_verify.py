"""A relying party that knows nothing but the issuer URL: reads the OIDC discovery document,
checks its `issuer`, takes the JWKS from `jwks_uri` with PyJWT's PyJWKClient, and validates a
JWT-SVID (signature, `iss`, `aud`, `exp`). Prints one JSON object on stdout:

  {"valid": true, "sub": "...", "kid": "..."}   or   {"valid": false, "error": "TypeName: ..."}

Exits 0 either way once discovery worked; 1 when discovery itself failed. HTTPS trust comes from
the environment (SSL_CERT_FILE).

Usage: python oidc_verify.py --issuer URL --audience A --token JWT
"""

import argparse
import json
import ssl
import sys
import urllib.request

import jwt as pyjwt


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    context = ssl.create_default_context()
    try:
        url = args.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            discovery = json.load(response)
        if discovery.get("issuer") != args.issuer:
            raise ValueError(f"discovery names issuer {discovery.get('issuer')!r}")
        jwks = pyjwt.PyJWKClient(discovery["jwks_uri"], ssl_context=context)
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    try:
        key = jwks.get_signing_key_from_jwt(args.token)
        claims = pyjwt.decode(
            args.token,
            key.key,
            algorithms=discovery["id_token_signing_alg_values_supported"],
            audience=args.audience,
            issuer=args.issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]},
        )
        print(json.dumps({"valid": True, "sub": claims["sub"], "kid": key.key_id}), flush=True)
    except Exception as e:
        print(json.dumps({"valid": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
