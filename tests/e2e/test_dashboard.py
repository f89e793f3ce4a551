"""The dashboard in a real browser (Debian's headless Chromium through Selenium): first-user setup through the form
on a fresh server, and with --dev: sign in, see the demo workspace with its agent connected and its app, open the
app from its link. Screenshots (desktop and 390 px phone width) go to .build/e2e-artifacts/."""
import re

import pytest

from agent import free_port
from browser import By, Keys, WebDriverWait, chrome, expected_conditions, required, screenshot

pytestmark = required


@pytest.fixture
def browser():
    # --dev's TLS certificate is self-signed.
    driver = chrome("--window-size=1200,900", "--ignore-certificate-errors", console=True)
    yield driver
    driver.quit()


def wait(browser, condition, timeout=20):
    return WebDriverWait(browser, timeout).until(condition)


def csp_violations(browser):
    """Console errors the Content-Security-Policy caused: the pages must need no inline script or style."""
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def fill(browser, fields):
    for element_id, value in fields.items():
        field = browser.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)


def test_first_user_is_created_through_the_setup_form(start_server, browser):
    server = start_server("--http-address", "127.0.0.1:0")
    base = server.url("http")
    browser.get(base + "/")
    # A fresh deployment has no user: "/" leads to setup.
    wait(browser, expected_conditions.url_to_be(base + "/setup"))
    # Every input has its label.
    for field in browser.find_elements(By.CSS_SELECTOR, "form input:not([type=hidden])"):
        assert browser.find_elements(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']"), field.get_attribute("id")
    fill(browser, {"email": "first@example.com", "username": "first", "password": "correct horse battery", "confirm": "correct horse battery"})
    screenshot(browser, "dashboard-setup")
    browser.find_element(By.CSS_SELECTOR, "form[action='/setup'] button[type=submit]").click()

    wait(browser, expected_conditions.url_to_be(base + "/workspaces"))
    header = browser.find_element(By.CSS_SELECTOR, ".site-header").text
    assert "Signed in as first" in header
    assert "No workspaces yet" in browser.find_element(By.ID, "main").text
    screenshot(browser, "dashboard-after-setup")

    # Setup is closed now.
    browser.get(base + "/setup")
    wait(browser, expected_conditions.url_to_be(base + "/workspaces"))

    # The header's button signs out; the pages then ask to sign in again and come back.
    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait(browser, expected_conditions.url_to_be(base + "/login"))
    browser.get(base + "/users")
    wait(browser, expected_conditions.url_to_be(base + "/login?redirect=/users"))
    fill(browser, {"email": "first@example.com", "password": "correct horse battery"})
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, expected_conditions.url_to_be(base + "/users"))
    assert "first@example.com" in browser.find_element(By.TAG_NAME, "table").text
    assert csp_violations(browser) == []


def test_dev_dashboard_shows_the_demo_agent_and_opens_its_app(start_server, browser):
    server = start_server("--dev", "--http-address", "127.0.0.1:0", "--tls-address", f"127.0.0.1:{free_port()}")
    banner = server.wait_for_stdout("Workspace:")
    dashboard = re.search(r"Dashboard:\s+(\S+)", banner).group(1)
    email = re.search(r"Email:\s+(\S+)", banner).group(1)
    password = re.search(r"Password:\s+(\S+)", banner).group(1)
    base = dashboard.rsplit("/workspaces", 1)[0]

    browser.get(dashboard)
    wait(browser, expected_conditions.url_to_be(base + "/login?redirect=/workspaces"))
    fill(browser, {"email": email, "password": password})
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, expected_conditions.url_to_be(dashboard))

    # The page refreshes itself: the agent turns connected and its app appears without a reload.
    status = wait(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, "[data-label='Agent main in demo'][data-status='connected']")), timeout=40)
    assert status.text == "connected"
    link = wait(browser, expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "a[href$='/demo.main/apps/demo/']")), timeout=40)
    assert browser.find_element(By.ID, "workspaces").find_element(By.TAG_NAME, "h3").text == "demo"
    assert browser.find_element(By.CSS_SELECTOR, "#announcer[aria-live='polite']")
    terminal = browser.find_element(By.CSS_SELECTOR, "a[href^='/terminal/']")
    assert terminal.get_attribute("href").startswith(base + "/terminal/")
    # The 5-second refresh ran (and found nothing to announce or only real changes).
    wait(browser, lambda b: b.find_element(By.ID, "refresh-state").get_attribute("data-state") == "live", timeout=15)
    screenshot(browser, "dashboard-workspaces")

    # At phone width nothing is cut off sideways.
    browser.set_window_size(390, 844)
    assert browser.execute_script("return document.documentElement.scrollWidth") <= browser.execute_script("return window.innerWidth")
    screenshot(browser, "dashboard-workspaces-phone")
    browser.set_window_size(1200, 900)
    assert csp_violations(browser) == []

    link = browser.find_element(By.CSS_SELECTOR, "a[href$='/demo.main/apps/demo/']")
    link.click()
    wait(browser, expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "body"), "Hello from your workspace"))
    screenshot(browser, "dashboard-app")


