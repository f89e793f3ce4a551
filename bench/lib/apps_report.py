"""The BENCHMARKS.md section of bench/apps.sh, from its `result name=… value=… unit=…` lines.

  apps_report.py RESULTS MACHINE COMMAND DURATION WARMUP H2_STREAMS WRK_THREADS
"""

import sys

from results import read

TARGETS = (("direct", "A: nginx direct"), ("wireguard", "B: nginx over wireguard-go"), ("meshgate", "meshgate"))
FILES = (("small", "1 KiB"), ("large", "1 MiB"))


def main() -> None:
    path, machine, command, duration, warmup, streams, threads = sys.argv[1:8]
    r = read(path)
    targets = [(key, label) for key, label in TARGETS if any(name.startswith(key + "_") for name in r)]
    measured = "meshgate" in dict(targets)
    cases = {}  # (protocol, file) → connection counts, in the order run
    for name in r:
        parts = name.split("_")
        if parts[0] == "direct" and parts[-1] == "rps":
            cases.setdefault((parts[1], parts[2]), []).append(parts[3])

    def p99(name: str) -> str:  # none to rank: no 2xx completed, or all began in the warm-up of a run with failures
        value = r[name + "_p99"]
        return "p99 unknown" if value != value else f"p99 {value:.2f} ms"

    def cell(name: str, file: str) -> str:
        rps = r[name + "_rps"]
        rate = f" ({rps:.0f} MiB/s)" if file == "large" else ""
        return f"{rps:.0f} req/s{rate}, {p99(name)}"

    def quotient(a: float, b: float) -> str:
        return f"{a / b:.2f}×" if b and a == a and b == b else "–"

    def ratio(name: str, anchor: str, bold: bool) -> str:
        rps = quotient(r[name + "_rps"], r[anchor + "_rps"])
        return (f"**{rps}**" if bold else rps) + f" req/s, {quotient(r[name + '_p99'], r[anchor + '_p99'])} p99"

    def table(protocol: str) -> str:
        header = ["file", "connections"] + [label for _, label in targets]
        if measured:
            header += ["meshgate ÷ B", "meshgate ÷ A"]
        rows = ["| " + " | ".join(header) + " |", "|---|---:|" + "---:|" * (len(header) - 2)]
        for file, size in FILES:
            for connections in cases.get((protocol, file), []):
                names = {key: f"{key}_{protocol}_{file}_{connections}" for key, _ in targets}
                row = [size, connections[1:]] + [cell(names[key], file) for key, _ in targets]
                if measured:
                    row += [ratio(names["meshgate"], names["wireguard"], True), ratio(names["meshgate"], names["direct"], False)]
                rows.append("| " + " | ".join(row) + " |")
        return "\n".join(rows)

    errors = [f"{name[:-7]}: {value:.0f}" for name, value in r.items() if name.endswith("_errors") and value]
    error_line = ("Failed requests (non-2xx responses, socket errors, timeouts), left out of req/s: " + ", ".join(errors) + "."
                  ) if errors else "Every request of every run answered 2xx."
    # 0 req/s without a failure: every response was still streaming when the run ended (bandwidth shared by
    # hundreds of 1 MiB streams), not requests refused.
    unfinished = [name[:-4] for name, value in r.items() if name.endswith("_rps") and value == 0
                  and not r.get(name[:-4] + "_errors")]
    if unfinished:
        error_line += (" No response finished within the run, and none failed, in: " + ", ".join(unfinished)
                       + " (the bandwidth was shared by every stream in flight, so each was still under way at the end).")
    if measured:
        before, after = r.get("meshgate_path_before", "?"), r.get("meshgate_path_after", "?")
        path_line = f"The gateway's path to the agent (its state in the API): {before} before the runs, {after} after."
        meshgate_line = ""
    else:
        path_line = ""
        meshgate_line = ("\n**meshgate was not measured in this run** (the anchors alone): the app proxy's path apps were "
                         "not in the build yet. Re-run `make bench-apps` for the ratios.\n")
    token_line = ""
    if measured:
        token_line = ("\n  Requests carry the session cookie and the signed app token that meshgate set on a response just "
                      "before\n  (60 s), as a browser sends them: with the token a request skips the store."
                      if r.get("meshgate_app_token") else
                      "\n  Requests carry the session cookie only: meshgate set no app token, so each one is checked "
                      "against the store.")
    h1 = f"`wrk -t{threads} -cN --latency -H 'Cookie: …'` for {duration} s after a {warmup} s run thrown away"
    most = max((int(c[1:]) for counts in cases.values() for c in counts), default=0) * int(streams)
    h2 = (f"`h2load -t1 -cN -m{streams} -H 'Cookie: …' --warm-up-time={warmup}s -D {duration}s --log-file …` "
          f"(up to {most} requests in flight);\n"
          "p99 is the nearest rank of the per-request times in its log (h2load itself prints only min, max, mean and sd)")
    print(f"""## Workspace apps

`{command}` (`make bench-apps`, root): issue 7's request path. A GET for a file served by nginx
(keep-alive, sendfile) in a workspace network namespace, through three proxies in a gateway namespace, at the
same URL `/@owner/dev/apps/bench/FILE` with the same cookies, back to back for each case in one run (each once
the machine has settled: up to 15 s until 85 % of the CPU is idle, so a target's leftover requests do not run
into the next one's measurement):

- **meshgate**: TLS → `meshgate server` (release, `--log-level warning`, its generated P-256 certificate, the
  path-app proxy) → the mesh → `meshgate agent` in the workspace namespace
  (`--app bench=http://127.0.0.1:8080,share=owner`) → the app on 127.0.0.1.{token_line}
- **A, nginx direct**: nginx (TLS with a P-256 certificate, HTTP/2, the app prefix stripped, upstream
  keep-alive, responses buffered in memory) → the app over a veth between the namespaces.
- **B, nginx over wireguard-go**: the same nginx → the app through Debian's wireguard-go (MTU 1280) between the
  namespaces, over that veth. The goal is meshgate ≥ B.

HTTP/1.1: {h1}.
HTTP/2: {h2}.
req/s counts 2xx responses only (failed requests are listed under the tables); h2load's p99 is of the 2xx
responses (in a run with failures, less those whose head came during the warm-up: its log does not give their
status), wrk's of every response. The upstream leg is HTTP/1.1 in all three. Ratios divide meshgate's req/s
and p99 by the anchor's from the same case of the same run: above 1× is better for req/s, worse for p99.

Machine: {machine}.
{meshgate_line}
HTTP/1.1 over TLS:

{table("h1")}

HTTP/2 over TLS:

{table("h2")}

{(error_line + " " + path_line).strip()}

Limits: the load generator (one thread), the proxy, the app, wireguard-go or the agent all share the machine's two
cores, so a target's figure also pays for what runs beside it and the ratios matter more than the absolute numbers;
with one load thread the anchors may be held by wrk or h2load rather than by nginx. The veth has no latency or loss,
so this measures per-request cost, not behaviour on a real network; p99 over {duration} s counts queueing in the
load generator too.
""".replace("\n\n\n", "\n\n"))


if __name__ == "__main__":
    main()
