"""`laned monitor`: a live view of one lane, or of every lane of a station, built on Textual.

It is a client of the station's broker: it subscribes to `{prefix}/{station}/{lane or +}/…`
(status, events, replies, live) and sends the station's commands (`cmd/daily-check`,
`cmd/abort`), so what it may do is what the broker's ACL lets its login do. One tab per lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any

import aiomqtt
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from laned.monitor import render
from laned.monitor.model import LaneModel, StationModel
from laned.mqtt import dumps
from laned.station_client import Target

REFRESH_S = 0.2  # the screen is redrawn at most five times a second, however fast live messages come


def pane_id(lane: str) -> str:
    return "lane-" + re.sub(r"[^A-Za-z0-9_-]", "_", lane)


class LanePanel(VerticalScroll):
    """One lane: headline, devices with live values, the inspection and prompt, the brake plot."""

    DEFAULT_CSS = """
    LanePanel Static { padding: 0 1; }
    LanePanel .headline { text-style: bold; }
    LanePanel #prompt { text-style: bold; color: $warning; }
    LanePanel PlotextPlot { height: 14; min-height: 10; }
    """

    def __init__(self, lane: str, station: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane, self.station = lane, station
        self.texts: dict[str, str] = {}  # what each part shows now, as plain text (tests read it)
        self.plotted: tuple[list[float], list[float], list[float]] = ([], [], [])  # t (s), left, right (daN)

    def compose(self) -> ComposeResult:
        for name in ("headline", "devices", "inspection", "prompt"):  # markup off: "[Errno 2]" is text
            yield Static(id=name, classes=name, markup=False)
        yield PlotextPlot(id="brake")
        yield Static(id="outbox", markup=False)
        yield Static(id="log", markup=False)

    def show(self, lane: LaneModel) -> None:
        self.texts = {
            "headline": render.headline(lane, self.station),
            "devices": render.devices(lane),
            "inspection": render.inspection(lane),
            "prompt": f"DRIVER: {lane.prompt}" if lane.prompt else "",
            "outbox": render.outbox_and_checks(lane),
            "log": "\n".join(lane.log),
        }
        for name, text in self.texts.items():
            self.query_one(f"#{name}", Static).update(_coloured(text))
        curve = lane.curve
        plotted = (curve.times_s(), list(curve.left_dan), list(curve.right_dan))
        if plotted != self.plotted:
            self.plotted = plotted
            plot = self.query_one(PlotextPlot)
            plt = plot.plt
            plt.clear_data()
            what = f"axle {curve.axle_no} {curve.test}" if curve.axle_no is not None else "no brake test yet"
            plt.title(f"brake force, {what}")
            plt.xlabel("s")
            plt.ylabel("daN")
            if plotted[0]:
                plt.plot(plotted[0], plotted[1], label="left", color="blue", marker="braille")
                plt.plot(plotted[0], plotted[2], label="right", color="red", marker="braille")
            plot.refresh()


#: states a technician must see at a glance: words -> colour (later ones win where they overlap)
STATE_COLOURS = (
    (("connected", "ONLINE"), "bold green"),
    (("disconnected", "degraded", "connecting", "OFFLINE", "ALARM", "FAILED", "last error"), "bold red"),
)


def _coloured(text: str) -> Text:
    shown = Text(text)
    for words, style in STATE_COLOURS:
        shown.highlight_words(words, style)
    return shown


class MonitorApp(App[int]):
    """The monitor; `target.lane` None shows every lane of the station, one tab each."""

    TITLE = "laned monitor"
    BINDINGS = [  # noqa: RUF012 (Textual's own idiom)
        Binding("d", "daily_check", "Daily check"),
        Binding("a", "abort", "Abort inspection"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, target: Target) -> None:
        super().__init__()
        self.target = target
        self.model = StationModel(target.prefix, target.station)
        self.client: aiomqtt.Client | None = None
        self.connected = asyncio.Event()
        self._dirty: set[str] = set()
        self.sent: list[tuple[str, dict[str, Any]]] = []  # commands sent: topic, document

    def compose(self) -> ComposeResult:
        yield Header()
        yield TabbedContent(id="lanes")
        yield Footer()

    def on_mount(self) -> None:
        where = self.target.lane or "every lane"
        self.sub_title = f"station {self.target.station}, {where} — broker {self.target.host}:{self.target.port}"
        self.run_worker(self._follow(), exclusive=True, group="mqtt")
        self.set_interval(REFRESH_S, self._redraw)

    async def _follow(self) -> None:
        """Subscribe and feed the model until the app ends; a lost broker is retried every second."""
        root = self.target.root()
        while True:
            try:
                async with aiomqtt.Client(**self.target.client_kwargs("monitor")) as client:
                    for topic in ("status", "event", "reply/#", "live/#"):
                        await client.subscribe(f"{root}/{topic}", qos=0 if topic == "live/#" else 1)
                    self.client = client
                    self.connected.set()
                    self.sub_title = self.sub_title.replace(" (BROKER UNREACHABLE)", "")
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        lane = self.model.apply(str(message.topic), payload)
                        if lane is not None:
                            self._dirty.add(lane)
            except aiomqtt.MqttError:
                self.client = None
                self.connected.clear()
                if "UNREACHABLE" not in self.sub_title:
                    self.sub_title += " (BROKER UNREACHABLE)"
                await asyncio.sleep(1.0)

    async def _redraw(self) -> None:
        dirty, self._dirty = self._dirty, set()
        tabs = self.query_one("#lanes", TabbedContent)
        for code in sorted(dirty):
            try:
                panel = self.query_one(f"#{pane_id(code)}-panel", LanePanel)
            except Exception:  # the lane's first message: its tab
                panel = LanePanel(code, self.target.station, id=f"{pane_id(code)}-panel")
                await tabs.add_pane(TabPane(f"lane {code}", panel, id=pane_id(code)))
            panel.show(self.model.lanes[code])

    def selected_lane(self) -> LaneModel | None:
        """The lane of the tab shown (the keys act on it)."""
        active = self.query_one("#lanes", TabbedContent).active
        for code, lane in self.model.lanes.items():
            if pane_id(code) == active:
                return lane
        return None

    async def send(self, lane: LaneModel, name: str, document: dict[str, Any]) -> None:
        topic = f"{self.target.root(lane.lane)}/cmd/{name}"
        if self.client is None:
            self.notify("not connected to the broker: command not sent", severity="error")
            return
        await self.client.publish(topic, dumps(document), qos=1)
        self.sent.append((topic, document))
        lane.log.append(f"{name} sent ({document['request_id']})")
        self._dirty.add(lane.lane)

    async def action_daily_check(self) -> None:
        lane = self.selected_lane()
        if lane is None:
            self.notify("no lane yet", severity="warning")
            return
        await self.send(lane, "daily-check", {"schema": "lane-cmd-daily-check/1", "request_id": _request_id()})
        self.notify(f"daily check requested on lane {lane.lane}")

    async def action_abort(self) -> None:
        lane = self.selected_lane()
        if lane is None or lane.inspection_no is None:
            self.notify("no inspection in progress", severity="warning")
            return
        await self.send(lane, "abort", {"schema": "lane-cmd-abort/1", "request_id": _request_id(),
                                        "inspection_no": lane.inspection_no, "reason": "aborted in laned monitor"})
        self.notify(f"abort sent for inspection {lane.inspection_no}", severity="warning")


def _request_id() -> str:
    return f"monitor-{uuid.uuid4().hex[:12]}"


def serve(command: str, where: str, title: str) -> None:
    """Serve `command` (this monitor without --web) to browsers at HOST:PORT, one app per page."""
    from textual_serve.server import Server

    host, _, port = where.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        Server(command, host=host or "localhost", port=int(port), title=title).serve()
