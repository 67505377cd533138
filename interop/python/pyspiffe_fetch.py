"""One X509-SVID fetch with the unmodified py-spiffe client against SPIFFE_ENDPOINT_SOCKET:
prints {"ok": true, "spiffe_id": ..., "serial": <hex>} or {"ok": false, "error": ...} and exits 0
either way, so a test can wait for an identity to appear or check that it is withheld.

Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path python pyspiffe_fetch.py
"""

import json
import sys

from spiffe import WorkloadApiClient


def main():
    try:
        with WorkloadApiClient() as client:
            svid = client.fetch_x509_svid()
        print(json.dumps({
            "ok": True,
            "spiffe_id": str(svid.spiffe_id),
            "serial": format(svid.leaf.serial_number, "x"),
        }))
    except Exception as e:  # whatever py-spiffe raised is the answer
        print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
