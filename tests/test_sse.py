"""Event streams against a real server on a loopback port: replay, reset, scopes,
slow clients, heartbeats, the board and staff streams, shutdown and resume."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from display.app import create_app
from display.settings import Settings
from tests.conftest import (
    PUSH_SECRET,
    LiveServer,
    case_record,
    free_port,
    push_records,
    read_sse,
    serve_app,
)

Events = list[dict[str, str]]
ROOT = str(Path(__file__).resolve().parent.parent)


def data_events(events: Events) -> Events:
    return [e for e in events if "data" in e]


def case_nos(events: Events) -> list[str]:
    return [json.loads(e["data"])["no"] for e in events if e.get("event") == "case"]


async def logged(live: LiveServer, after: int = 0) -> list[Any]:
    """The event log as the store has it (after the tailer caught up)."""
    store = live.ctx.store
    for _ in range(100):
        if live.ctx.tailer.last_seq == (await store.event_bounds())[1]:
            break
        await asyncio.sleep(0.05)
    return list(await store.events_after(after, 10_000))


def has_case(source_no_part: str) -> Callable[[Events], bool]:
    def until(events: Events) -> bool:
        return any(
            e.get("event") == "case" and source_no_part in e["data"] for e in data_events(events)
        )

    return until


async def test_replay_from_last_event_id_in_scope_in_order_then_live(live: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(client, live.url, [case_record("a1")])
        await push_records(client, live.url, [case_record("a2", town="huangjia")])
        await push_records(client, live.url, [case_record("a3"), case_record("a4")])
        log = await logged(live)
        first = log[0].seq
        want = [
            e.seq for e in log if e.seq > first and e.town in ("longshi", None)
        ]  # a2 is in huangjia
        assert len(want) >= 4

        async def push_later() -> None:
            await asyncio.sleep(0.3)
            await push_records(client, live.url, [case_record("a5")])

        for how in ("header", "query"):
            url = f"{live.url}/events?town=longshi"
            headers = {}
            if how == "header":
                headers["Last-Event-ID"] = str(first)
            else:
                url += f"&last_event_id={first}"
            pusher = asyncio.create_task(push_later()) if how == "header" else None
            events = await read_sse(
                client, url, headers=headers, until=lambda evs: len(data_events(evs)) > len(want)
            )
            if pusher is not None:
                await pusher
            got = [int(e["id"]) for e in data_events(events)]
            assert got[: len(want)] == want  # exactly the missed ones, in order
            assert len(set(got)) == len(got)
            assert all(g > first for g in got)
            assert "retry" in events[0]
            # ... and then live.
            assert got[len(want)] > want[-1]


async def test_a_fresh_client_gets_its_position_and_can_resume_from_it(live: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        await push_records(client, live.url, [case_record("b1")])
        await logged(live)
        events = await read_sse(client, f"{live.url}/events", until=lambda evs: len(evs) >= 2)
        position = int(events[1]["id"])
        assert position == live.ctx.tailer.last_seq
        await push_records(client, live.url, [case_record("b2")])
        again = await read_sse(
            client,
            f"{live.url}/events",
            headers={"Last-Event-ID": str(position)},
            until=has_case("b2"),
        )
        assert all(int(e["id"]) > position for e in data_events(again))


async def test_scopes_filter_towns_and_county_wide_events_reach_every_town(
    live: LiveServer,
) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        start = live.ctx.tailer.last_seq
        await push_records(client, live.url, [case_record("c1", town="huangjia")])
        await push_records(client, live.url, [case_record("c2")])
        from display.domain import Notice

        await live.ctx.store.save_notice(
            Notice(id=0, town=None, title="全市公告", body="县级事项办理公示")
        )
        log = await logged(live, start)
        kinds = {(e.kind, e.town) for e in log}
        assert ("notice", None) in kinds

        def notice_seen(evs: Events) -> bool:
            return any(e.get("event") == "notice" for e in evs)

        headers = {"Last-Event-ID": str(start)}
        shi = await read_sse(
            client, f"{live.url}/events?town=longshi", headers=headers, until=notice_seen
        )
        assert {json.loads(e["data"]).get("town") for e in data_events(shi)} <= {"longshi", None}
        assert case_nos(shi) and "huangjia" not in "".join(e["data"] for e in data_events(shi))
        everything = await read_sse(
            client, f"{live.url}/events", headers=headers, until=notice_seen
        )
        assert [int(e["id"]) for e in data_events(everything)] == [e.seq for e in log]
        bad = await client.get(f"{live.url}/events?town=atlantis")
        assert bad.status_code == 404


async def test_restart_resumes_from_the_log_and_resets_beyond_retention(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with httpx.AsyncClient(timeout=10) as client:
        async with serve_app(create_app(settings)) as (url, _):
            for i in range(4):
                await push_records(client, url, [case_record(f"d{i}")])
            await asyncio.sleep(0.3)
        # A new process: nothing of the above is in its memory; it comes from the log.
        app = create_app(settings)
        async with serve_app(app) as (url, _):
            log = list(await app.state.ctx.store.events_after(0))
            first = log[0].seq
            events = await read_sse(
                client,
                f"{url}/events",
                headers={"Last-Event-ID": str(first)},
                until=lambda evs: len(data_events(evs)) >= len(log) - 1,
            )
            assert [int(e["id"]) for e in data_events(events)] == [e.seq for e in log[1:]]
            assert app.state.ctx.hub.replayed >= len(log) - 1
            # Retention: the oldest events are pruned; a client that last saw one
            # of them cannot be replayed exactly and is told to reload.
            from display.domain import now_utc

            await app.state.ctx.store.prune_events(2, now_utc().replace(year=2000))
            reset = await read_sse(
                client,
                f"{url}/events",
                headers={"Last-Event-ID": str(first)},
                until=lambda evs: any(e.get("event") == "reset" for e in evs),
            )
            r = next(e for e in reset if e.get("event") == "reset")
            assert json.loads(r["data"])["reason"] == "retention"
            assert int(r["id"]) == log[-1].seq
            for bad in ("12abc", str(log[-1].seq + 1000)):
                unknown = await read_sse(
                    client,
                    f"{url}/events",
                    headers={"Last-Event-ID": bad},
                    until=lambda evs: any(e.get("event") == "reset" for e in evs),
                )
                r = next(e for e in unknown if e.get("event") == "reset")
                assert json.loads(r["data"])["reason"] == "unknown_id"


class RawStream:
    """A bare socket client: sees chunk boundaries, HTTP/1.0, a client that stops reading."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, base: str, path: str, *, version: str = "1.1", headers: str = ""
    ) -> AsyncIterator[RawStream]:
        u = urlsplit(base)
        reader, writer = await asyncio.open_connection(u.hostname, u.port)
        writer.write(f"GET {path} HTTP/{version}\r\nHost: x\r\n{headers}\r\n".encode())
        stream = cls(reader, writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            yield stream
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def chunks(self, until: Callable[[list[bytes]], bool]) -> list[bytes]:
        out: list[bytes] = []
        while not until(out):
            size = int((await self.reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                break
            out.append((await self.reader.readexactly(size + 2))[:-2])
        return out

    async def until_text(self, needle: bytes, count: int = 1) -> bytes:
        data = b""
        while data.count(needle) < count:
            more = await self.reader.read(65536)
            if not more:
                break
            data += more
        return data


async def test_one_transaction_arrives_in_one_piece(live: LiveServer) -> None:
    async with (
        httpx.AsyncClient(timeout=10) as client,
        RawStream.open(live.url, "/events?town=longshi") as raw,
    ):
        await raw.chunks(lambda cs: len(cs) >= 1)  # the head
        await push_records(client, live.url, [case_record(f"e{i}") for i in range(5)])
        got = await asyncio.wait_for(raw.chunks(lambda cs: len(cs) >= 1), 10)
        # Five cases and the town's figures, all in the first chunk after the head.
        assert got[0].count(b"event: case") == 5
        assert got[0].count(b"event: stats") >= 1


async def test_http10_clients_take_the_portable_path_with_replay_and_heartbeats(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(sse={"heartbeat": 0.2, "poll_interval": 0.2}))
    async with serve_app(app) as (url, _), httpx.AsyncClient(timeout=10) as client:
        await push_records(client, url, [case_record("f1")])
        await push_records(client, url, [case_record("f2")])
        await asyncio.sleep(0.3)
        log = list(await app.state.ctx.store.events_after(0))
        async with RawStream.open(
            url, "/events", version="1.0", headers=f"Last-Event-ID: {log[0].seq}\r\n"
        ) as raw:
            data = await asyncio.wait_for(raw.until_text(b": hb", 2), 10)
            ids = [int(line[4:]) for line in data.split(b"\r\n") if line.startswith(b"id: ")]
            assert ids == [e.seq for e in log[1:]]
            assert b"transfer-encoding" not in data  # close-delimited, not chunked
            await push_records(client, url, [case_record("f3")])
            more = await asyncio.wait_for(raw.until_text(b"event: case"), 10)
            assert b"event: case" in more
        assert app.state.ctx.hub.heartbeats >= 2


async def test_heartbeats_reach_idle_direct_subscribers(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(sse={"heartbeat": 0.2}))
    async with serve_app(app) as (url, _), httpx.AsyncClient(timeout=10) as client:
        events = await read_sse(
            client,
            f"{url}/events",
            until=lambda evs: sum(1 for e in evs if e.get("_comment") == ": hb") >= 2,
        )
        assert not data_events(events)


async def test_a_client_that_stops_reading_is_dropped_and_others_carry_on(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(sse={"heartbeat": 5.0, "send_buffer": 65536}))
    ctx = app.state.ctx
    async with serve_app(app) as (url, _), httpx.AsyncClient(timeout=30) as client:
        u = urlsplit(url)
        stuck = socket.socket()
        try:
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            stuck.connect((u.hostname, u.port))
            stuck.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(100):
                if ctx.hub.count() == 1:
                    break
                await asyncio.sleep(0.02)
            summary = "反映银杏村3组道路破损，雨天积水，" * 60

            async def flood() -> None:
                for i in range(25):
                    recs = [case_record(f"g{i}-{j}", summary=summary) for j in range(10)]
                    await push_records(client, url, recs)
                    if ctx.hub.dropped:
                        break
                await push_records(client, url, [case_record("g-last")])

            reader = asyncio.create_task(
                read_sse(client, f"{url}/events", until=has_case("g-last"), limit=60)
            )
            await asyncio.sleep(0.2)
            await flood()
            events = await reader
            assert ctx.hub.dropped >= 1
            assert has_case("g-last")(events)
            # The stuck connection was cut: after whatever the kernel held, it ends.
            stuck.setblocking(False)
            ended = False
            for _ in range(200):
                try:
                    if stuck.recv(1 << 20) == b"":
                        ended = True
                        break
                except BlockingIOError:
                    await asyncio.sleep(0.02)
                except ConnectionResetError:
                    ended = True
                    break
            assert ended
        finally:
            stuck.close()


async def test_board_stream_sends_the_frame_then_each_change_and_marks_the_board_seen(
    live: LiveServer,
) -> None:
    ctx = live.ctx
    async with httpx.AsyncClient(timeout=20) as client:

        def frames(evs: Events) -> Events:
            return [e for e in evs if e.get("event") == "frame"]

        async def change_later() -> None:
            await asyncio.sleep(0.5)
            await push_records(client, live.url, [case_record("led1", summary="路灯不亮")])

        changer = asyncio.create_task(change_later())
        events = await read_sse(
            client, f"{live.url}/led/longshi-gate/events", until=lambda evs: len(frames(evs)) >= 2
        )
        await changer
        first, second = frames(events)[:2]
        doc = json.loads(first["data"])
        assert first["id"] == doc["version"] != second["id"]
        assert doc["board"] == "longshi-gate" and doc["pages"]
        assert "mono1" in doc["pages"][0]  # 128x32 mono: the bits come inline
        assert "longshi-gate" in ctx.last_seen
        boards = (await client.get(f"{live.url}/api/v1/boards")).json()["boards"]
        gate = next(b for b in boards if b["id"] == "longshi-gate")
        assert gate["online"] is True and gate["last_seen"]
        # Reconnecting with the version it has, a board is not sent it again.
        again = await read_sse(
            client,
            f"{live.url}/led/longshi-gate/events",
            headers={"Last-Event-ID": second["id"]},
            until=lambda evs: len(evs) >= 1,
        )
        assert not frames(again)
        for path in ("/led/nowhere/events", "/led/longshi-hall/events"):
            assert (await client.get(f"{live.url}{path}")).status_code == 404


async def test_staff_stream_needs_the_auth_hook(live: LiveServer) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        # The app installs the staff accounts' guard: anonymous clients go to the login.
        r = await client.get(f"{live.url}/admin/events")
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")
        del live.ctx.extra["staff_auth"]
        assert (await client.get(f"{live.url}/admin/events")).status_code == 403

        async def refuse(request: Request) -> Response | None:
            return JSONResponse({"error": "login"}, status_code=401)

        live.ctx.extra["staff_auth"] = refuse
        assert (await client.get(f"{live.url}/admin/events")).status_code == 401

        async def allow(request: Request) -> Response | None:
            return None

        live.ctx.extra["staff_auth"] = allow
        start = live.ctx.tailer.last_seq
        await push_records(client, live.url, [case_record("s1", town="huangjia")])
        events = await read_sse(
            client,
            f"{live.url}/admin/events",
            headers={"Last-Event-ID": str(start)},
            until=has_case("s1"),
        )
        assert data_events(events)
        assert (await client.post(f"{live.url}/events")).status_code == 405
        head = await client.head(f"{live.url}/events")
        assert head.status_code == 200
        assert head.headers["content-type"].startswith("text/event-stream")


def _config(tmp: Path) -> Path:
    cfg = tmp / "yizheng.toml"
    cfg.write_text(
        f'secret_key = "test-secret-key-not-for-production"\n'
        f'[database]\nurl = "sqlite:///{tmp / "yizheng.db"}"\n'
        "[sse]\nheartbeat = 1.0\npoll_interval = 0.2\nretry_ms = 1500\n"
        '[[towns]]\nslug = "longshi"\nname = "龙市镇"\n'
        f'[[feeds]]\nname = "push"\nkind = "webhook"\nsecret = "{PUSH_SECRET}"\n',
        encoding="utf-8",
    )
    return cfg


async def _start(cfg: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "display.cli", "--config", str(cfg), "serve",
        "--host", "127.0.0.1", "--port", str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT, env={**os.environ},
    )  # fmt: skip
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code < 500:
                    return proc
            await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError("yizheng serve did not start")


async def test_sigterm_tells_clients_to_reconnect_and_they_resume_after_restart(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = await _start(cfg, port)
    try:
        async with httpx.AsyncClient(timeout=20) as client:
            await push_records(client, url, [case_record("t1")])
            seen: Events = []

            def record(evs: Events) -> bool:
                seen[:] = evs
                return False  # to the end of the stream: the server ends it on SIGTERM

            async def listen() -> None:
                await read_sse(client, f"{url}/events", until=record)

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.5)
            await push_records(client, url, [case_record("t2")])
            for _ in range(200):
                if has_case("t2")(seen) or listener.done():
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            # Not a timing assertion: the stream and the process must end by themselves.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(listener, 15)
            assert listener.done() and listener.exception() is None
            await asyncio.wait_for(proc.wait(), 15)
            assert proc.returncode == 0  # a requested stop is a clean exit (systemd)
            assert any("retry" in e for e in seen[1:])  # told to come back
            last = max(int(e["id"]) for e in data_events(seen))
            assert has_case("t2")(seen)

            proc = await _start(cfg, port)
            await push_records(client, url, [case_record("t3")])
            resumed = await read_sse(
                client, f"{url}/events", headers={"Last-Event-ID": str(last)},
                until=has_case("t3"),
            )  # fmt: skip
            ids = [int(e["id"]) for e in data_events(resumed)]
            assert ids and ids[0] == last + 1 and ids == sorted(set(ids))
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("header", ["", "Last-Event-ID: 0\r\n"])
async def test_streams_end_cleanly_when_the_server_stops(
    make_settings: Callable[..., Settings], header: str
) -> None:
    app = create_app(make_settings())
    async with serve_app(app) as (url, server):
        async with RawStream.open(url, "/events", headers=header) as raw:
            await raw.chunks(lambda cs: len(cs) >= 1)
            assert app.state.ctx.hub.count() == 1
            server.should_exit = True
            rest = await asyncio.wait_for(raw.until_text(b"0\r\n\r\n"), 15)
            assert b"retry:" in rest
