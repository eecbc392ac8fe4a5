"""How close the decode-throughput estimate comes to published figures; prints ONE JSON line.

:func:`edgestill.devices.llm_estimate.published_decode_fit`: the memory-bound model (tokens/s = efficiency x
bandwidth / bytes per token) fitted on ``published_llm_throughput.csv``, leave-one-out over its usable rows: the
median absolute % error, the share within ±25%, which efficiency model won (one for all rows, or one per runtime
class), the fitted efficiencies, each row's held-out prediction and the dropped rows with their reason.

Usage: python perf/llm_estimate.py   (under a second; no runtime or torch needed)
"""

from __future__ import annotations

import json

from edgestill.devices.llm_estimate import published_decode_fit


def main() -> None:
    fit = published_decode_fit()
    print(json.dumps({
        "kind": "llm_decode_estimate_accuracy",
        "n": fit["error"]["n"],
        "median_abs_percent": fit["error"]["median_abs_percent"],
        "within_25_percent": fit["error"]["within_25_percent"],
        "model": fit["model"],
        "efficiency": fit["efficiency"],
        "alternatives": fit["alternatives"],
        "rows": fit["rows"],
        "dropped": fit["dropped"],
    }))


if __name__ == "__main__":
    main()
