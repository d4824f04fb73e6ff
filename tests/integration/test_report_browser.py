"""The period report in headless Chromium: self-contained, complete, and equal to the records.

The agent plays the simulator's scripted scenarios (:mod:`tests.integration.report_run`),
then ``edge-agent report`` writes the page from the buffer and, after ``edge-agent
evidence export``, from the bundle alone (``--bundle`` with the device's public key).
Each page is opened in Debian's Chromium through chromedriver (selenium) and must:

* log no console error and make no network request besides the page itself (the
  DevTools performance log's ``Network.requestWillBeSent`` events, and the page's own
  resource timing entries);
* show the state timeline (running, micro-stop, breakdown segments) and the downtime
  Pareto (fault 17 the provider's, 42 the customer's);
* show every KPI figure as the buffer's record has it: each ``data-value`` equals the
  record's field, and the number printed, read back, equals it too; the Pareto's
  seconds equal the record's ``downtime_by_code``; the stop list is the stop events;
* say the evidence chain verified;
* print to PDF (each machine starts a page);
* fit a phone's width without sideways scrolling of the page.

A laptop-size and a phone-size screenshot of each page are kept in the test's
temporary directory; their PNG dimensions and size are checked.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sqlite3
import struct
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.report.records import stop_view
from tests.integration.report_run import run_scenarios

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LAPTOP = (1280, 1600)
PHONE = (390, 844)
MIN_PNG_BYTES = 20_000


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _driver() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("chromium / chromium-driver not installed (make system-deps)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--hide-scrollbars",
        f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _buffer_records(db: Path, *, final_only: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """The highest revision of each window, read straight from the buffer."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [json.loads(d) for (d,) in con.execute("SELECT data FROM kpi_records")]
    finally:
        con.close()
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in rows:
        if final_only and not rec["final"]:
            continue
        key = (rec["machine"], rec["window"])
        have = best.get(key)
        if have is None or (rec["revision"], rec["final"]) >= (have["revision"], have["final"]):
            best[key] = rec
    return best


