"""The interactive HTML page against the static SVG drawing: size, time to write, time to open.

For each model: ``tapfinder inspect MODEL --render x.svg`` (the baseline: one drawing) and
``tapfinder inspect MODEL --html x.html`` (every fold level, the data and the script), each
timed in its own process; the page's size; and the time headless Chromium takes from
navigation to the page's script having drawn its first level (``document.body.dataset.readyMs``),
the median of three loads from disk with the network off.

Usage::

    python benchmarks/bench_page.py [--models timm:vit_base_patch16_224,timm:convnext_base]
        [--json out.json]

Target (issue 25): under a few megabytes and under two seconds to open for a ViT-B/16 and a
ConvNeXt-B.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = "timm:vit_base_patch16_224,timm:convnext_base,smp:DeepLabV3Plus:resnet18"


def timed_inspect(model: str, *output: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tapfinder.cli", "inspect", model, *output],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def open_milliseconds(page: Path, loads: int = 3) -> float:
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    driver = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")),
                              options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
    times = []
    try:
        for _ in range(loads):
            driver.get("about:blank")
            driver.get(page.as_uri())
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
            times.append(float(driver.execute_script("return document.body.dataset.readyMs")))
    finally:
        driver.quit()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--json", default=None)
    options = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for model in options.models.split(","):
            svg, page = Path(folder) / "x.svg", Path(folder) / "x.html"
            svg_s = timed_inspect(model, "--render", str(svg))
            page_s = timed_inspect(model, "--html", str(page))
            data = page.read_text()
            row = {"model": model, "svg_s": round(svg_s, 1), "page_s": round(page_s, 1),
                   "write_ratio": round(page_s / svg_s, 2),
                   "svg_mb": round(svg.stat().st_size / 2**20, 2),
                   "page_mb": round(page.stat().st_size / 2**20, 2),
                   "levels": data.count('"collapse":'),
                   "open_ms": round(open_milliseconds(page))}
            rows.append(row)
            print(json.dumps(row))
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
