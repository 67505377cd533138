"""Watches X.509 contexts with the unmodified py-spiffe client, as a long-running workload does,
against SPIFFE_ENDPOINT_SOCKET, and prints one JSON object per line on stdout (flushed), for the
test to follow as it happens:

  {"event": "update", "spiffe_ids": [...], "serials": [...], "issuers": [...], "roots": [...]}
                                             each X.509 context the stream delivers: the SPIFFE
                                             IDs, the leaf serial numbers (hex), the SHA-256
                                             fingerprints (hex) of the
                                             certificates above each leaf in its chain, and of
                                             the X.509 authorities of its trust domain's bundle
  {"event": "error", "error": "..."}         the stream failed; retries are off (fail closed), so
                                             this is the end of the watch
  {"event": "refetch", "ok": false, "error": "..."}  (or "ok": true with "spiffe_id") one
                                             fetch_x509_svid after the stream ended: whether the
                                             workload still has an identity
  {"event": "timeout"}                       no error within --timeout seconds

Exits 0 once it has reported the end of the stream and the refetch, 2 on timeout.

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path python pyspiffe_watch.py [--timeout SECONDS]
"""

import argparse
import json
import sys
import threading

from cryptography.hazmat.primitives import hashes
from spiffe import WorkloadApiClient


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    ended = threading.Event()

    def fingerprint(cert):
        return cert.fingerprint(hashes.SHA256()).hex()

    def on_success(context):
        svids = context.x509_svids
        issuers = sorted({fingerprint(c) for s in svids for c in s.cert_chain[1:]})
        roots = sorted(
            {
                fingerprint(c)
                for s in svids
                for c in (context.x509_bundle_set.get_bundle_for_trust_domain(
                    s.spiffe_id.trust_domain).x509_authorities)
            }
        )
        emit({
            "event": "update",
            "spiffe_ids": sorted(str(s.spiffe_id) for s in svids),
            "serials": sorted(format(s.leaf.serial_number, "x") for s in svids),
            "issuers": issuers,
            "roots": roots,
        })

    def on_error(error):
        emit({"event": "error", "error": f"{type(error).__name__}: {error}"})
        ended.set()

    with WorkloadApiClient(default_timeout=5.0) as client:
        handle = client.stream_x509_contexts(on_success, on_error, retry_connect=False)
        if not ended.wait(args.timeout):
            handle.cancel()
            emit({"event": "timeout"})
            return 2
        try:
            svid = client.fetch_x509_svid()
            emit({"event": "refetch", "ok": True, "spiffe_id": str(svid.spiffe_id)})
        except Exception as e:  # report whatever py-spiffe raised
            emit({"event": "refetch", "ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
