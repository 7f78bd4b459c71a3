#!/usr/bin/env python3
"""Turns the JSON results of ops/scripts/bench (docs/bench/*.json) into the tables of
docs/BENCHMARKS.md (between its "generated" markers) and gnuplot scripts for the plots
(docs/bench/*.gp, run by ops/scripts/bench to write the SVGs)."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
doc = pathlib.Path(sys.argv[2])


def load(name):
    path = out / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


machine = load("machine")
startup = load("startup")
bucket = load("bucket")
decisions = load("decisions") or []
updates = load("updates")
criterion = {row["id"]: row["mean_ns"] for row in (load("criterion") or [])}
postgis = load("postgis")
nats = load("nats")
cpu = load("cpu")
always = load("always")

lines = []
say = lines.append


def met(ok):
    return "**met**" if ok else "**missed**"


def scale(c, v):
    return f"10^{len(str(c)) - 1} × 10^{len(str(v)) - 1}"


def per_cpu(row):
    return f"{row['decisions_per_cpu_second']:,.0f}" if row.get("decisions_per_cpu_second") else "–"


def at(c, v):
    return next((d for d in decisions if d["communities"] == c and d["volunteers"] == v), None)


say(f"Measured {machine['date']} at commit `{machine['commit']}` on {machine['cpu']}, {machine['cores']} cores, "
    f"{machine['memory_gb']} GB; load average at the start {machine['load_average_at_start']} "
    f"(other builds were running: absolute figures are noisy, ratios from this one run are what count). "
    f"{machine['rustc']}; {machine['nats_server']}" + ("; **quick run** (smaller sizes)" if machine["quick"] else "") + ".")
import datetime
parts = [(name, out / f"{name}.json") for name in ["startup", "bucket", "decisions", "updates", "criterion", "postgis", "nats"]]
parts.append(("nats-always", out / "always.json"))
stamps = [f"{name} {datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc):%H:%M}"
          for name, path in parts if path.exists()]
say(f"Each part's results were written at (UTC): {', '.join(stamps)} — a part skipped with LINKBUS_BENCH_SKIP keeps "
    f"the results of an earlier run; the pairs whose ratio is taken (linkbus decisions and PostGIS; linkbus and the "
    f"floors) are always measured together.")
say("")

# --- targets -----------------------------------------------------------------------------------
say("### Targets")
say("")
say("| target | measured | |")
say("|---|---|---|")
big = at(10000, 1000000)
pg_cpu = [r for r in (postgis or {}).get("runs", []) if r.get("decisions_per_cpu_second")]
if big and postgis and pg_cpu and big.get("decisions_per_cpu_second"):
    # Per CPU-second on both sides: the decision thread's CPU time, the PostgreSQL backends'.
    best = max(pg_cpu, key=lambda r: r["decisions_per_cpu_second"])
    ratio = big["decisions_per_cpu_second"] / best["decisions_per_cpu_second"]
    say(f"| decision ≥ 100× PostGIS throughput per core (10^4 × {postgis['volunteers']:,} volunteers) | "
        f"linkbus {big['decisions_per_cpu_second']:,.0f} decisions per CPU-second of its thread "
        f"({1e6 / big['decisions_per_cpu_second']:.1f} µs each) vs PostGIS {best['decisions_per_cpu_second']:,.0f} per "
        f"CPU-second of its backends ({1e6 / best['decisions_per_cpu_second']:.0f} µs each, {best['clients']} client(s)): "
        f"**{ratio:,.0f}×** | {met(ratio >= 100)} |")
elif big and postgis:
    cores = machine["cores"]
    pg_per_core = max(r["decisions_per_second"] / min(r["clients"], cores) for r in postgis["runs"])
    ratio = big["decisions_per_second"] / pg_per_core
    say(f"| decision ≥ 100× PostGIS throughput per core (10^4 × {postgis['volunteers']:,} volunteers) | "
        f"linkbus {big['decisions_per_second']:,.0f}/s on one core vs PostGIS {pg_per_core:,.0f}/s per core: "
        f"**{ratio:,.0f}×** | {met(ratio >= 100)} |")
rtree, scan = criterion.get("volunteers_nearest/rtree/1000000"), criterion.get("volunteers_nearest/linear_scan/1000000")
if rtree and scan:
    say(f"| ≥ 1,000× the linear scan at 10^6 volunteers (5 nearest with the skill) | {rtree / 1000:.1f} µs vs "
        f"{scan / 1e6:.2f} ms: **{scan / rtree:,.0f}×** | {met(scan / rtree >= 1000)} |")
    whole = criterion.get("decide/volunteers/1000000")
    if whole:
        say(f"| (the whole decision vs the scan of the volunteers alone) | {whole / 1000:.1f} µs vs {scan / 1e6:.2f} ms: "
            f"{scan / whole:,.0f}× | |")
if big:
    say(f"| decision p99 < 20 µs at 10^4 communities × 10^6 volunteers | p99 **{big['latency']['p99_us']:.1f} µs** "
        f"(p50 {big['latency']['p50_us']:.1f}, p99.9 {big['latency']['p999_us']:.1f}) | {met(big['latency']['p99_us'] < 20)} |")
for (small, large, what) in [((100, 1000000), (10000, 1000000), "communities"), ((10000, 10000), (10000, 1000000), "volunteers")]:
    a, b = at(*small), at(*large)
    if a and b:
        growth = b["latency"]["p50_us"] / a["latency"]["p50_us"]
        say(f"| 100× more {what} costs ≤ 2× per decision ({scale(*small)} → {scale(*large)}) | median "
            f"{a['latency']['p50_us']:.2f} → {b['latency']['p50_us']:.2f} µs: **{growth:.2f}×** | {met(growth <= 2)} |")
if nats:
    runs = nats["runs"]
    def run(target, rate):
        return next((r for r in runs if r["target"] == target and r["rate"] == rate), None)
    lb, js = run("linkbus", None), run("jetstream_floor", None)
    if lb and js:
        share = lb["events_per_second"] / js["events_per_second"]
        say(f"| durable end to end ≥ ½ the raw JetStream forwarder (unpaced) | linkbus {lb['events_per_second']:,.0f}/s vs "
            f"floor {js['events_per_second']:,.0f}/s: **{share:.2f}** | {met(share >= 0.5)} |")
        if lb.get("stored_per_event") and js.get("stored_per_event"):
            per_msg = (lb["events_per_second"] * lb["stored_per_event"]) / (js["events_per_second"] * js["stored_per_event"])
            say(f"| (per message JetStream stores: linkbus {lb['stored_per_event']:.1f} per event, the floor "
                f"{js['stored_per_event']:.1f}) | {lb['events_per_second'] * lb['stored_per_event']:,.0f} vs "
                f"{js['events_per_second'] * js['stored_per_event']:,.0f} stored/s: {per_msg:.2f} | |")
        cpu_of = {c["target"]: c for c in cpu} if isinstance(cpu, list) else {}
        if "linkbus" in cpu_of:
            c = cpu_of["linkbus"]
            others = 1e6 * (c["nats_server_cpu_seconds"] + c["bench_cpu_seconds"]) / c["events"]
            cap = machine["cores"] * 1e6 / others
            say(f"| (in the unpaced run nats-server and the bench process spent {others:.0f} µs of CPU per event sent to linkbus: with "
                f"linkbus's own CPU free, {machine['cores']} cores would carry at most {cap:,.0f}/s, "
                f"{cap / js['events_per_second']:.2f} of the floor) | | |")
    synced = {r["target"]: r for r in (always or {}).get("runs", []) if r["rate"] is None}
    if "linkbus" in synced and "jetstream_floor" in synced:
        lb, js = synced["linkbus"], synced["jetstream_floor"]
        share = lb["events_per_second"] / js["events_per_second"]
        say(f"| the same, both syncing every write before its ack (`sync_interval: always`, as `linkbus up` runs nats-server) | "
            f"linkbus {lb['events_per_second']:,.0f}/s vs floor {js['events_per_second']:,.0f}/s: **{share:.2f}** "
            f"({lb['sent']:,} events each) | {met(share >= 0.5)} |")
    runs = runs + [r for r in (always or {}).get("runs", []) if r["target"] == "linkbus"]
    lost = sum(r["lost"] + r["duplicates"] for r in runs if r["target"] == "linkbus")
    sent = sum(r["sent"] for r in runs if r["target"] == "linkbus")
    say(f"| zero loss, exactly once | {sent:,} events sent to linkbus, **{lost}** lost or duplicated | {met(lost == 0)} |")
    for rate in (1000, 5000):
        lb, js = run("linkbus", rate), run("jetstream_floor", rate)
        if lb and js:
            ratio = lb["latency"]["p99_ms"] / js["latency"]["p99_ms"]
            say(f"| p99 publish → first department copy ≤ 2× the JetStream floor's at {rate:,} events/s | "
                f"{lb['latency']['p99_ms']:.2f} vs {js['latency']['p99_ms']:.2f} ms: **{ratio:.1f}×** | "
                f"{met(ratio <= 2 and lb['lost'] == 0)} |")
    r10 = run("linkbus", 10000)
    if r10:
        say(f"| p99 publish → department < 5 ms at 10 k events/s | p99 **{r10['latency']['p99_ms']:.2f} ms** "
            f"(p50 {r10['latency']['p50_ms']:.2f}; {r10['events_per_second']:,.0f} events/s delivered) | "
            f"{met(r10['latency']['p99_ms'] < 5 and r10['lost'] == 0)} |")
if updates:
    ok = updates["updates_per_second"] >= 0.98 * updates["update_rate"] and updates["decisions_per_second"] >= 0.98 * updates["decision_rate"]
    cpu_note = ""
    if "updates_per_cpu_second" in updates:
        cpu_note = (f"; the updater thread was on a CPU {100 * updates['updater_cpu_share']:.0f} % of the time, the router "
                    f"thread {100 * updates['router_cpu_share']:.0f} %: {updates['updates_per_cpu_second']:,.0f} updates per "
                    f"CPU-second")
    say(f"| 100 k volunteer updates/s absorbed while routing 10 k/s | {updates['updates_per_second']:,.0f} updates/s "
        f"(furthest behind {updates['update_max_lag_ms']:.0f} ms) with {updates['decisions_per_second']:,.0f} decisions/s, "
        f"decision p99 {updates['latency']['p99_us']:.1f} µs{cpu_note} | {met(ok)} |")
if startup:
    through = ""
    rss_ok = startup['rss_mb'] < 500
    if bucket:
        f = bucket["follower"]
        through = f"; **{f['rss_mb']:.0f} MB** started through nats-server (peak {f['peak_rss_mb']:.0f} MB)"
        rss_ok = rss_ok and f['rss_mb'] < 500
    say(f"| < 500 MB resident with 10^4 communities and 10^6 volunteers | **{startup['rss_mb']:.0f} MB** in process "
        f"(peak {startup['peak_rss_mb']:.0f} MB with the inputs){through} | {met(rss_ok)} |")
    if bucket and "from_snapshot" in bucket:
        f, s, c = bucket["follower"], bucket["from_snapshot"], bucket["from_snapshot_changed"]
        say(f"| start-up with that data < 2 s | **{s['seconds']:.2f} s** through nats-server from the volunteer "
            f"snapshot ({s['loaded']:,} volunteers, {f['snapshot_bytes'] / 1e6:.0f} MB, saved in {f['save_seconds']:.2f} s), "
            f"the bucket unchanged since; **{c['seconds']:.2f} s** with {bucket['changed']:,} volunteers moved since "
            f"(read from the bucket on top). With no snapshot {f['seconds']:.2f} s, reading the whole bucket "
            f"(nats-server delivering it alone takes {bucket['read_seconds']:.2f} s); in process "
            f"{startup['bulk_seconds']:.2f} s parsed and bulk-loaded, {startup['seconds']:.2f} s upserted one by one "
            f"| {met(s['seconds'] < 2 and c['seconds'] < 2)} |")
    elif bucket:
        f = bucket["follower"]
        say(f"| start-up with that data < 2 s | **{f['seconds']:.2f} s** through nats-server, from connecting to "
            f"{f['loaded']:,} volunteers loaded from the bucket (building the router {f['router_seconds']:.2f} s; "
            f"reading, checking and bulk-loading the volunteers {f['volunteers_seconds']:.2f} s, where nats-server "
            f"delivering them alone takes {bucket['read_seconds']:.2f} s); in process {startup['bulk_seconds']:.2f} s "
            f"parsed and bulk-loaded, {startup['seconds']:.2f} s upserted one by one | {met(f['seconds'] < 2)} |")
    else:
        say(f"| start-up with that data < 2 s | **{startup['seconds']:.2f} s** taking the volunteers one by one "
            f"(of which parsing their JSON {startup['parse_seconds']:.2f} s); {startup['bulk_seconds']:.2f} s "
            f"parsed and bulk-loaded | {met(startup['seconds'] < 2)} |")
say("")

# --- decision latency --------------------------------------------------------------------------
if decisions or postgis:
    say("### Decision time (one thread; PostGIS per round trip)")
    say("")
    say("Per CPU-second: linkbus's decisions over the CPU time of its thread; PostGIS's over the CPU time of the "
        "PostgreSQL backends serving the clients.")
    say("")
    say("| what | communities × volunteers | per second | per CPU-second | mean µs | p50 µs | p99 µs | p99.9 µs | max µs |")
    say("|---|---|---|---|---|---|---|---|---|")
    with open(out / "decisions.dat", "w") as dat:
        for i, d in enumerate(decisions):
            l = d["latency"]
            say(f"| linkbus | {scale(d['communities'], d['volunteers'])} | {d['decisions_per_second']:,.0f} | "
                f"{per_cpu(d)} | {l['mean_us']:.2f} | "
                f"{l['p50_us']:.2f} | {l['p99_us']:.2f} | {l['p999_us']:.2f} | {l['max_us']:.0f} |")
            dat.write(f"{i} \"linkbus {scale(d['communities'], d['volunteers'])}\" {l['p50_us']} {l['p99_us']}\n")
        for j, r in enumerate((postgis or {}).get("runs", [])):
            l = r["latency"]
            say(f"| PostGIS {postgis['version']}, {r['clients']} client(s) | {scale(postgis['communities'], postgis['volunteers'])} | "
                f"{r['decisions_per_second']:,.0f} | {per_cpu(r)} | {l['mean_us']:.1f} | {l['p50_us']:.1f} | {l['p99_us']:.1f} | {l['p999_us']:.1f} | {l['max_us']:.0f} |")
            dat.write(f"{len(decisions) + j} \"PostGIS {r['clients']} client(s)\" {l['p50_us']} {l['p99_us']}\n")
    say("")
    if postgis:
        say(f"PostGIS loaded and indexed the city in {postgis['load_seconds']:.1f} s; on {postgis['verified']} sample cases it "
            f"returned the same community and the same 5 volunteers as linkbus (checked before timing). Ranked by degrees "
            f"(geometry `<->` on SRID 4326) instead, {postgis['degrees_top_k_wrong']} of those {postgis['verified']} top-5s "
            f"({100 * postgis['degrees_top_k_wrong'] / max(postgis['verified'], 1):.0f} %) were wrong.")
        say("")
    say("![decision time](bench/decisions.svg)")
    say("")
    (out / "decisions.gp").write_text(f"""set terminal svg size 900,420 font "sans,11"
