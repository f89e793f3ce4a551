"""The BENCHMARKS.md section of bench/terminal.sh, from its `result name=… value=… unit=…` lines.

  terminal_report.py RESULTS MACHINE COMMAND COUNT WARMUP
"""

import sys

from results import read

ROWS = (("meshgate", "meshgate web terminal (Python websockets)"), ("browser", "meshgate web terminal (headless Chromium)"),
        ("ssh", "anchor: ssh -tt to sshd"))
COLUMNS = ("p50", "p90", "p99", "max", "mean")


def main() -> None:
    path, machine, command, count, warmup = sys.argv[1:6]
    r = read(path)
    rows = [(key, label) for key, label in ROWS if key + "_p50" in r]

    def ratio(key: str, column: str) -> str:
        return f"**{r[f'{key}_{column}'] / r[f'ssh_{column}']:.1f}×**" if key != "ssh" else "–"

    table = ["| path | " + " | ".join(f"{c} ms" for c in COLUMNS) + " | ÷ ssh p50 | ÷ ssh p99 |",
             "|---|" + "---:|" * (len(COLUMNS) + 2)]
    for key, label in rows:
        cells = [f"{r[f'{key}_{c}']:.3f}" for c in COLUMNS]
        table.append(f"| {label} | " + " | ".join(cells) + f" | {ratio(key, 'p50')} | {ratio(key, 'p99')} |")

    stray = [f"{key} {r[key + '_stray_bytes']:.0f}" for key, _ in rows if r.get(key + "_stray_bytes")]
    stray_line = ("Bytes other than the echo that arrived while timing: " + ", ".join(stray) + "."
                  if stray else "No byte other than the echoes arrived while timing.")
    rtt = {when: r.get(f"meshgate_mesh_rtt_{when}") for when in ("before", "after")}
    rtt_text = (f";\n  the API's round trip over it (the mesh-stream connection's smoothed RTT): {rtt['before']:.2f} ms once the "
                f"terminal\n  was up, {rtt['after']:.2f} ms after the run" if None not in rtt.values() else "")
    short = {"meshgate": "meshgate (websockets)", "browser": "meshgate (Chromium)", "ssh": "ssh"}
    opens = ", ".join(f"{short[key]} {r[key + '_open']:.0f} ms" for key, _ in rows if key + "_open" in r)
    browser = (f"\n- **headless Chromium**: the same loop in a page of the access URL's origin holding the session\n"
               f"  cookie (Chromium {r['browser_version']}, Selenium), timed with `performance.now()` (which Chromium\n"
               f"  coarsens to 0.1 ms outside cross-origin isolation)." if "browser_p50" in r else "")

    print(f"""## Web terminal latency

`{command}` (`make bench-terminal`, root): issue 8's keystroke echo round trip, {count} keystrokes after
{warmup} thrown away, one at a time: one printable byte is sent, the next only once its echo is back, and the time runs
on a monotonic clock from the send to the echo's arrival. Successive keystrokes are distinct bytes, so a late
echo cannot pass for the next one. Both ends run `stty -icanon && exec cat >/dev/null` in an 80×24 terminal: the
echo comes from the PTY's line discipline and `cat` swallows the input (canonical mode off, so the line buffer
never fills). One script, one loop (bench/lib/keystroke_rtt.py), on the same machine, one after the other: ssh,
meshgate{", the browser" if "browser_p50" in r else ""}.

- **meshgate**: Python asyncio `websockets` → {r.get('meshgate_tls', '?')} (WebSocket extensions: {r.get('meshgate_ws_extensions', '?')})
  → `meshgate server --dev` (release, `--log-level warning`, its self-signed certificate, 127.0.0.1) → the mesh
  → its `meshgate agent` child → PTY, on `/api/v2/workspaceagents/{{id}}/pty` with the session cookie and the
  access URL's Origin, each keystroke as the page sends it (a text message `{{"data": "a"}}`), the echo back in
  a binary message. The gateway's path to the agent: **{r.get('meshgate_path_before', '?')}** once the terminal
  was up, **{r.get('meshgate_path_after', '?')}** after the run{rtt_text}.{browser}
- **anchor, ssh**: `ssh -tt` (OpenSSH client, default cipher, `-F /dev/null`) to a private `sshd` on 127.0.0.1
  (its own host key and authorized_keys, no PAM), driven through a local PTY as a person's terminal would: the
  time runs from writing the byte to the ssh client's PTY to reading the echo there.

Machine: {machine}.

{chr(10).join(table)}

{stray_line} Ratios divide meshgate's percentile by ssh's from the same run: above 1× is slower.
Time from starting to connect to the command's first output (a fresh session; not in the table, and one
sample each): {opens}.

Limits: the client, the gateway, the agent, sshd and the PTYs share the machine's two cores, and nothing here
crosses a real network, so this measures per-keystroke processing cost, not what a person far from the gateway
sees (add their network round trip to both rows). The Python client's own asyncio overhead is in both rows.
The anchor's tail is well under a millisecond, so its p99, and the p99 ratio, move most with whatever else runs;
the p50s are the steadier comparison across runs.""")


if __name__ == "__main__":
    main()
