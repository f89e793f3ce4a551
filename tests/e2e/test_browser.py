"""A real browser (Debian's headless Chromium through Selenium) signs in and opens a path app and a subdomain
app, and the page's WebSocket round trip works in both. Screenshots go to .build/e2e-artifacts/."""
import os
import shutil

import pytest

from apps_deployment import WILDCARD, Deployment

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # reported as a skip below
    webdriver = None

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
MISSING = [name for name, found in (("python3-selenium", webdriver), ("chromium", CHROMIUM), ("chromium-driver", DRIVER)) if not found]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"browser tests need {', '.join(MISSING)} (make deps-test installs them)")
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".build", "e2e-artifacts")


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,800",
                     f"--host-resolver-rules=MAP *.{WILDCARD} 127.0.0.1"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait_for_echo(browser, name):
    try:
        WebDriverWait(browser, 20).until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "echo: hello from"))
    finally:
        os.makedirs(ARTIFACTS, exist_ok=True)
        browser.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))
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
