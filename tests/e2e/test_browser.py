"""A real browser (Debian's headless Chromium through Selenium) signs in and opens a path app and a subdomain
app, and the page's WebSocket round trip works in both. Screenshots go to .build/e2e-artifacts/."""
import pytest

from apps_deployment import WILDCARD, Deployment
from browser import By, WebDriverWait, chrome, expected_conditions, required, screenshot

pytestmark = required


@pytest.fixture
def browser():
    driver = chrome("--window-size=1000,800", f"--host-resolver-rules=MAP *.{WILDCARD} 127.0.0.1")
    yield driver
    driver.quit()


def wait_for_echo(browser, name):
    try:
        WebDriverWait(browser, 20).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "echo: hello from"))
    finally:
        screenshot(browser, name)
    return browser.find_element(By.ID, "status").text


def test_browser_signs_in_and_uses_path_and_subdomain_apps(start_server, tmp_path, browser):
    d = Deployment(start_server, tmp_path)
    try:
        browser.get(f"{d.access}/@owner/dev/apps/wspage/")
        # Not signed in: the gateway sends the browser to the sign-in form, which comes back here.
        WebDriverWait(browser, 20).until(expected_conditions.presence_of_element_located((By.ID, "email")))
        browser.find_element(By.ID, "email").send_keys("owner@example.com")
        browser.find_element(By.ID, "password").send_keys("correct horse battery")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        assert wait_for_echo(browser, "path-app") == f"echo: hello from 127.0.0.1:{d.port}"

        # The subdomain app signs in through the primary's auth-redirect, with no form: the session is there.
        host = f"wssub--main--dev--owner.{WILDCARD}:{d.port}"
        browser.get(f"http://{host}/")
        assert wait_for_echo(browser, "subdomain-app") == f"echo: hello from {host}"
        assert "meshgate_app_key" not in browser.current_url
    finally:
        d.stop()
