#!/usr/bin/env python3
"""Per-neighborhood figures of an SF 311 replay with real outcomes (`linkbus replay --outcomes
real --speed N`), computed from the case records linkbus keeps, read page by page from a running
linkbus's `GET /api/cases` (an operator or dispatcher key). Prints a Markdown table: cases,
share accepted, share resolved, share withdrawn (closed unresolved in the record), median and
p90 opened -> closed in real (uncompressed) days: the entry that ended the case (`closed` or
`cancelled`) minus the record's `created_at`, times the replay's speed-up N.

    ops/scripts/sf-outcomes-report.py --api http://127.0.0.1:8080 --key KEY --speed 1000000

Only cases whose id starts `sf311-` count; SF 311 records no acceptance, so "accepted" is 100 %
by construction (docs/operations.md, "Real outcomes"), and shown only to prove every case was
replayed."""

import argparse
import json
import statistics
import urllib.parse
import urllib.request
from datetime import datetime


def at(text):
    """An RFC 3339 time with up to nanoseconds, as seconds since the epoch."""
    head, _, frac = text.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + (float("0." + frac) if frac else 0.0)


def cases(api, key):
    """Every case, newest first, following `cursor` until `more` is false."""
    cursor = None
    while True:
        query = {"limit": "1000", "archived": "true"}
        if cursor:
            query["cursor"] = cursor
        request = urllib.request.Request(
            f"{api}/api/cases?{urllib.parse.urlencode(query)}", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(request) as response:
            page = json.load(response)
        yield from page["cases"]
        if not page.get("more"):
            return
        cursor = page["next"]


def percentile(values, share):
    values = sorted(values)
    return values[min(len(values) - 1, int(share * len(values)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--api", required=True, help="the API's base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--key", required=True, help="an operator or dispatcher key")
    parser.add_argument("--speed", type=float, required=True, help="the replay's --speed")
    args = parser.parse_args()

    groups = {}
    for record in cases(args.api, args.key):
        if not record["case_id"].startswith("sf311-") or record.get("merged_into"):
            continue
        name = (record.get("community") or {}).get("name", "(no neighborhood)")
        events = {entry["event"]: entry for entry in record["timeline"]}
        g = groups.setdefault(name, {"cases": 0, "accepted": 0, "resolved": 0, "withdrawn": 0, "days": []})
        g["cases"] += 1
        g["accepted"] += "accepted" in events
        g["resolved"] += "resolved" in events
        g["withdrawn"] += "cancelled" in events
        ending = events.get("closed") or events.get("cancelled")
        if ending:
            g["days"].append((at(ending["at"]) - at(record["created_at"])) * args.speed / 86400)

    total = {"cases": 0, "accepted": 0, "resolved": 0, "withdrawn": 0, "days": []}
    print("| neighborhood | cases | accepted | resolved | withdrawn | median opened→closed (days) | p90 (days) |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def row(name, g):
        pct = lambda n: f"{100 * n / g['cases']:.1f} %"
        median = f"{statistics.median(g['days']):.2f}" if g["days"] else "–"
        p90 = f"{percentile(g['days'], 0.9):.1f}" if g["days"] else "–"
        print(f"| {name} | {g['cases']} | {pct(g['accepted'])} | {pct(g['resolved'])} | {pct(g['withdrawn'])} | {median} | {p90} |")

    for name in sorted(groups):
        g = groups[name]
        row(name, g)
        for k in ("cases", "accepted", "resolved", "withdrawn"):
            total[k] += g[k]
        total["days"] += g["days"]
    row("**all**", total)


if __name__ == "__main__":
    main()
