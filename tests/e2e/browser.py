"""Debian's headless Chromium driven through Selenium, for the real-browser tests. A test module sets
`pytestmark = browser.required`: where a package is missing its tests are skipped with the reason."""
import os
import shutil

import pytest

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By  # noqa: F401 (for the test modules)
    from selenium.webdriver.common.keys import Keys  # noqa: F401
    from selenium.webdriver.support import expected_conditions  # noqa: F401
    from selenium.webdriver.support.ui import WebDriverWait  # noqa: F401
except ImportError:  # reported as a skip
    webdriver = None

CHROMIUM = shutil.which("chromium")
DRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None)
MISSING = [name for name, found in (("python3-selenium", webdriver), ("chromium", CHROMIUM), ("chromium-driver", DRIVER)) if not found]
required = pytest.mark.skipif(bool(MISSING), reason=f"browser tests need {', '.join(MISSING)} (make deps-test installs them)")
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), ".build", "e2e-artifacts")


def chrome(*arguments, console=False):
    """A headless Chromium with `arguments` added; `console`: keep the page's console for `get_log("browser")`."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", *arguments):
        options.add_argument(argument)
    if console:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def screenshot(driver, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))
