"""Parses Prometheus text read on stdin with the unmodified prometheus_client parser and prints
one JSON object: every sample as {"name", "labels", "value"}. Exits 1 with {"error": ...} when the
text does not parse.

Usage: curl -s URL/metrics | python prometheus_parse.py
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    try:
        samples = [
            {"name": s.name, "labels": s.labels, "value": s.value}
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except Exception as e:
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    print(json.dumps({"samples": samples}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
