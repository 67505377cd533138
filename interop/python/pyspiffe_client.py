"""Drives the unmodified py-spiffe Workload API client against SPIFFE_ENDPOINT_SOCKET and prints a
JSON report on stdout: every public call it makes, what came back, and local JWT-SVID validation
with the fetched JWT bundles. Exits non-zero (with the failing step in the report) on any failure.

Every token in the environment variable SIGIL_INTEROP_REFUSAL_CASES (a JSON object
{case name: token} built by the test: forged signatures, alg none, HS256, expired, wrong audience)
must be refused both by validate_jwt_svid (the Workload API) and by local validation; the report
says how each was refused, or that it was accepted (and then the run fails).

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path SIGIL_INTEROP_REFUSAL_CASES='{...}' \
    python pyspiffe_client.py --audience AUD
"""

import argparse
import json
import os
import sys

from spiffe import JwtSvid, WorkloadApiClient

REFUSAL_CASES_ENV = "SIGIL_INTEROP_REFUSAL_CASES"


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

        def refusal_matrix_is_refused():
            raw = os.environ.get(REFUSAL_CASES_ENV)
            if not raw:
                raise RuntimeError(f"{REFUSAL_CASES_ENV} is not set")
            cases = json.loads(raw)
            if not cases:
                raise RuntimeError(f"{REFUSAL_CASES_ENV} has no cases")
            bundle = jwt_bundles.get_bundle_for_trust_domain(token.spiffe_id.trust_domain)
            refusals = {}
            for name, forged in sorted(cases.items()):
                outcome = {}
                try:
                    client.validate_jwt_svid(forged, args.audience)
                    outcome["workload_api"] = None
                except Exception as e:
                    outcome["workload_api"] = f"{type(e).__name__}: {e}"
                try:
                    JwtSvid.parse_and_validate(forged, bundle, {args.audience})
                    outcome["local"] = None
                except Exception as e:
                    outcome["local"] = f"{type(e).__name__}: {e}"
                refusals[name] = outcome
            accepted = sorted(n for n, o in refusals.items() if None in o.values())
            if accepted:
                raise RuntimeError(f"tokens that must be refused were accepted: {refusals}")
            return refusals

        report["refusals"] = step(report, "validate_refusal_matrix", refusal_matrix_is_refused)


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
