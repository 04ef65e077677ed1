"""`laned monitor --web` opened in a real browser (Debian's chromium and chromium-driver, driven by
selenium), as a station's office PC opens it: the page connects, the monitor starts for it, and the
screen the browser receives shows the lane (its name and state).

The page draws the terminal on a canvas, so the test reads what the browser received on the page's
websocket (Chrome's own network log) rather than the DOM.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from laned.broker import free_port
from laned.config import parse_config
from laned.daemon import Lane
from tests.helpers import ROOT, lane_config_dict, laned_command, subscriber

pytestmark = [pytest.mark.integration, pytest.mark.mosquitto]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")



def received_text(driver: Any) -> str:
    """Everything the page got on its websockets so far, decoded (binary frames are base64 in the log)."""
    text = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") != "Network.webSocketFrameReceived":
            continue
        response = message["params"]["response"]
        data = response.get("payloadData", "")
        if response.get("opcode") == 2:
            data = base64.b64decode(data).decode("utf-8", "replace")
        text.append(data)
    return "".join(text)


async def test_the_served_monitor_shows_the_lane_in_a_browser(tmp_path: Path, mosquitto: Any) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "apt-get install chromium chromium-driver"
    lane = Lane(parse_config(lane_config_dict(tmp_path, mosquitto), "test", environ={}), startup_grace_s=0.5)
    lane_task = asyncio.create_task(lane.run())
    port = free_port()
    server = subprocess.Popen(
        laned_command("monitor", "--web", f"127.0.0.1:{port}", "--broker", f"{mosquitto.host}:{mosquitto.port}",
                      "--station", "370100"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    driver = None
    try:
        async with subscriber(mosquitto.host, mosquitto.port, "laned/v1/370100/T1/status") as station:
            await station.wait_status("online")
        deadline = time.monotonic() + 20
        while True:  # the server is up when it accepts a connection
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
            assert time.monotonic() < deadline, "laned monitor --web did not listen"
            await asyncio.sleep(0.2)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = await asyncio.to_thread(webdriver.Chrome, options=options, service=Service(chromedriver))
        await asyncio.to_thread(driver.get, f"http://127.0.0.1:{port}/")
        assert "laned monitor — station 370100" in driver.page_source  # the page served, before the app starts
        raw = seen = ""
        deadline = time.monotonic() + 30
        while "lane 370100/T1: ONLINE" not in seen:
            assert time.monotonic() < deadline, f"the page never showed the lane; it received: {seen[-2000:]!r}"
            await asyncio.sleep(0.5)
            raw += await asyncio.to_thread(received_text, driver)
            seen = ANSI.sub("", raw)  # the screen's text without its colours and cursor moves
        assert "lane T1" in seen  # the lane's tab
    finally:
        if driver is not None:
            await asyncio.to_thread(driver.quit)
        server.terminate()
        server.wait(10)
        lane.request_stop()
        await asyncio.wait_for(lane_task, 15)