def _buffer_stops(db: Path, start: float, end: float) -> dict[str, dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = [json.loads(d) for (d,) in con.execute("SELECT data FROM stop_events ORDER BY seq")]
    finally:
        con.close()
    out: dict[str, dict[str, Any]] = {}
    for stop in map(stop_view, rows):
        if stop["start"] < end and (stop["end"] is None or stop["end"] > start):
            if stop["end"] is None and out.get(stop["event_id"], {}).get("end") is not None:
                continue
            out[stop["event_id"]] = stop
    return out


def _read_back(text: str) -> float:
    """The number a cell prints: ``98.0247 %`` -> 0.980247, ``1,800.5 s`` -> 1800.5."""
    number = text.replace(",", "").split()[0]
    return float(number) / 100 if text.endswith("%") else float(number)


def _check_figures(driver: Any, records: dict[tuple[str, str], dict[str, Any]]) -> int:
    from selenium.webdriver.common.by import By

    cells = driver.find_elements(By.CSS_SELECTOR, "[data-field][data-window][data-machine]")
    assert cells, "no KPI figure on the page"
    for cell in cells:
        machine, window = cell.get_attribute("data-machine"), cell.get_attribute("data-window")
        field = cell.get_attribute("data-field")
        rec = records[(machine, window)]
        shown = json.loads(cell.get_attribute("data-value"))
        assert shown == rec[field], (machine, window, field, shown, rec[field])
        text = cell.get_attribute("textContent")
        if rec[field] is None:
            assert text == "\u2013"
        else:
            assert _read_back(text) == pytest.approx(rec[field], abs=5e-9), (field, text)
    return len(cells)


def _check_page(
    driver: Any,
    page: Path,
    shots: Path,
    records: dict[tuple[str, str], dict[str, Any]],
    stops: dict[str, dict[str, Any]],
    *,
    contract_terms: dict[str, Any] | None,
) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(*LAPTOP)
    driver.get_log("performance")  # drop what came before this page
    driver.get(page.as_uri())
    # 1. Self-contained: no console error, no request but the page itself.
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    urls = [
        msg["params"]["request"]["url"]
        for msg in (json.loads(e["message"])["message"] for e in driver.get_log("performance"))
        if msg["method"] == "Network.requestWillBeSent"
    ]
    assert urls == [page.as_uri()], urls
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    # 2. Timeline and Pareto.
    categories = {
        e.get_attribute("data-category")
        for e in driver.find_elements(By.CSS_SELECTOR, 'svg.timeline[data-machine="m1"] rect.seg')
    }
    assert {"running", "micro-stop", "breakdown"} <= categories, categories
    m2 = driver.find_elements(By.CSS_SELECTOR, 'svg.timeline[data-machine="m2"] rect.seg')
    assert "breakdown" in {e.get_attribute("data-category") for e in m2}
    assert driver.find_elements(By.CSS_SELECTOR, 'svg.pareto[data-machine="m1"] rect.bar')
    headline = driver.find_element(By.CSS_SELECTOR, '.headline[data-machine="m1"]').text
    by_code = records[("m1", headline)]["downtime_by_code"]
    section = driver.find_element(By.ID, "machine-m1")
    pareto = {
        c.get_attribute("data-code"): c
        for c in section.find_elements(By.CSS_SELECTOR, "td[data-field=downtime_by_code]")
    }
    assert set(pareto) == set(by_code)
    assert {"17", "42"} <= set(pareto)
    for code, cell in pareto.items():
        assert json.loads(cell.get_attribute("data-value")) == by_code[code]
        assert _read_back(cell.text) == by_code[code]
    rows = {
        r.get_attribute("data-code"): r.text
        for r in section.find_elements(By.CSS_SELECTOR, "tr.pareto-row")
    }
    assert "customer" in rows["42"]
    assert "provider" in rows["17"]
    assert "Motor overload" in rows["17"]  # fault names from the configuration
    # 3. Numbers equal the records'; the stop list is the stop events.
    assert _check_figures(driver, records) > 20
    listed = {
        r.get_attribute("data-event"): r
        for r in driver.find_elements(By.CSS_SELECTOR, "tr.stop-row")
    }
    assert set(listed) == set(stops)
    for event_id, row in listed.items():
        cell = row.find_element(By.CSS_SELECTOR, "td[data-field=duration_s]")
        assert json.loads(cell.get_attribute("data-value")) == stops[event_id]["duration_s"]
    if contract_terms is not None:  # the live status (status.json); a bundle: closed periods
        terms = driver.find_elements(By.CSS_SELECTOR, 'tr[data-contract="line1"][data-term]')
        assert {t.get_attribute("data-term") for t in terms} == set(contract_terms)
        for row in terms:
            cell = row.find_element(By.CSS_SELECTOR, "td[data-field=so_far]")
            shown = json.loads(cell.get_attribute("data-value"))
            assert shown == contract_terms[row.get_attribute("data-term")]
    assert driver.find_elements(By.CSS_SELECTOR, "tr[data-contract]")
    verdict = driver.find_element(By.ID, "verification").text
    assert verdict.startswith("Evidence chain: VERIFIED"), verdict
    # 4. Printable: Chromium prints it to PDF, each machine on its own page.
    from selenium.webdriver.common.print_page_options import PrintOptions

    pdf = base64.b64decode(driver.print_page(PrintOptions()))
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 3  # header+contracts, m1, m2
    # 5. Screenshots: laptop, then phone (no sideways scrolling of the page itself).
    laptop = shots / f"{page.stem}-laptop.png"
    assert driver.save_screenshot(str(laptop))
    driver.set_window_size(*PHONE)
    width = driver.execute_script("return window.innerWidth")
    assert driver.execute_script("return document.documentElement.scrollWidth") <= width
    phone = shots / f"{page.stem}-phone.png"
    assert driver.save_screenshot(str(phone))
    lw, lh = _png_size(laptop)
    assert lw == LAPTOP[0]
    assert LAPTOP[1] - 200 <= lh <= LAPTOP[1], lh
    pw, _ = _png_size(phone)
    assert 300 <= pw <= PHONE[0] + 40, pw
    for shot in (laptop, phone):
        assert shot.stat().st_size > MIN_PNG_BYTES, (shot, shot.stat().st_size)


async def test_report_pages_in_headless_chromium(tmp_path: Path, mosquitto: Any) -> None:
    if shutil.which("chromium") is None and not CHROMIUM.exists():
        pytest.skip("chromium not installed (make system-deps)")
    run = await run_scenarios(tmp_path, mosquitto.port)
    span = ["--from", _iso(run.start), "--to", _iso(run.end)]
    from_buffer = tmp_path / "report-buffer.html"
    assert main(["report", str(run.config), *span, "-o", str(from_buffer)]) == 0
    bundle = tmp_path / "range.zip"
    # To a time after the agent stopped: the whole chain since --from (a bundle of a middle
    # range fails verify's tail check today, an evidence export issue reported in NEWS).
    later = ["--from", _iso(run.start), "--to", _iso(run.end + 60)]
    assert main(["evidence", "export", str(run.config), *later, "-o", str(bundle)]) == 0
    keys = sorted((run.state / "evidence" / "public").glob("*.pem"))
    assert keys, "no device public key"
    from_bundle = tmp_path / "report-bundle.html"
    args = ["report", "--bundle", str(bundle), "--key", str(keys[0]), *span]
    assert main([*args, "-o", str(from_bundle), str(run.config)]) == 0  # + fault names
    alone = tmp_path / "bundle-alone.html"
    assert main([*args, "-o", str(alone)]) == 0  # the bundle alone has codes, not names
    assert ">code 17</text>" in alone.read_text(encoding="utf-8")
    stops = _buffer_stops(run.db, run.start, run.end)
    assert {s["machine"] for s in stops.values()} == {"m1", "m2"}
    status = json.loads((run.state / "status.json").read_text(encoding="utf-8"))
    terms = {t["term"]: t["so_far"] for t in status["contracts"]["line1"]["terms"]}
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = _driver()
    try:
        _check_page(
            driver,
            from_buffer,
            shots,
            _buffer_records(run.db, final_only=False),
            stops,
            contract_terms=terms,
        )
        # The bundle carries the chained (final) records only: the page shows those.
        _check_page(
            driver,
            from_bundle,
            shots,
            _buffer_records(run.db, final_only=True),
            stops,
            contract_terms=None,
        )
    finally:
        driver.quit()
