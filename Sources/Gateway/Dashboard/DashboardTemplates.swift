/// The dashboard's Mustache templates, compiled into the binary (one file to deploy). Every page extends
/// `layout`; user data is only ever written with `{{…}}`, which HTML-escapes it (never `{{{…}}}`). No inline
/// scripts or styles: the Content-Security-Policy allows this origin's files only.
enum DashboardTemplates {
    static let all: [(name: String, text: String)] = [
        ("layout", layout), ("login", login), ("setup", setup), ("message", message), ("users", users),
        ("workspaces", workspaces), ("workspaces-list", workspacesList), ("terminal", terminal),
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · meshgate</title>
        <link rel="stylesheet" href="/assets/dashboard/dashboard.css?v={{assets}}">
        {{$head}}{{/head}}
        </head>
        <body class="{{$bodyClass}}page{{/bodyClass}}">
        <a class="skip-link" href="#main">Skip to content</a>
        <header class="site-header">
        <a class="brand" href="/">meshgate</a>
        {{#user}}
        <nav aria-label="Main">
        <a href="/workspaces"{{#onWorkspaces}} aria-current="page"{{/onWorkspaces}}>Workspaces</a>
        {{#isOwner}}<a href="/users"{{#onUsers}} aria-current="page"{{/onUsers}}>Users</a>{{/isOwner}}
        </nav>
        <div class="account">
        <span class="username">Signed in as <strong>{{username}}</strong></span>
        <form method="post" action="/logout"><button type="submit" class="secondary">Sign out</button></form>
        </div>
        {{/user}}
        </header>
        <main id="main" tabindex="-1">
        {{$main}}{{/main}}
        </main>
        {{$scripts}}{{/scripts}}
        </body>
        </html>
        """

    static let login = """
        {{<layout}}
        {{$main}}{{#content}}
        <section class="narrow">
        <h1>Sign in to meshgate</h1>
        {{#error}}<p id="error" class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/login" class="form">
        <input type="hidden" name="redirect" value="{{redirect}}">
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required value="{{email}}">
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required>
        <button type="submit">Sign in</button>
        </form>
        </section>
        {{/content}}{{/main}}
        {{/layout}}
        """

    static let setup = """
        {{<layout}}
        {{$main}}{{#content}}
        <section class="narrow">
        <h1>Set up meshgate</h1>
        <p>Create the first account. It owns this deployment: it sees every workspace and manages users.</p>
        {{#error}}<p id="error" class="error" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/setup" class="form">
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="email" required value="{{email}}">
        <label for="username">User name</label>
        <input id="username" name="username" autocomplete="username" required maxlength="32" pattern="[A-Za-z0-9]+(-[A-Za-z0-9]+)*"
          aria-describedby="username-hint" value="{{username}}">
        <p id="username-hint" class="hint">Letters, digits and single hyphens; it appears in app URLs.</p>
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="new-password" required minlength="8" aria-describedby="password-hint">
        <p id="password-hint" class="hint">At least 8 characters.</p>
        <label for="confirm">Confirm password</label>
        <input id="confirm" name="confirm" type="password" autocomplete="new-password" required minlength="8">
        <button type="submit">Create account</button>
        </form>
        </section>
        {{/content}}{{/main}}
        {{/layout}}
        """

    static let message = """
        {{<layout}}
        {{$main}}{{#content}}
        <section class="narrow">
        <h1>{{heading}}</h1>
        <p>{{message}}</p>
        <p><a href="/">Back to the dashboard</a></p>
        </section>
        {{/content}}{{/main}}
        {{/layout}}
        """

    static let users = """
        {{<layout}}
        {{$main}}{{#content}}
        <h1>Users</h1>
        <div class="table-scroll">
        <table>
        <caption class="visually-hidden">Every user of this deployment</caption>
        <thead><tr><th scope="col">User name</th><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Created</th></tr></thead>
        <tbody>
        {{#users}}<tr><th scope="row">{{username}}</th><td>{{email}}</td><td>{{role}}</td><td>{{created}}</td></tr>
        {{/users}}
        </tbody>
        </table>
        </div>
        {{/content}}{{/main}}
        {{/layout}}
        """
}
