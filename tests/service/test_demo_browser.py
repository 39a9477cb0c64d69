"""The /demo page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

SEGSVC_DEMO_SCREENSHOT=docs/demo.png also writes the screenshot docs/serving.md shows.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import Server

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("bentoml_home_demo"), SEGSVC_WORKERS="1")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update", "--window-size=1200,820",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_demo_page_segments_an_uploaded_camvid_image(server, browser, camvid_mini, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    path = sorted((camvid_mini / "test").iterdir())[0]
    browser.get(server.url + "/demo")
    load_ms = browser.execute_script("return performance.getEntriesByType('navigation')[0].loadEventEnd")
    WebDriverWait(browser, 30).until(lambda b: "segsvc-camvid" in b.find_element(By.ID, "meta").text)
    browser.find_element(By.ID, "file").send_keys(str(path))  # as if chosen in the file dialog
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
    assert browser.find_element(By.ID, "error").text == ""

    # the overlay: the photo with the mask on top, both at the image's size, the mask at the slider's opacity
    sizes = browser.execute_script(
        "return ['photo', 'mask'].map(id => [document.getElementById(id).naturalWidth, document.getElementById(id).naturalHeight])"
    )
    assert sizes == [[480, 360], [480, 360]]
    browser.execute_script("const s = document.getElementById('opacity'); s.value = 80; s.dispatchEvent(new Event('input'))")
    assert browser.find_element(By.ID, "mask").value_of_css_property("opacity") == "0.8"

    # the legend against segment_json for the same image
    report = requests.post(server.url + "/segment_json", files={"image": (path.name, path.read_bytes())}, timeout=60).json()
    rows = browser.find_elements(By.CSS_SELECTOR, "#legend tbody tr")
    shown = {row.get_attribute("data-class"): float(row.find_element(By.CLASS_NAME, "share").text.rstrip("%")) for row in rows}
    assert set(shown) == set(report["classes"])
    for name, percent in shown.items():
        assert abs(percent - 100 * report["fractions"][name]) <= 0.05 + 1e-9, (name, percent, report["fractions"][name])
    assert list(shown.values()) == sorted(shown.values(), reverse=True)
    swatch = rows[0].find_element(By.CLASS_NAME, "swatch").value_of_css_property("background-color")
    palette = requests.get(server.url + "/model", timeout=10).json()["palette"]
    assert swatch == "rgba({}, {}, {}, 1)".format(*palette[report["classes"].index(rows[0].get_attribute("data-class"))])

    # the download link holds the mask PNG, the same as POST /segment gives
    link = browser.find_element(By.ID, "download")
    assert link.get_attribute("download") == "mask.png" and link.is_displayed()
    downloaded = base64.b64decode(link.get_attribute("href").split(",", 1)[1])
    served = requests.post(server.url + "/segment", files={"image": (path.name, path.read_bytes())}, timeout=60).content
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(downloaded))), np.asarray(Image.open(io.BytesIO(served))))

    # offline: every resource the page loaded came from the service itself
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
    assert all(url.startswith((server.url, "data:", "blob:")) for url in resources), resources

    browser.execute_script("document.getElementById('opacity').value = 50; document.getElementById('opacity').dispatchEvent(new Event('input'))")
    screenshot = tmp_path / "demo.png"
    assert browser.save_screenshot(str(screenshot)) and Image.open(screenshot).size[0] > 0
    if target := os.environ.get("SEGSVC_DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, Path(target))
    print(f"demo page load {load_ms:.0f} ms")


def test_demo_page_shows_errors(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"hello, world")
    browser.get(server.url + "/demo")
    browser.find_element(By.ID, "file").send_keys(str(not_an_image))
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text.startswith("400: not an image")
