/// The dashboard's one stylesheet: system fonts, WCAG AA contrast on both schemes, a visible focus ring, one
/// column below 40rem.
enum DashboardStylesheet {
    static let css = #"""
        :root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --card: #f6f8fa;
          --accent: #0a58ca; --accent-fg: #ffffff; --ok: #116329; --warn: #7d4e00; --bad: #a40e26; --focus: #0a58ca; }
        @media (prefers-color-scheme: dark) {
          :root { --bg: #0d1117; --fg: #e6edf3; --muted: #9da7b3; --line: #30363d; --card: #161b22;
            --accent: #4493f8; --accent-fg: #0d1117; --ok: #3fb950; --warn: #d29922; --bad: #ff7b72; --focus: #79c0ff; }
        }
        * { box-sizing: border-box; }
        body { margin: 0; background: var(--bg); color: var(--fg); font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
        a { color: var(--accent); }
        :focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; }
        .skip-link { position: absolute; left: -999px; top: 0; }
        .skip-link:focus { left: 1rem; top: .5rem; background: var(--bg); padding: .25rem .5rem; z-index: 10; }
        .visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
        .site-header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1.5rem; padding: .75rem 1.25rem;
          border-bottom: 1px solid var(--line); background: var(--card); }
        .brand { font-weight: 700; font-size: 1.15rem; color: var(--fg); text-decoration: none; }
        .site-header nav { display: flex; gap: 1rem; }
        .site-header nav a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 2px; }
        .account { margin-left: auto; display: flex; align-items: center; gap: .75rem; flex-wrap: wrap; }
        .account form { margin: 0; }
        main { padding: 1.25rem; max-width: 72rem; margin: 0 auto; }
        main:focus { outline: none; }
        h1 { font-size: 1.6rem; margin: .25rem 0 1rem; }
        h2 { font-size: 1.25rem; margin: 1.5rem 0 .5rem; }
        h3 { font-size: 1.1rem; margin: 0 0 .5rem; }
        h4 { font-size: 1rem; margin: 0; }
        .muted, .hint { color: var(--muted); }
        .hint { margin: .25rem 0 0; font-size: .9rem; }
        .narrow { max-width: 26rem; margin: 2rem auto; }
        .form label { display: block; margin-top: .9rem; font-weight: 600; }
        input { width: 100%; padding: .5rem; font: inherit; color: var(--fg); background: var(--bg); border: 1px solid var(--muted); border-radius: 4px; }
        button, .button { display: inline-block; padding: .45rem .9rem; font: inherit; border-radius: 4px; border: 1px solid var(--accent);
          background: var(--accent); color: var(--accent-fg); cursor: pointer; text-decoration: none; }
        .form button { margin-top: 1.25rem; }
        button.secondary { background: transparent; color: var(--accent); }
        .error { color: var(--bad); border-left: 4px solid var(--bad); padding: .25rem .75rem; }
        .notice { border: 1px solid var(--warn); border-left-width: 4px; padding: .5rem 1rem; background: var(--card); }
        code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; }
        .page-head { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: .5rem; }
        .page-head p { margin: 0; font-size: .9rem; }
        .workspace { border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin: 0 0 1rem; background: var(--card); }
        .agents, .apps { list-style: none; margin: 0; padding: 0; }
        .agent { border-top: 1px solid var(--line); padding: .75rem 0 .25rem; }
        .agent-head { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; }
        .agent-head .button { margin-left: auto; }
        .facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .25rem 1rem; margin: .5rem 0; }
        .facts dt { font-size: .8rem; color: var(--muted); }
        .facts dd { margin: 0; overflow-wrap: anywhere; }
        .app { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem; padding: .2rem 0; }
        .badge { display: inline-block; padding: 0 .5rem; border-radius: 999px; border: 1px solid currentColor; font-size: .85rem; font-weight: 600; }
        .status-connected, .health-healthy { color: var(--ok); }
        .status-connecting, .health-initializing { color: var(--warn); }
        .status-disconnected, .status-timeout, .health-unhealthy { color: var(--bad); }
        .health-disabled { color: var(--muted); }
        .table-scroll { overflow-x: auto; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); }
        .page-terminal { height: 100vh; display: flex; flex-direction: column; }
        .page-terminal main { flex: 1; min-height: 0; width: 100%; max-width: none; padding: .75rem; display: flex; flex-direction: column; }
        .terminal-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1rem; }
        .terminal-head h1 { font-size: 1.2rem; margin: 0 0 .5rem; }
        .terminal-status[data-state="connected"] { color: var(--ok); }
        .terminal-status[data-state="reconnecting"], .terminal-status[data-state="connecting"] { color: var(--warn); }
        .terminal-status[data-state="ended"], .terminal-status[data-state="unavailable"] { color: var(--bad); }
        .terminal { flex: 1; min-height: 12rem; overflow: hidden; background: #000; padding: .25rem; }
        @media (max-width: 40rem) {
          .site-header { padding: .5rem .75rem; }
          .account { margin-left: 0; width: 100%; justify-content: space-between; }
          main { padding: .75rem; }
          .agent-head .button { margin-left: 0; }
        }
        """#
}
