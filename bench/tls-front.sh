#!/usr/bin/env bash
# TLS front benchmark: meshgate against nginx serving the same tiny response ("OK" at /healthz) with the
# same certificate, measured in one run, on the same machine, by the same load generators:
#   HTTP/1.1 over TLS: wrk -t1 -c50 (keep-alive)      HTTP/2 over TLS: h2load -c50 -m10
# Writes the results and the ratios into BENCHMARKS.md. Usage: bash bench/tls-front.sh (or make bench).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
H2_REQUESTS=${H2_REQUESTS:-200000}
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$1/healthz" && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

echo "== building meshgate (release)"
swift build -c release >/dev/null
binary=.build/release/meshgate

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

meshgate_port=$(free_port)
"$binary" server --tls-address "127.0.0.1:$meshgate_port" --http-address "" --tls-cert-file "$work/cert.pem" \
  --tls-key-file "$work/key.pem" --data-dir "$work/data" --log-level warning 2>"$work/meshgate.log" &
pids+=($!)

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:$nginx_port ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /healthz { default_type text/plain; return 200 "OK"; }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf" &
pids+=($!)
wait_port "$meshgate_port"; wait_port "$nginx_port"

h1() { wrk -t1 -c50 -d"${DURATION}s" "https://127.0.0.1:$1/healthz" | awk '/Requests\/sec/ {print $2}'; }
h2() { h2load -n "$H2_REQUESTS" -c50 -m10 -t1 "https://127.0.0.1:$1/healthz" | awk '/^finished in/ {gsub(",","",$4); print $4}'; }

echo "== warm-up"; wrk -t1 -c50 -d2s "https://127.0.0.1:$meshgate_port/healthz" >/dev/null; wrk -t1 -c50 -d2s "https://127.0.0.1:$nginx_port/healthz" >/dev/null
echo "== HTTP/1.1";  nginx_h1=$(h1 "$nginx_port");  meshgate_h1=$(h1 "$meshgate_port")
echo "== HTTP/2";    nginx_h2=$(h2 "$nginx_port");  meshgate_h2=$(h2 "$meshgate_port")
ratio() { /usr/bin/python3 -c "print(f'{float($1)/float($2):.2f}')"; }
r1=$(ratio "$meshgate_h1" "$nginx_h1"); r2=$(ratio "$meshgate_h2" "$nginx_h2")

cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
cat >BENCHMARKS.md <<MD
# Benchmarks

Measured by \`bash bench/tls-front.sh\` (\`make bench\`); every figure in a table comes from one run of the
script, anchor and meshgate back to back on the same machine. Re-run it to refresh this file.

Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr);
$(swift --version 2>/dev/null | head -1); $(nginx -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); h2load $(h2load --version | awk '{print $2}').
Run on $(date -u +%Y-%m-%d). Load generator and servers share the same cores.

## TLS front: tiny response

\`GET /healthz\` → \`OK\` over TLS with the same P-256 certificate. meshgate: release build, \`--log-level warning\`
(at the default \`info\` level every request writes a log line). nginx: \`worker_processes auto\`, \`access_log off\`,
\`return 200 "OK"\`.

| protocol | command | nginx (req/s) | meshgate (req/s) | meshgate / nginx |
|---|---|---:|---:|---:|
| HTTP/1.1 + TLS | \`wrk -t1 -c50 -d${DURATION}s\` | $nginx_h1 | $meshgate_h1 | **${r1}×** |
| HTTP/2 + TLS | \`h2load -n $H2_REQUESTS -c50 -m10 -t1\` | $nginx_h2 | $meshgate_h2 | **${r2}×** |

Reading: the prototype notes (../shared/reference/swift-stack.md) measured Hummingbird alone at ~0.6× nginx
on TLS HTTP/1.1 and ~0.19× on HTTP/2 on this machine kind; this is where meshgate's front stands before any
tuning.

Not tuned yet. Suspects for the gap, not yet measured apart: the three middlewares every request passes
(request logging, metrics, JSON errors), the per-connection certificate lookup and ALPN dispatch, and the
HTTP/1.1 WebSocket-upgrade pipeline that every TLS HTTP/1.1 connection is built with.
MD
cat BENCHMARKS.md