set output "{out}/decisions.svg"
set title "Decision time (log scale)"
set ylabel "microseconds"
set logscale y
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8
set xtics rotate by -20
set key top left
plot "{out}/decisions.dat" using 3:xtic(2) title "p50", "" using 4 title "p99"
""")

# --- community lookup --------------------------------------------------------------------------
locate = {k: v for k, v in criterion.items() if k.startswith("community_locate/grid")}
if locate:
    say("### Community lookup (criterion mean, ns) by boundary vertices")
    say("")
    vertices = [64, 256, 1024, 4096]
    say("| communities | " + " | ".join(f"{v} vertices" for v in vertices) + " |")
    say("|---|" + "---|" * len(vertices))
    with open(out / "locate.dat", "w") as dat:
        for n in [100, 1000, 10000]:
            cells = []
            row = [str(n)]
            for v in vertices:
                name = f"community_locate/grid/{n}" if v == 64 else f"community_locate/grid_{v}_vertices/{n}"
                ns = locate.get(name)
                cells.append(f"{ns:,.0f}" if ns else "–")
                row.append(f"{ns}" if ns else "NaN")
            say(f"| {n:,} | " + " | ".join(cells) + " |")
            dat.write(" ".join(row) + "\n")
    sf = next((v for k, v in criterion.items() if k.startswith("community_locate/san_francisco")), None)
    if sf:
        say("")
        say(f"The 41 real San Francisco neighborhoods: {sf:,.0f} ns.")
    say("")
    say("![community lookup](bench/locate.svg)")
    say("")
    (out / "locate.gp").write_text(f"""set terminal svg size 900,420 font "sans,11"
