# meshgate — two commands on a fresh Debian machine:
#   make run    install what is missing, build, start `meshgate server --dev`
#   make test   install what the tests need, build, run every test (Swift + end-to-end)
SHELL := /bin/bash
.DEFAULT_GOAL := run

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian's own interpreter: the end-to-end tests use Debian's python3-websockets and python3-pytest.
PYTHON := /usr/bin/python3
# libvterm-dev: the agent's terminal screen model.
# libjs-xterm and node-xterm: the web terminal's xterm.js (Debian 12's libjs-xterm bundle is a CommonJS stub; the
# gateway builds the browser script from node-xterm's modules).
RUN_PACKAGES := libsodium-dev libb2-dev libvterm-dev pkg-config libjs-xterm node-xterm
# python3-nacl: the independent DERP client of tests/e2e (NaCl box login).
# wireguard-go, wg, iproute2, ping and nsenter/unshare: the WireGuard interop tests in network namespaces.
# nftables: the NAT in front of a workspace namespace (tests/e2e/nat.py).
# chromium, chromium-driver and python3-selenium: the real-browser tests (tests/e2e/test_browser.py).
# python3-pyte: the independent terminal emulator the agent's screen repaint is checked against.
# python3-h2: an independent HTTP/2 client for the frames of a graceful shutdown (tests/e2e/test_tls_front.py).
TEST_PACKAGES := $(RUN_PACKAGES) curl openssl python3 python3-pytest python3-websockets python3-nacl \
	wireguard-go wireguard-tools iproute2 iputils-ping util-linux nftables chromium chromium-driver python3-selenium \
	python3-pyte python3-h2
# iperf3, wireguard-go, wg, iproute2 and ping: the kernel-TCP anchor over wireguard-go in network namespaces.
# openssh-server, openssh-client, python3-websockets, chromium, chromium-driver and python3-selenium: the web
# terminal's keystroke latency against ssh (bench/terminal.sh).
BENCH_PACKAGES := $(RUN_PACKAGES) curl openssl wrk nghttp2-client nginx-light python3 \
	iperf3 wireguard-go wireguard-tools iproute2 iputils-ping \
	openssh-server openssh-client python3-websockets chromium chromium-driver python3-selenium

# Installs the listed Debian packages that are not installed yet (apt-get update only when needed).
define apt_install
	@missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing:$$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

.PHONY: run test bench bench-streams bench-tls bench-wireguard bench-derp bench-kernel-tcp bench-apps bench-terminal vectors deps-run deps-test deps-bench build swift-check clean

swift-check:
	@command -v swift >/dev/null || { echo "swift not found: install Swift 6.x (https://swift.org/install) and put it on PATH"; exit 1; }

deps-run: swift-check
	$(call apt_install,$(RUN_PACKAGES))

deps-test: swift-check
	$(call apt_install,$(TEST_PACKAGES))

deps-bench: swift-check
	$(call apt_install,$(BENCH_PACKAGES))

build: deps-run
	swift build

run: build
	.build/debug/meshgate server --dev

test: deps-test
	swift build --build-tests
	# One test at a time: on 2 cores, long synchronous tests (embedded-loop stream runs, congestion simulations)
	# would hold the cooperative threads and starve the real-time async tests beside them.
	swift test --no-parallel
	MESHGATE_BIN=$(CURDIR)/.build/debug/meshgate $(PYTHON) -m pytest -q -c tests/e2e/pytest.ini tests/e2e

bench: bench-tls bench-wireguard bench-derp bench-streams bench-apps bench-terminal

bench-tls: deps-bench
	bash bench/tls-front.sh

bench-wireguard: deps-bench
	bash bench/wireguard.sh

bench-streams: deps-bench
	bash bench/streams.sh

bench-derp: deps-bench
	bash bench/derp.sh

# Needs root: network namespaces and TUN devices.
bench-kernel-tcp: deps-bench
	bash bench/kernel-tcp.sh

# Needs root: the app, nginx and meshgate's agent run in network namespaces joined by wireguard-go or a veth.
bench-apps: deps-bench
	bash bench/apps.sh

# Needs root: a private sshd as the anchor, and the keystrokes run as root on both sides.
bench-terminal: deps-bench
	bash bench/terminal.sh

# Regenerates the checked-in known-answer vectors with independent implementations (PyPI noiseprotocol).
.venv/bin/python:
	python3 -m venv .venv
	.venv/bin/pip install -q noiseprotocol==0.3.1

vectors: .venv/bin/python
	.venv/bin/python tests/vectors/make_wireguard_vectors.py

clean:
	rm -rf .build .meshgate-dev
