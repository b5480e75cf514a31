"""The page at GET / in a real headless chromium: type, submit, see the translation, n-best and heatmap."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def test_page_translates_and_draws_the_heatmap(checkpoint: Path, tmp_path: Path) -> None:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium not installed (make test-browser-serve)"
    )
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("no chromium/chromedriver (make test-browser-serve installs them)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from seq2seq.serve.process import running_server
    from seq2seq.translate import Translator

    expected = Translator.from_checkpoint(checkpoint, device="cpu").translate(["4721"], beam=3)[0]
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with running_server([f"tiny={checkpoint}"], tmp_path / "serve.log") as server:
        driver = webdriver.Chrome(
            options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
        )
        try:
            driver.get(server.url + "/")
            wait = WebDriverWait(driver, 30)
            wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == "tiny")
            driver.find_element(By.ID, "text").send_keys("4721")
            beam = driver.find_element(By.ID, "beam")
            beam.clear()
            beam.send_keys("3")
            driver.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_element(By.ID, "output").text.strip())
            assert driver.find_element(By.ID, "output").text == expected
            rows = driver.find_elements(By.CSS_SELECTOR, "table.nbest tr")
            assert len(rows) == 1 + 3  # header + n-best 3
            cells = driver.find_elements(By.CSS_SELECTOR, "table.heatmap tbody td")
            assert cells and all("rgba" in c.get_attribute("style") for c in cells)
            assert driver.find_element(By.ID, "error").text == ""
            driver.find_element(By.ID, "gates").click()  # the encoder's gates from /v1/inspect
            driver.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_elements(By.ID, "gate-table"))
            gate_rows = driver.find_elements(By.CSS_SELECTOR, "#gate-table tbody tr")
            heads = driver.find_elements(By.CSS_SELECTOR, "#gate-table thead th")
            gates = {r.find_element(By.TAG_NAME, "th").text[-1] for r in gate_rows}
            assert gate_rows and gates <= set("fiorz")
            assert len(heads) == 1 + len(gate_rows[0].find_elements(By.TAG_NAME, "td"))
            errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
            assert not errors, errors
        finally:
            driver.quit()
