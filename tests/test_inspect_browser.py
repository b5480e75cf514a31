"""The inspect page in a real headless browser (Debian's chromium, driven by selenium): it loads with no
network, draws its figures (the screenshot is not blank), and the console has no errors.

Skips with a reason where chromium, chromedriver or selenium is missing; `make test-browser` installs them.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import pytest

from seq2seq import Translator
from seq2seq.inspect.report import write_inspection
from seq2seq.train import TrainResult

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # any network request would fail (and log an error)
    "--window-size=1200,1600",
]

pytestmark = pytest.mark.browser


def test_page_renders_offline_without_console_errors(trained: TrainResult, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (make test-browser)")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"no browser: {CHROMIUM} and {CHROMEDRIVER} needed (make test-browser installs them)")
    from PIL import Image

    translator = Translator.from_checkpoint(trained.best_checkpoint, "cpu")
    write_inspection(translator, ["21", "1999", "40213"], tmp_path, gradients=True, figures=2)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get((tmp_path / "index.html").as_uri())
        assert driver.execute_script("return document.readyState") == "complete"
        assert driver.find_element("id", "heat").size["width"] > 100
        # switching the selectors redraws without errors
        driver.execute_script(
            "const pick = (id, v) => { const e = document.getElementById(id); e.value = v;"
            " e.dispatchEvent(new Event('change')); }; pick('gate', 'c'); pick('sentence', '1');"
        )
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
        logs = driver.get_log("browser")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    colors = shot.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the screenshot is blank"
    errors = [entry for entry in logs if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
