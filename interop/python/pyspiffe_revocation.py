"""What a workload sees of revocation, through the unmodified py-spiffe client against
SPIFFE_ENDPOINT_SOCKET, checked with `cryptography` (OpenSSL's verifier logic, not Sigil's).
Prints one JSON object on stdout.

  crl                     the first FetchX509SVID message, as py-spiffe's own gRPC stub receives
                          it (py-spiffe's public API drops the `crl` field, so the response is
                          read through the client's stub):
                          {"leaf_serial": "<hex>", "leaf_issuer": "<subject>",
                           "crls": [{"issuer": "<subject>", "signed_by_leaf_issuer": bool,
                                     "signed_by_root": bool, "revoked": ["<hex>", ...]}]}
                          where "signed_by_*" means the CRL's signature verifies under the public
                          key of the leaf's issuer / of a root in the bundle.
  jwt --audience A        one JWT-SVID: {"token": "...", "jti": "..."}
  validate --audience A --token T
                          ValidateJWTSVID: {"valid": true} or {"valid": false, "error": "..."}

Exits 0 when it could ask, 1 otherwise (with {"error": "..."}).
"""

import argparse
import json
import sys

import jwt as pyjwt
from cryptography import x509
from spiffe import WorkloadApiClient, X509Bundle, X509Svid


def hex_serial(n):
    return format(n, "x")


def verifies(crl, cert):
    try:
        return crl.is_signature_valid(cert.public_key())
    except Exception:  # a key type the CRL was not signed with
        return False


def crl_report(client):
    response = client._call_fetch_x509_svid(timeout=5.0)
    first = response.svids[0]
    svid = X509Svid.parse_raw(first.x509_svid, first.x509_svid_key)
    leaf = svid.leaf
    issuer = svid.cert_chain[1] if len(svid.cert_chain) > 1 else None
    roots = X509Bundle.parse_raw(svid.spiffe_id.trust_domain, first.bundle).x509_authorities
    crls = []
    for der in response.crl:
        crl = x509.load_der_x509_crl(der)
        crls.append({
            "issuer": crl.issuer.rfc4514_string(),
            "signed_by_leaf_issuer": issuer is not None and verifies(crl, issuer),
            "signed_by_root": any(verifies(crl, r) for r in roots),
            "revoked": sorted(hex_serial(r.serial_number) for r in crl),
        })
    return {
        "leaf_serial": hex_serial(leaf.serial_number),
        "leaf_issuer": leaf.issuer.rfc4514_string(),
        "crls": crls,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["crl", "jwt", "validate"])
    parser.add_argument("--audience")
    parser.add_argument("--token")
    args = parser.parse_args()
    try:
        with WorkloadApiClient(default_timeout=5.0) as client:
            if args.mode == "crl":
                report = crl_report(client)
            elif args.mode == "jwt":
                svid = client.fetch_jwt_svid(audience={args.audience})
                report = {
                    "token": svid.token,
                    "jti": pyjwt.decode(svid.token, options={"verify_signature": False})["jti"],
                }
            else:
                try:
                    client.validate_jwt_svid(args.token, args.audience)
                    report = {"valid": True}
                except Exception as e:  # py-spiffe's ValidateJwtSvidError
                    report = {"valid": False, "error": f"{type(e).__name__}: {e}"}
    except Exception as e:  # report whatever py-spiffe raised
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps(report, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
