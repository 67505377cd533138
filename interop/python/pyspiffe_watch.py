"""Watches X.509 contexts with the unmodified py-spiffe client, as a long-running workload does,
against SPIFFE_ENDPOINT_SOCKET, and prints one JSON object per line on stdout (flushed), for the
test to follow as it happens:

  {"event": "update", "spiffe_ids": [...]}   each X.509 context the stream delivers
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

from spiffe import WorkloadApiClient


def emit(obj):
    print(json.dumps(obj, sort_keys=True), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    ended = threading.Event()

    def on_success(context):
        emit({"event": "update", "spiffe_ids": sorted(str(s.spiffe_id) for s in context.x509_svids)})

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
