"""A workspace behind NAT, made of network namespaces, for tests that need "no inbound access":

    root namespace (gateway, test)      router namespace                  workspace namespace (agent)
    192.168.S.1 ── veth ── 192.168.S.2  [forwarding, nft masquerade,  ] ── veth ── 10.S.0.2 (default via 10.S.0.1)
                                        [new connections wan→lan drop]  10.S.0.1

The workspace reaches the root namespace (its packets leave the router with the router's address); nothing in
the root namespace can open a connection into the workspace, not even with a route to it. Needs root, iproute2
and nftables. `close()` deletes both namespaces, which takes their interfaces and nftables rules with them.
"""
import os
import secrets
import subprocess


def _run(*args, check=True):
    return subprocess.run(args, check=check, capture_output=True, text=True)


class NATWorkspace:
    def __init__(self):
        self.suffix = secrets.token_hex(3)
        self.subnet = int(self.suffix[:2], 16) % 200 + 20  # the S in the addresses above
        self.router = f"mgnr{self.suffix}"
        self.workspace = f"mgnw{self.suffix}"
        self.host_address = f"192.168.{self.subnet}.1"
        self.router_wan = f"192.168.{self.subnet}.2"
        self.workspace_address = f"10.{self.subnet}.0.2"
        self.workspace_subnet = f"10.{self.subnet}.0.0/24"
        wan_host, wan_router = f"mgnh{self.suffix}", f"mgnu{self.suffix}"
        lan_router, lan_workspace = f"mgnl{self.suffix}", f"mgnv{self.suffix}"
        try:
            for namespace in (self.router, self.workspace):
                _run("ip", "netns", "add", namespace)
                _run("ip", "-n", namespace, "link", "set", "lo", "up")
            _run("ip", "link", "add", wan_host, "type", "veth", "peer", "name", wan_router, "netns", self.router)
            _run("ip", "addr", "add", f"{self.host_address}/30", "dev", wan_host)
            _run("ip", "link", "set", wan_host, "up")
            _run("ip", "-n", self.router, "addr", "add", f"{self.router_wan}/30", "dev", wan_router)
            _run("ip", "-n", self.router, "link", "set", wan_router, "up")
            _run("ip", "-n", self.router, "link", "add", lan_router, "type", "veth", "peer", "name", lan_workspace, "netns", self.workspace)
            _run("ip", "-n", self.router, "addr", "add", f"10.{self.subnet}.0.1/24", "dev", lan_router)
            _run("ip", "-n", self.router, "link", "set", lan_router, "up")
            _run("ip", "-n", self.workspace, "addr", "add", f"{self.workspace_address}/24", "dev", lan_workspace)
            _run("ip", "-n", self.workspace, "link", "set", lan_workspace, "up")
            _run("ip", "-n", self.workspace, "route", "add", "default", "via", f"10.{self.subnet}.0.1")
            _run("ip", "netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            rules = f"""
table ip meshgate_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {self.workspace_subnet} oifname "{wan_router}" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan_router}" oifname "{wan_router}" accept
    }}
}}
"""
            subprocess.run(["ip", "netns", "exec", self.router, "nft", "-f", "-"], input=rules, check=True, capture_output=True, text=True)
        except BaseException:
            self.close()
            raise

    def command(self, *args):
        """`args` as a command line run inside the workspace namespace."""
        return ["ip", "netns", "exec", self.workspace, *args]

    def close(self):
        for namespace in (self.workspace, self.router):
            _run("ip", "netns", "del", namespace, check=False)
        _run("ip", "link", "del", f"mgnh{self.suffix}", check=False)


def available():
    """None when NAT tests can run here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True).returncode != 0:
            return f"{tool} not installed (make deps-test installs it)"
    return None
