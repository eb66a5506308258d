#!/usr/bin/env python3
"""Press Poll Now on the ioc-milter status page in headless Chromium.

Usage: browser_poll_now.py URL SOURCE

Loads URL, reads the "Last poll" cell of SOURCE's row, presses that row's
Poll Now button, waits until the page that follows the form post has loaded,
and reads the cell again.
Prints one JSON object: {"before": ..., "after": ..., "title": ...}.
Uses Debian's chromium and chromedriver (/usr/bin/chromedriver), so nothing
is downloaded at run time.
"""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def new_page_loaded(driver):
    """Return True once the marked page is gone and the next one is complete.

    While Chromium swaps documents, a script can fail with a WebDriverException
    because the old nodes are being removed. The wait ignores it and retries.
    """
    return driver.execute_script(
        "return window.iocMilterOldPage === undefined"
        " && document.readyState === 'complete';"
    )


def main():
    url, source = sys.argv[1], sys.argv[2]
    profile = tempfile.mkdtemp(prefix="ioc-milter-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--user-data-dir=" + profile,
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(60)
        driver.get(url)
        row = '//tr[@data-source="%s"]' % source
        before = driver.find_element(By.XPATH, row + '/td[@class="last-poll"]').text
        button = driver.find_element(By.XPATH, row + '//button[@class="poll-now"]')
        driver.execute_script("window.iocMilterOldPage = true;")
        button.click()
        wait = WebDriverWait(driver, 60, ignored_exceptions=(WebDriverException,))
        wait.until(new_page_loaded)
        wait.until(lambda d: d.find_element(By.XPATH, row + '/td[@class="last-poll"]'))
        after = driver.find_element(By.XPATH, row + '/td[@class="last-poll"]').text
        print(json.dumps({"before": before, "after": after, "title": driver.title}))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