def terminal_text(browser):
    """What the terminal shows, line by line (xterm.js 3.8 has no public buffer API yet)."""
    return browser.execute_script(
        "const b = window.meshgateTerminal._core.buffer; const lines = [];"
        "for (let i = 0; i < b.lines.length; i++) lines.push(b.translateBufferLineToString(i, true));"
        "return lines.join('\\n');")


def terminal_screen(browser):
    """The rows the terminal shows now (its viewport), without trailing blanks."""
    return browser.execute_script(
        "const t = window.meshgateTerminal, b = t._core.buffer; const rows = [];"
        "for (let i = b.ydisp; i < b.ydisp + t.rows; i++) rows.push(b.translateBufferLineToString(i, true));"
        "return rows;")


def test_terminal_page_runs_a_shell_and_rejoins_it_after_a_reload(start_server, browser):
    """xterm.js from Debian's packages runs under the page's CSP, sized to its box; the page puts a reconnect id in
    its URL, talks to the agent's shell over the PTY socket, and a reload rejoins the same session."""
    server = start_server("--dev", "--http-address", "127.0.0.1:0", "--tls-address", f"127.0.0.1:{free_port()}")
    banner = server.wait_for_stdout("Workspace:")
    terminal = re.search(r"Terminal:\s+(\S+)", banner).group(1)
    email = re.search(r"Email:\s+(\S+)", banner).group(1)
    password = re.search(r"Password:\s+(\S+)", banner).group(1)
    server.wait_for_log("local agent started")

    browser.get(terminal)
    wait(browser, expected_conditions.presence_of_element_located((By.ID, "email")))
    fill(browser, {"email": email, "password": password})
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(browser, lambda b: re.search(r"/terminal/[0-9a-f-]+\?reconnect=[0-9a-f-]{36}$", b.current_url))
    reconnect = browser.current_url.rsplit("=", 1)[1]
    # The fit addon sized the terminal to its box (xterm.js starts at 80 columns).
    assert browser.execute_script("return typeof window.meshgateTerminal === 'object' && window.meshgateTerminal.cols > 100")
    status = lambda b: b.find_element(By.ID, "terminal-status").get_attribute("data-state")  # noqa: E731
    # The agent may still be connecting: the page keeps retrying until the socket opens.
    wait(browser, lambda b: status(b) == "connected", timeout=40)

    keyboard = lambda b: b.find_element(By.CSS_SELECTOR, "#terminal textarea")  # noqa: E731
    keyboard(browser).send_keys("echo hello-$RANDOM\n")
    # The shell's answer, not the echo of the command line: digits only appear in the output.
    hello = wait(browser, lambda b: re.search(r"^hello-(\d+)\s*$", terminal_text(b), re.M)).group(0).strip()
    screenshot(browser, "dashboard-terminal")
    assert csp_violations(browser) == []

    # A reload rejoins the same session: its scrollback comes back.
    browser.refresh()
    wait(browser, lambda b: b.execute_script("return !!window.meshgateTerminal") and status(b) == "connected", timeout=30)
    assert browser.current_url.endswith("reconnect=" + reconnect)
    wait(browser, lambda b: re.search(rf"^{hello}\s*$", terminal_text(b), re.M))

    # A full-screen program survives a reload: the agent repaints vim's screen from its terminal model, so the page
    # shows exactly what it showed before, not a replay of escape sequences.
    keyboard(browser).send_keys("printf 'alpha line %s\\n' one two three > /tmp/meshgate-vim.txt; vim -u NONE -N /tmp/meshgate-vim.txt\n")
    wait(browser, lambda b: terminal_screen(b)[2].startswith("alpha line three") and terminal_screen(b)[3].startswith("~"))
    keyboard(browser).send_keys("Gomeshgate was here" + Keys.ESCAPE)  # a modified buffer, cursor on line 4
    # vim leaves insert mode once its escape timeout has passed: the screen is settled only then.
    wait(browser, lambda b: "meshgate was here" in terminal_screen(b)[3] and "INSERT" not in terminal_screen(b)[-1])
    before = terminal_screen(browser)
    screenshot(browser, "dashboard-terminal-vim")
    browser.refresh()
    wait(browser, lambda b: b.execute_script("return !!window.meshgateTerminal") and status(b) == "connected", timeout=30)
    wait(browser, lambda b: terminal_screen(b) == before, timeout=15)
    assert before[0].startswith("alpha line one") and before[3].startswith("meshgate was here") and before[4].startswith("~")
    screenshot(browser, "dashboard-terminal-vim-reloaded")
    keyboard(browser).send_keys(":q!\n")
    wait(browser, lambda b: not any(row.startswith("~") for row in terminal_screen(b)))

    # The shell's exit ends the session: the page says so and stops reconnecting.
    browser.find_element(By.CSS_SELECTOR, "#terminal textarea").send_keys("exit\n")
    wait(browser, lambda b: status(b) == "ended")
    assert browser.find_element(By.ID, "terminal-status").text.startswith("session ended: ")
