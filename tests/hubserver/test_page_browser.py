"""The hub's web page in a real headless chromium (Debian's chromium + chromium-driver, installed by
`make test` as root), driven by selenium: pages render, the chart shows the reported counts, halt
and resume work from the page with the repository's token, hostile names and reasons are shown as
text, and the browser logs no console error."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.hub import (
    GOLDEN_FLISTS,
    NODE_SECRET,
    TOKEN_A,
    HubFactory,
    make_golden_layout,
    rollout_config,
)
from zos_upgrade.hub.rollout import node_token

HOSTILE_NAME = "<img src=x onerror=alert(7)>.flist"
XSS_REASON = '<script>alert("reason")</script><img src=x onerror=alert(8)>'
RELEASE = "/api/rollout/golden/v2.flist"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: `make test` installs chromium and chromium-driver as root "
                    "(apt-get install chromium chromium-driver)")
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def settled(driver: WebDriver) -> WebDriverWait[WebDriver]:
    """A wait across the page's own reload (an element of the page before it goes stale)."""
    return WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))


def console_errors(driver: WebDriver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def no_alert(driver: WebDriver) -> None:
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check


def report(c: httpx.Client, node: str, result: str, reason: str = "") -> None:
    body = {"node_id": node, "version": "2.0.0", "version_before": "1.0.0", "version_after": "2.0.0",
            "result": result, "reason": reason}
    reply = c.post(RELEASE + "/report", content=json.dumps(body),
                   headers={"Authorization": f"bearer {node_token(NODE_SECRET, node)}"})
    assert reply.status_code == 200, reply.text


def test_the_hub_page_in_a_real_browser(start_hub: HubFactory, tmp_path: Path, browser: WebDriver) -> None:
    root = make_golden_layout(tmp_path / "hub")
    shutil.copyfile(GOLDEN_FLISTS / "v1.flist", root / "golden" / HOSTILE_NAME)
    with start_hub(root, config=rollout_config(threshold=90, min_reports=50)) as hub, \
            httpx.Client(base_url=hub.url) as c:
        for n in range(5):
            report(c, f"up-{n}", "upgraded")
        report(c, "w-0", "waiting")
        report(c, "f-0", "failed", XSS_REASON)
        report(c, "f-1", "failed", XSS_REASON)
        report(c, "r-0", "rolled-back", "probation: web did not answer")
        expected = c.get(RELEASE).json()["counts"]
        assert expected == {"waiting": 1, "upgraded": 5, "failed": 2, "rolled-back": 1}

        browser.get(hub.url + "/")
        assert browser.title == "hub"
        assert browser.find_element(By.ID, "repositories").find_element(By.LINK_TEXT, "golden")
        browser.find_element(By.LINK_TEXT, "golden").click()

        # the repository: flists (the hostile name as text, no element made of it), links, rollouts
        flists = browser.find_element(By.ID, "flists")
        assert HOSTILE_NAME in [a.text for a in flists.find_elements(By.TAG_NAME, "a")]
        assert flists.find_elements(By.TAG_NAME, "img") == []
        links = browser.find_element(By.ID, "links").text
        assert "app:latest.flist" in links and "v2.flist" in links
        assert "v2.flist" in browser.find_element(By.ID, "rollouts").text
        no_alert(browser)

        browser.find_element(By.ID, "flists").find_element(By.LINK_TEXT, HOSTILE_NAME).click()
        # its own page renders, with its contents
        assert browser.find_element(By.ID, "contents").find_elements(By.TAG_NAME, "tr")
        no_alert(browser)

        browser.get(hub.url + "/?repo=golden&flist=v2.flist")
        # the chart: one line per result, the legend carrying exactly the reported counts
        chart = browser.find_element(By.ID, "progress")
        assert {e.get_attribute("data-series") for e in chart.find_elements(By.CSS_SELECTOR, ".series")} \
            == {"upgraded", "waiting", "failed", "rolled-back"}
        legend = {g.get_attribute("data-series"): int(g.get_attribute("data-count") or -1)
                  for g in chart.find_elements(By.CSS_SELECTOR, ".legend")}
        assert legend == expected
        assert "upgraded: 5" in chart.text and "failed: 2" in chart.text
        # the hostile reason is text: no script or image came of it, no alert ran
        reasons = browser.find_element(By.ID, "reasons")
        assert XSS_REASON in [e.text for e in reasons.find_elements(By.CLASS_NAME, "reason")]
        assert reasons.find_elements(By.CSS_SELECTOR, "script, img") == []
        no_alert(browser)
        assert browser.find_element(By.ID, "halt-state").get_attribute("data-halted") == "false"
        contents = browser.find_element(By.ID, "contents").text
        assert "/" in contents
        assert console_errors(browser) == []

        # halt from the page with the repository's token (and a hostile reason, shown as text)
        form = browser.find_element(By.ID, "rollout-control")
        form.find_element(By.NAME, "token").send_keys(TOKEN_A)
        form.find_element(By.NAME, "reason").send_keys("<b>stop</b> the Dell boxes")
        browser.find_element(By.ID, "halt-button").click()
        settled(browser).until(
            lambda d: d.find_element(By.ID, "halt-state").get_attribute("data-halted") == "true")
        assert browser.find_element(By.ID, "halt-reason").text == "<b>stop</b> the Dell boxes"
        assert c.get(RELEASE + "/halt").json() == {"halted": True, "reason": "<b>stop</b> the Dell boxes"}
        assert console_errors(browser) == []

        # resume: the token is kept for the tab, the page shows the rollout going on again
        browser.find_element(By.ID, "resume-button").click()
        settled(browser).until(
            lambda d: d.find_element(By.ID, "halt-state").get_attribute("data-halted") == "false")
        assert c.get(RELEASE + "/halt").json()["halted"] is False
        assert console_errors(browser) == []

        # a wrong token is refused and says why; nothing changes
        token = browser.find_element(By.NAME, "token")
        token.clear()
        token.send_keys("not-the-token-of-this-repository")
        browser.find_element(By.ID, "halt-button").click()
        settled(browser).until(lambda d: d.find_element(By.ID, "control-result").text != "")
        assert "invalid token" in browser.find_element(By.ID, "control-result").text
        assert c.get(RELEASE + "/halt").json()["halted"] is False
        # the only console entry now is the refused request itself (a 401), no script error
        assert all("401" in m for m in console_errors(browser))

        browser.get(hub.url + "/?repo=missing")
        assert "Not found" in browser.find_element(By.TAG_NAME, "h1").text
