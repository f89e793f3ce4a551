/// The dashboard's scripts, served from `/assets/dashboard/` (the CSP forbids inline scripts). Plain ES2017, no
/// build step.
enum DashboardScripts {
    /// `/workspaces`: re-fetches the list every 5 s; agents that changed are swapped in place (focus kept), and
    /// status changes are read out through the page's aria-live region.
    static let workspaces = #"""
        (() => {
          "use strict";
          const container = document.getElementById("workspaces");
          if (!container) return;
          const announcer = document.getElementById("announcer");
          const state = document.getElementById("refresh-state");
          const interval = 5000;

          function setState(name, text) { state.dataset.state = name; state.textContent = text; }

          function statuses(root) {
            const map = new Map();
            for (const element of root.querySelectorAll("[data-status]")) map.set(element.dataset.label, element.dataset.status);
            return map;
          }

          function replaceKeepingFocus(oldNode, newNodes) {
            const focused = document.activeElement;
            const focusedID = focused && oldNode.contains(focused) ? focused.id : "";
            oldNode.replaceChildren(...newNodes);
            if (focusedID) { const again = document.getElementById(focusedID); if (again) again.focus(); }
          }

          function apply(next) {
            const oldAgents = [...container.querySelectorAll("[data-agent]")];
            const newAgents = [...next.querySelectorAll("[data-agent]")];
            const sameAgents = oldAgents.length === newAgents.length && oldAgents.every((agent, i) => agent.id === newAgents[i].id);
            if (!sameAgents) { replaceKeepingFocus(container, [...next.childNodes]); return; }
            oldAgents.forEach((agent, i) => {
              if (agent.innerHTML !== newAgents[i].innerHTML) replaceKeepingFocus(agent, [...newAgents[i].childNodes]);
            });
          }

          async function refresh() {
            if (!document.hidden) {
              try {
                const response = await fetch(container.dataset.source, { headers: { Accept: "text/html" }, cache: "no-store", redirect: "manual" });
                if (response.type === "opaqueredirect" || response.status === 401) {
                  location.assign("/login?redirect=" + encodeURIComponent(location.pathname));
                  return;
                }
                if (!response.ok) throw new Error("HTTP " + response.status);
                const template = document.createElement("template");
                template.innerHTML = await response.text();
                const before = statuses(container);
                const changes = [];
                for (const [label, status] of statuses(template.content)) {
                  if (before.has(label) && before.get(label) !== status) changes.push(label + " is now " + status);
                }
                apply(template.content);
                if (changes.length) announcer.textContent = changes.join(". ") + ".";
                setState("live", "Updated at " + new Date().toLocaleTimeString() + "; updates every 5 seconds.");
              } catch (error) {
                setState("error", "Could not refresh (" + error.message + "); trying again.");
              }
            }
            setTimeout(refresh, interval);
          }
          setTimeout(refresh, interval);
        })();
        """#

    /// Debian's libjs-xterm ships its addons as CommonJS (`exports.fit = …`); this gives them an `exports` to fill.
    /// A UMD build (upstream's dist/) ignores it and sets `window.fit` itself.
    static let commonJSShim = #"""
        if (typeof window.exports === "undefined") window.exports = {};
        """#

    /// `/terminal/{agentID}`: xterm.js 3.x over `/api/v2/workspaceagents/{id}/pty`, rejoining the same session
    /// (the `reconnect` id in the URL) after a reload or a dropped socket.
    static let terminal = #"""
        (() => {
          "use strict";
          const status = document.getElementById("terminal-status");
          const element = document.getElementById("terminal");
          if (!status || !element) return;
          function show(state, text) { status.dataset.state = state; status.textContent = text; }

          if (typeof window.Terminal !== "function" || typeof window.Terminal.applyAddon !== "function") {
            show("unavailable", "xterm.js did not load from /assets/xterm/xterm.js: it is not a browser build of xterm.js 3.x " +
              "(Debian 12's libjs-xterm 3.8.1 ships one that cannot run). Point --xterm-path at a working xterm.js 3.x.");
            return;
          }
          const fitAddon = typeof window.fit === "object" && window.fit ? window.fit
            : (window.exports && typeof window.exports.fit === "function" ? window.exports : null);
          if (fitAddon) Terminal.applyAddon(fitAddon);
          const term = new Terminal({ cursorBlink: true, fontSize: 14, fontFamily: "ui-monospace, Menlo, Consolas, monospace" });
          window.meshgateTerminal = term;
          term.open(element);
          function fit() { if (fitAddon) term.fit(); }
          fit();
          term.focus();

          function uuid() {
            if (crypto.randomUUID) return crypto.randomUUID();
            const b = crypto.getRandomValues(new Uint8Array(16));  // randomUUID needs a secure context
            b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
            const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
            return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
          }
          const url = new URL(location.href);
          let reconnect = url.searchParams.get("reconnect");
          if (!reconnect || !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(reconnect)) {
            reconnect = uuid();
            url.searchParams.set("reconnect", reconnect);
            history.replaceState(null, "", url);
          }

          let socket = null;
          let delay = 500;
          let decoder = new TextDecoder();
          function connect() {
            const scheme = location.protocol === "https:" ? "wss:" : "ws:";
            const query = new URLSearchParams({ reconnect, width: String(term.cols), height: String(term.rows) });
            const path = `/api/v2/workspaceagents/${encodeURIComponent(element.dataset.agent)}/pty?${query}`;
            const ws = new WebSocket(`${scheme}//${location.host}${path}`);
            let opened = false;
            ws.binaryType = "arraybuffer";
            decoder = new TextDecoder();  // a half-received character from the old socket is gone
            ws.onopen = () => { opened = true; delay = 500; show("connected", "connected"); };
            ws.onmessage = (event) => {
              term.write(typeof event.data === "string" ? event.data : decoder.decode(new Uint8Array(event.data), { stream: true }));
            };
            ws.onclose = (event) => {
              if (socket === ws) socket = null;
              if (event.code === 1000 && event.reason) { show("ended", "session ended: " + event.reason); return; }
              show("reconnecting", "reconnecting…");
              const retry = () => { setTimeout(connect, delay); delay = Math.min(delay * 2, 5000); };
              if (opened) { retry(); return; }
              // A refused handshake hides its status from pages: the same request without the upgrade says why. A
              // refusal (signed out, not allowed, gone) stops the retries; "needs a WebSocket upgrade" means allowed.
              fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } })
                .then((response) => response.json().then((body) => ({ status: response.status, body })))
                .then(({ status, body }) => {
                  const allowed = status === 400 && /WebSocket/.test(body.message || "");
                  if (!allowed && status >= 400 && status < 500) {
                    show("refused", (body.message || "refused") + (status === 401 ? " Reload the page to sign in again." : ""));
                  } else {
                    retry();
                  }
                })
                .catch(retry);
            };
            socket = ws;
          }
          function send(message) { if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message)); }
          term.on("data", (data) => send({ data }));
          term.on("resize", (size) => send({ width: size.cols, height: size.rows }));
          window.addEventListener("resize", fit);
          connect();
        })();
        """#
}
