extension DashboardTemplates {
    /// `/workspaces`; the list inside `#workspaces` is re-fetched every few seconds (`?fragment=1`) by workspaces.js.
    static let workspaces = """
        {{<layout}}
        {{$main}}
        <div class="page-head">
        <h1>Workspaces</h1>
        <p class="muted" id="refresh-state" data-state="idle">Updates every 5 seconds.</p>
        </div>
        <div id="announcer" class="visually-hidden" role="status" aria-live="polite"></div>
        <div id="workspaces" data-source="/workspaces?fragment=1">
        {{#content}}{{> workspaces-list}}{{/content}}
        </div>
        {{/main}}
        {{$scripts}}<script src="/assets/dashboard/workspaces.js?v={{assets}}" defer></script>{{/scripts}}
        {{/layout}}
        """

    /// Elements with `data-status` are compared across refreshes; a change is read out by the live region.
    static let workspacesList = """
        {{#groups}}
        <section class="owner-group" aria-labelledby="owner-{{ownerID}}">
        {{#showOwners}}<h2 id="owner-{{ownerID}}">{{ownerName}}</h2>{{/showOwners}}
        {{^showOwners}}<h2 id="owner-{{ownerID}}" class="visually-hidden">Your workspaces</h2>{{/showOwners}}
        {{#workspaces}}
        <article class="workspace" id="workspace-{{id}}" aria-labelledby="workspace-{{id}}-name">
        <h3 id="workspace-{{id}}-name">{{name}}</h3>
        {{^agents}}<p class="muted">No agents yet.</p>{{/agents}}
        <ul class="agents">
        {{#agents}}
        <li class="agent" id="agent-{{id}}" data-agent="{{id}}">
        <div class="agent-head">
        <h4>{{name}}</h4>
        <span class="badge status-{{status}}" data-status="{{status}}" data-label="Agent {{name}} in {{workspaceName}}">{{status}}</span>
        <a class="button" id="terminal-{{id}}" href="/terminal/{{id}}">Terminal<span class="visually-hidden"> of agent {{name}}</span></a>
        </div>
        <dl class="facts">
        <div><dt>Path</dt><dd>{{path}}</dd></div>
        <div><dt>RTT</dt><dd>{{rtt}}</dd></div>
        <div><dt>Version</dt><dd>{{version}}</dd></div>
        <div><dt>Last seen</dt><dd>{{#lastSeenISO}}<time datetime="{{lastSeenISO}}">{{lastSeen}}</time>{{/lastSeenISO}}{{^lastSeenISO}}{{lastSeen}}{{/lastSeenISO}}</dd></div>
        </dl>
        {{^apps}}<p class="muted">No apps.</p>{{/apps}}
        <ul class="apps" aria-label="Apps of agent {{name}}">
        {{#apps}}
        <li class="app">
        {{#url}}<a id="app-{{id}}-{{slug}}" href="{{url}}">{{displayName}}</a>{{/url}}
        {{^url}}<span>{{displayName}}</span> <span class="muted">({{unavailableReason}})</span>{{/url}}
        <span class="badge health-{{health}}" data-status="{{health}}" data-label="App {{displayName}} of agent {{name}}">{{health}}</span>
        </li>
        {{/apps}}
        </ul>
        </li>
        {{/agents}}
        </ul>
        </article>
        {{/workspaces}}
        </section>
        {{/groups}}
        {{^groups}}<p class="empty">No workspaces yet. Create one with <code>POST /api/v2/workspaces</code>.</p>{{/groups}}
        """

    /// `/terminal/{agentID}`: xterm.js 3.x from `--xterm-path`, driven by terminal.js.
    static let terminal = """
        {{<layout}}
        {{$bodyClass}}page page-terminal{{/bodyClass}}
        {{$head}}{{#content}}{{#xtermInstalled}}<link rel="stylesheet" href="/assets/xterm/xterm.css">{{/xtermInstalled}}{{/content}}{{/head}}
        {{$main}}{{#content}}
        <div class="terminal-head">
        <h1>Terminal <span class="muted">{{ownerName}}/{{workspaceName}}.{{agentName}}</span></h1>
        {{#xtermInstalled}}<p id="terminal-status" class="terminal-status" role="status" aria-live="polite" data-state="connecting">connecting…</p>{{/xtermInstalled}}
        </div>
        {{#xtermInstalled}}
        <div id="terminal" class="terminal" data-agent="{{agentID}}" aria-label="Terminal of agent {{agentName}}"></div>
        {{/xtermInstalled}}
        {{^xtermInstalled}}
        <div class="notice" role="alert">
        <p><strong>xterm.js is not installed on this server</strong>, so the terminal cannot open (no usable <code>{{xtermPath}}/xterm.js</code>).</p>
        <p>Install Debian's packages with <code>apt-get install libjs-xterm node-xterm</code> (Debian 12's libjs-xterm alone has no
        browser build; meshgate builds one from node-xterm), or start meshgate with <code>--xterm-path</code> (<code>MESHGATE_XTERM_PATH</code>)
        pointing at a directory holding xterm.js 3.x (<code>xterm.js</code>, <code>xterm.css</code>, <code>addons/fit/fit.js</code>).</p>
        </div>
        {{/xtermInstalled}}
        {{/content}}{{/main}}
        {{$scripts}}{{#content}}{{#xtermInstalled}}<script src="/assets/xterm/xterm.js"></script>
        <script src="/assets/dashboard/commonjs-shim.js?v={{assets}}"></script>
        <script src="/assets/xterm/addons/fit/fit.js"></script>
        <script src="/assets/dashboard/terminal.js?v={{assets}}"></script>{{/xtermInstalled}}{{/content}}{{/scripts}}
        {{/layout}}
        """
}
