"""The HTML page in a real browser: headless Chromium, driven by Selenium, opens the file from
disk with the network switched off, finds a node through the search box, shows its evidence in
the side panel on click, folds and unfolds modules, and draws something (not a blank page).

Skipped, with the reason, only where Selenium, Chromium or its driver is missing
(``scripts/setup.sh dev`` installs them on Debian and Ubuntu)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from tapfinder.cli import main

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (BROWSER and DRIVER), reason=(
    "no Chromium and chromedriver on PATH; install them (Debian: apt-get install chromium "
    "chromium-driver) to run the browser tests"))


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900",
                     "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.binary_location = BROWSER
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    yield driver
    driver.quit()


def open_page(browser, path: Path) -> None:
    browser.get(path.as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors


def search_and_click(browser, query: str) -> str:
    box = browser.find_element(By.ID, "search")
    box.clear()
    box.send_keys(query)
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "match-count").text != "0")
    selected = browser.find_element(By.CSS_SELECTOR, "#canvas g.node.selected")
    browser.find_element(By.ID, "details").get_attribute("innerHTML")  # settle
    ActionChains(browser).move_to_element(selected).click().perform()
    return browser.find_element(By.ID, "details").text


def nonwhite_fraction(png: bytes) -> float:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[245:]) / sum(histogram)


# (model, input shape, the node to search for, text its side panel must show)
PAGES = [
    ("smp:DeepLabV3Plus:resnet18", "1,3,512,512", "cat_1", "skip_join"),
    ("timm:vit_base_patch16_224", "1,3,224,224", "add_10", "skip_join"),
    ("hf:SegformerForSemanticSegmentation", "1,3,128,128", "cat", "fusion"),
]


@pytest.mark.parametrize(("model", "shape", "query", "evidence"), PAGES,
                         ids=[spec.split(":")[1] for spec, *_ in PAGES])
def test_the_page_finds_a_node_and_shows_its_evidence_offline(browser, tmp_path, model, shape,
                                                               query, evidence):
    page = tmp_path / "page.html"
    assert main(["inspect", model, "--input-shape", shape, "--html", str(page)]) == 0
    open_page(browser, page)
    panel = search_and_click(browser, query)
    assert panel.splitlines()[0].startswith(query)
    assert "rules' evidence" in panel and evidence in panel
    assert nonwhite_fraction(browser.find_element(By.ID, "canvas").screenshot_as_png) > 0.03


def test_folding_and_unfolding_by_clicking(browser, tmp_path):
    page = tmp_path / "page.html"
    assert main(["inspect", "torchvision:resnet18", "--input-shape", "1,3,64,64",
                 "--html", str(page)]) == 0
    open_page(browser, page)
    count = "return document.querySelectorAll('#canvas g.node').length"
    finest = browser.execute_script(count)
    browser.find_element(By.CSS_SELECTOR, "#levels button[data-level='1']").click()
    folded = browser.execute_script(count)
    assert folded < finest
    layer = browser.execute_script(
        "return [...document.querySelectorAll('#canvas g.node')]"
        ".find(g => g.dataset.box === 'layer3')")
    ActionChains(browser).move_to_element(layer).click().perform()
    assert "BasicBlock" in browser.find_element(By.ID, "details").text or \
        "Sequential" in browser.find_element(By.ID, "details").text
    ActionChains(browser).double_click(layer).perform()
    assert browser.execute_script(count) > folded  # layer3 unfolded at a finer level
    active = browser.find_element(By.CSS_SELECTOR, "#levels button.active").text
    assert active != "depth 1"
