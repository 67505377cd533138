"""Drives the unmodified py-spiffe Workload API client against SPIFFE_ENDPOINT_SOCKET and prints a
JSON report on stdout: every public call it makes, what came back, and local JWT-SVID validation
with the fetched JWT bundles. Exits non-zero (with the failing step in the report) on any failure.

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path python pyspiffe_client.py --audience AUD
"""

import argparse
import json
import sys

from spiffe import JwtSvid, WorkloadApiClient


class StepFailed(Exception):
    def __init__(self, step, error):
        super().__init__(f"{step}: {error}")
        self.step = step
        self.error = error


def step(report, name, fn):
    try:
        result = fn()
    except Exception as e:  # report every failure, whatever py-spiffe raised
        raise StepFailed(name, f"{type(e).__name__}: {e}") from e
    report["steps"].append(name)
    return result


def run(args, report):
    with WorkloadApiClient(default_timeout=args.timeout) as client:
        svid = step(report, "fetch_x509_svid", client.fetch_x509_svid)
        report["x509_svid"] = {
            "spiffe_id": str(svid.spiffe_id),
            "chain_length": len(svid.cert_chain),
            "key_type": type(svid.private_key).__name__,
        }

        svids = step(report, "fetch_x509_svids", client.fetch_x509_svids)
        report["x509_svids"] = [str(s.spiffe_id) for s in svids]

        bundles = step(report, "fetch_x509_bundles", client.fetch_x509_bundles)
        report["x509_bundles"] = {
            str(b.trust_domain): len(b.x509_authorities) for b in bundles.bundles
        }

        token = step(
            report, "fetch_jwt_svid", lambda: client.fetch_jwt_svid(audience={args.audience})
        )
        report["jwt_svid"] = {
            "spiffe_id": str(token.spiffe_id),
            "audience": sorted(token.audience),
            "expiry": token.expiry,
        }

        jwt_bundles = step(report, "fetch_jwt_bundles", client.fetch_jwt_bundles)
        report["jwt_bundles"] = {
            str(b.trust_domain): sorted(b.jwt_authorities.keys()) for b in jwt_bundles.bundles
        }

        validated = step(
            report,
            "validate_jwt_svid",
            lambda: client.validate_jwt_svid(token.token, args.audience),
        )
        report["validated_spiffe_id"] = str(validated.spiffe_id)

        def validate_locally():
            td = token.spiffe_id.trust_domain
            bundle = jwt_bundles.get_bundle_for_trust_domain(td)
            if bundle is None:
                raise RuntimeError(f"no JWT bundle for {td}")
            return JwtSvid.parse_and_validate(token.token, bundle, {args.audience})

        local = step(report, "local_jwt_validation", validate_locally)
        report["locally_validated_spiffe_id"] = str(local.spiffe_id)

        def wrong_audience_is_refused():
            try:
                client.validate_jwt_svid(token.token, args.audience + "-other")
            except Exception as e:
                return f"{type(e).__name__}: {e}"
            raise RuntimeError("the Workload API accepted a JWT-SVID for the wrong audience")

        report["wrong_audience_error"] = step(
            report, "validate_wrong_audience", wrong_audience_is_refused
        )

        def tampered_is_refused():
            header, payload, signature = token.token.split(".")
            flipped = payload[:4] + ("B" if payload[4] == "A" else "A") + payload[5:]
            forged = ".".join([header, flipped, signature])
            errors = {}
            try:
                client.validate_jwt_svid(forged, args.audience)
            except Exception as e:
                errors["workload_api"] = f"{type(e).__name__}: {e}"
            try:
                td = token.spiffe_id.trust_domain
                JwtSvid.parse_and_validate(
                    forged, jwt_bundles.get_bundle_for_trust_domain(td), {args.audience}
                )
            except Exception as e:
                errors["local"] = f"{type(e).__name__}: {e}"
            if set(errors) != {"workload_api", "local"}:
                raise RuntimeError(f"a tampered JWT-SVID was accepted: {errors}")
            return errors

        report["tampered_errors"] = step(report, "validate_tampered", tampered_is_refused)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--audience", default="sigil-interop")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    report = {"ok": False, "steps": []}
    try:
        run(args, report)
        report["ok"] = True
    except StepFailed as e:
        report["failed_step"] = e.step
        report["error"] = e.error
    except Exception as e:
        report["failed_step"] = "client"
        report["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(report, sort_keys=True))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
