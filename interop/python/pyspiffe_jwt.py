"""Fetches one JWT-SVID and the JWT bundles with the unmodified py-spiffe client from
SPIFFE_ENDPOINT_SOCKET, validates the token against those bundles the way a relying party does,
and prints one JSON object on stdout:

  {"kid": "...", "bundle_kids": [...], "valid": true}   (or "valid": false with "error")

Exits 0 when it could fetch both, 1 otherwise (with {"error": "..."}).

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path python pyspiffe_jwt.py --audience A
"""

import argparse
import json
import sys

import jwt as pyjwt
from spiffe import JwtSvid, WorkloadApiClient


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--audience", required=True)
    args = parser.parse_args()
    try:
        with WorkloadApiClient(default_timeout=5.0) as client:
            svid = client.fetch_jwt_svid(audience={args.audience})
            bundles = client.fetch_jwt_bundles()
    except Exception as e:  # report whatever py-spiffe raised
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    bundle = bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
    report = {
        "kid": pyjwt.get_unverified_header(svid.token).get("kid"),
        "bundle_kids": sorted(bundle.jwt_authorities.keys()) if bundle else [],
    }
    try:
        JwtSvid.parse_and_validate(svid.token, bundle, {args.audience})
        report["valid"] = True
    except Exception as e:
        report["valid"] = False
        report["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
