#!/usr/bin/env bash
# WireGuard session benchmark (release build): the device's seal+open path per core against libsodium's raw
# ChaCha20-Poly1305, and packets/s between two Swift nodes over loopback UDP, in one run. Appends to
# BENCHMARKS.md (replacing its previous WireGuard section). Usage: bash bench/wireguard.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product meshgate-bench >/dev/null
result=$(.build/release/meshgate-bench "${1:-200000}")
echo "$result"
section=$(/usr/bin/python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"""## WireGuard sessions

`bash bench/wireguard.sh` (`make bench-wireguard`): {r['iterations']} packets of {r['packet_bytes']} bytes, one core.

| path | figure | anchor (same run) | ratio |
|---|---:|---:|---:|
| seal+open through `WireGuardDevice` (A.send → B.receive → deliver) | {r['device_seal_open_mb_s']:.0f} MB/s ({r['device_packets_s']:.0f} packets/s) | libsodium raw ChaCha20-Poly1305 seal+open: {r['libsodium_seal_open_mb_s']:.0f} MB/s | **{r['ratio_device_vs_libsodium']:.2f}×** |
| two `MeshNode`s over loopback UDP, windows of 32 | {r['udp_packets_s']:.0f} packets/s ({r['udp_mbit_s']:.0f} Mbit/s), {r['udp_packets_received']}/{r['udp_packets_sent']} delivered | | |
""")
PY
)
/usr/bin/python3 - "$section" <<'PY'
import re, sys
text = open("BENCHMARKS.md").read()
text = re.sub(r"\n## WireGuard sessions\n.*?(?=\n## |\Z)", "", text, flags=re.S).rstrip() + "\n\n" + sys.argv[1].strip() + "\n"
open("BENCHMARKS.md", "w").write(text)
PY
