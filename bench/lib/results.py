"""The `result name=… value=… unit=…` lines the bench scripts print and their report scripts read back, and the
percentile they share."""

import math


def read(path: str) -> dict:
    """Every result line of the file at `path` as {name: value}: a float, or the text where it is not a number
    (a mesh path's kind, a TLS version)."""
    r = {}
    for line in open(path):
        if line.startswith("result "):
            fields = dict(part.split("=", 1) for part in line.split()[1:])
            try:
                r[fields["name"]] = float(fields["value"])
            except ValueError:
                r[fields["name"]] = fields["value"]
    return r


def percentile(sorted_values: list, fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]