set output "{out}/locate.svg"
set title "Community lookup (criterion mean)"
set xlabel "communities"
set ylabel "nanoseconds"
set logscale xy
set key top left
plot for [c=2:5] "{out}/locate.dat" using 1:c with linespoints title columnheader(c) . " vertices"
""")
    # columnheader needs a header line: write one.
    text = (out / "locate.dat").read_text()
    (out / "locate.dat").write_text("communities " + " ".join(str(v) for v in vertices) + "\n" + text)

# --- end to end --------------------------------------------------------------------------------
if nats:
    say("### End to end through NATS (`linkbus-bench load --targets …`)")
    say("")
    say("Latency from when each event was due (paced) or published (unpaced) to the first department copy "
        "(linkbus) or the forwarded copy (floors), through JetStream consumers as a department would read them.")
    say("")
    say("| target | rate/s | sent | lost | duplicates | delivered/s | stored per event | all stored after s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |")
    say("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with open(out / "nats.dat", "w") as dat:
        for r in nats["runs"]:
            l = r["latency"]
            rate = "unpaced" if r["rate"] is None else f"{r['rate']:,}"
            say(f"| {r['target'].replace('_', ' ')} | {rate} | {r['sent']:,} | {r['lost']} | {r['duplicates']} | "
                f"{r['events_per_second']:,.0f} | {r.get('stored_per_event', float('nan')):.1f} | {r.get('stored_seconds', float('nan')):.1f} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['p999_ms']:.2f} | {l['max_ms']:.1f} |")
            dat.write(f"\"{r['target'].replace('_', ' ')} {rate}\" {r['events_per_second']} {max(l['p99_ms'], 0.001)}\n")
    say("")
    if isinstance(cpu, list):
        say("CPU time per event of each target's unpaced run (`linkbus-bench load --targets <target> --rates --unpaced N`); "
            "the ceiling is what the machine's cores could carry were that CPU time all the work. A flat perf profile "
            "of linkbus and nats-server during linkbus's: [bench/profile.txt](bench/profile.txt).")
        say("")
        say("| target | events | wall s | linkbus µs | nats-server µs | bench process µs | ceiling events/s |")
        say("|---|---|---|---|---|---|---|")
        for c in cpu:
            us = lambda key: 1e6 * c[key] / c["events"]
            work = sum(us(k) for k in ("linkbus_cpu_seconds", "nats_server_cpu_seconds", "bench_cpu_seconds"))
            say(f"| {c['target'].replace('_', ' ')} | {c['events']:,} | {c['seconds']:.0f} | {us('linkbus_cpu_seconds'):.0f} | "
                f"{us('nats_server_cpu_seconds'):.0f} | {us('bench_cpu_seconds'):.0f} | {machine['cores'] * 1e6 / work:,.0f} |")
        say("")
    if always:
        say("The unpaced runs again on a fresh nats-server that syncs every write before acknowledging it "
            "(`sync_interval: always`):")
        say("")
        say("| target | sent | lost | duplicates | delivered/s | stored per event | p50 ms | p99 ms |")
        say("|---|---|---|---|---|---|---|---|")
        for r in always["runs"]:
            l = r["latency"]
            say(f"| {r['target'].replace('_', ' ')} | {r['sent']:,} | {r['lost']} | {r['duplicates']} | "
                f"{r['events_per_second']:,.0f} | {r.get('stored_per_event', float('nan')):.1f} | {l['p50_ms']:.2f} | {l['p99_ms']:.2f} |")
        say("")
    say("![end to end](bench/nats.svg)")
    say("")
    (out / "nats.gp").write_text(f"""set terminal svg size 900,560 font "sans,11"
set output "{out}/nats.svg"
set multiplot layout 2,1 title "End to end through NATS"
set style data histograms
set style fill solid 0.8
set xtics rotate by -20 font ",9"
set bmargin 5
set logscale y
set ylabel "delivered events/s (log)"
plot "{out}/nats.dat" using 2:xtic(1) notitle
set ylabel "p99 ms (log)"
plot "{out}/nats.dat" using 3:xtic(1) notitle
unset multiplot
""")

begin, end = "<!-- generated by ops/scripts/bench: begin -->", "<!-- generated by ops/scripts/bench: end -->"
text = doc.read_text()
a, b = text.index(begin) + len(begin), text.index(end)
doc.write_text(text[:a] + "\n" + "\n".join(lines) + "\n" + text[b:])
