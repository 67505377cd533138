"""Rotation soak from a workload's side, with the unmodified py-spiffe client: streams X.509
contexts from SPIFFE_ENDPOINT_SOCKET for --duration seconds and checks every update against the
bundle delivered with it, as a relying party would at that moment:

- every certificate of the SVID's chain is signed by the next one, the last by one of the
  bundle's X.509 authorities, and each of them (and that authority) is within its validity;
- the workload is never without a valid SVID: an update that arrives after the previous SVID
  expired is a gap.

Prints one JSON summary on stdout at the end:
  {"updates": N, "failures": [...], "gaps": [...], "max_interval": S, "roots_seen": K,
   "issuers_seen": K, "stream_errors": [...]}
Exit 0 when it ran for the whole duration (the test judges the figures), 1 otherwise.

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path python pyspiffe_soak.py --duration SECONDS
"""

import argparse
import datetime
import json
import sys
import threading
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from spiffe import WorkloadApiClient


def fingerprint(cert):
    return cert.fingerprint(hashes.SHA256()).hex()


def signed_by(cert, issuer):
    try:
        issuer.public_key().verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            ec.ECDSA(cert.signature_hash_algorithm),
        )
        return True
    except Exception:
        return False


def check(svid, roots, now):
    """Why `svid` does not verify against `roots` at `now`, or None; and the root it chains to."""
    chain = svid.cert_chain
    for child, parent in zip(chain, chain[1:]):
        if not signed_by(child, parent):
            return f"{svid.spiffe_id}: chain link not signed by the next certificate", None
    anchor = next((r for r in roots if signed_by(chain[-1], r)), None)
    if anchor is None:
        return f"{svid.spiffe_id}: no authority of the bundle held with it verifies its chain", None
    for cert in chain + [anchor]:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            return f"{svid.spiffe_id}: {cert.subject.rfc4514_string()} not valid at {now}", None
    return None, anchor


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, required=True)
    args = parser.parse_args()
    lock = threading.Lock()
    state = {
        "updates": 0,
        "failures": [],
        "gaps": [],
        "max_interval": 0.0,
        "roots": set(),
        "issuers": set(),
        "stream_errors": [],
        "last_at": None,
        "valid_until": None,
    }

    def on_success(context):
        arrived = time.time()
        now = datetime.datetime.now(datetime.timezone.utc)
        with lock:
            state["updates"] += 1
            if state["last_at"] is not None:
                state["max_interval"] = max(state["max_interval"], arrived - state["last_at"])
            if state["valid_until"] is not None and arrived > state["valid_until"]:
                state["gaps"].append(round(arrived - state["valid_until"], 3))
            state["last_at"] = arrived
            expiries = []
            for svid in context.x509_svids:
                bundle = context.x509_bundle_set.get_bundle_for_trust_domain(
                    svid.spiffe_id.trust_domain)
                roots = list(bundle.x509_authorities) if bundle else []
                error, anchor = check(svid, roots, now)
                if error:
                    state["failures"].append(error)
                    continue
                state["roots"].add(fingerprint(anchor))
                for cert in svid.cert_chain[1:]:
                    state["issuers"].add(fingerprint(cert))
                expiries.append(svid.leaf.not_valid_after_utc.timestamp())
            if expiries:
                state["valid_until"] = min(expiries)

    def on_error(error):
        with lock:
            state["stream_errors"].append(f"{type(error).__name__}: {error}")

    with WorkloadApiClient(default_timeout=10.0) as client:
        handle = client.stream_x509_contexts(on_success, on_error, retry_connect=True)
        deadline = time.time() + args.duration
        while time.time() < deadline:
            time.sleep(0.5)
        handle.cancel()
    with lock:
        if state["valid_until"] is not None and time.time() > state["valid_until"]:
            state["gaps"].append(round(time.time() - state["valid_until"], 3))
        summary = {
            "updates": state["updates"],
            "failures": state["failures"][:20],
            "failure_count": len(state["failures"]),
            "gaps": state["gaps"],
            "max_interval": round(state["max_interval"], 3),
            "roots_seen": len(state["roots"]),
            "issuers_seen": len(state["issuers"]),
            "stream_errors": state["stream_errors"][:20],
        }
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
