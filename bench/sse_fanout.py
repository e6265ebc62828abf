"""Fan-out benchmark for the live push path (issue 5), against the floor.

    .venv/bin/python bench/sse_fanout.py                 # N = 1,000 and 10,000
    .venv/bin/python bench/sse_fanout.py --n 10000 --events 10
    .venv/bin/python bench/sse_fanout.py --processes 2   # two servers, one SQLite file

It starts the real service (`yizheng serve`, a temporary config and database)
in a subprocess, opens N subscribers from a separate client process on
loopback (raw asyncio sockets), and triggers case changes through the signed
push endpoint. In the same run it measures the floor: a bare asyncio Protocol
server, also a subprocess, writing one pre-encoded chunk of the same size to N
open transports, with the same client. For each N it prints:

- connect: time until all N subscribers have their stream's first bytes;
- delivery: time from the push until every subscriber has the event, p50 and
  p99 over the events (and the p99 of single deliveries);
- server CPU per event (all threads, /proc/PID/task/*/schedstat) and its ratio
  to the floor's;
- resident memory per idle subscriber (VmRSS before and after connecting).

Then a reconnect storm: 1,000 subscribers in several scopes drop their
connection (RST) at random moments while events flow, and reconnect with
Last-Event-ID (with --processes 2, to the other process); at the end every one
must hold every event of its scope exactly once. It prints the counts of gaps,
duplicates, out-of-scope events and resets (all must be 0). Last, the time from
SIGTERM to the server's exit with N subscribers connected.

Loopback only. On a shared 2-core machine compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and bench/feeds.py
# would shadow the `feeds` package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
SECRET = "bench-push-secret-0123456789"  # noqa: S105 - a throwaway test feed
TOWNS = [
    ("longshi", "龙市镇"),
    ("huangjia", "黄家镇"),
    ("shuangfeng", "双凤镇"),
    ("xiangshi", "响石镇"),
    ("shinian", "石碾镇"),
]
STORM_PATHS = [
    "/events",
    "/events?town=longshi",
    "/events?town=huangjia",
    "/events?town=shuangfeng",
]


def raise_nofile() -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rst_close(transport: asyncio.Transport) -> None:
    """Close with a reset: no TIME_WAIT, so ten thousand ports come back at once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# --- the client (a subprocess: `--client`) -------------------------------------------


class Logical:
    """One subscriber across its reconnections."""

    __slots__ = (
        "conn",
        "group",
        "history",
        "ids",
        "last_id",
        "path",
        "reconnecting",
        "start_id",
        "target_ix",
    )

    def __init__(self, group: str, path: str, target_ix: int) -> None:
        self.group = group
        self.path = path
        self.target_ix = target_ix
        self.last_id: int | None = None
        self.start_id: int | None = None
        self.ids: list[int] = []
        self.conn: Sub | None = None
        self.reconnecting = False
        #: Last-Event-ID sent at each reconnection (for the report of a gap).
        self.history: list[int | None] = []


class Sub(asyncio.Protocol):
    """A raw SSE subscriber: HTTP/1.1 head, chunked body, SSE blocks; records ids."""

    def __init__(self, client: Client, logical: Logical, host: str) -> None:
        self.client = client
        self.logical = logical
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.head_done = False
        self.raw = b""
        self.need = 0
        self.skip = 0
        self.sse = b""
        self.ready = False
        self.count = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        lg = self.logical
        extra = f"Last-Event-ID: {lg.last_id}\r\n" if lg.last_id is not None else ""
        transport.write(
            f"GET {lg.path} HTTP/1.1\r\nHost: {self.host}\r\nAccept: text/event-stream\r\n"
            f"{extra}\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client.on_lost(self)

    def data_received(self, data: bytes) -> None:
        if not self.head_done:
            self.head += data
            i = self.head.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.head[:i])
            data = bytes(self.head[i + 4 :])
            self.head = bytearray()
            if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
                self.client.errors += 1
                if self.transport is not None:
                    rst_close(self.transport)
                return
            self.head_done = True
        buf = self.raw + data if self.raw else data
        pos = 0
        end = len(buf)
        out: list[bytes] = []
        while pos < end:
            if self.need:
                take = min(self.need, end - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.need -= take
                if not self.need:
                    self.skip = 2
                continue
            if self.skip:
                s = min(self.skip, end - pos)
                pos += s
                self.skip -= s
                continue
            j = buf.find(b"\r\n", pos)
            if j < 0:
                break
            size = int(buf[pos:j], 16)
            pos = j + 2
            if size == 0:
                pos = end
                break
            self.need = size
        self.raw = buf[pos:]
        if out:
            self.client.bytes_in += sum(len(o) for o in out)
            self._blocks(b"".join(out))

    def _blocks(self, text: bytes) -> None:
        buf = self.sse + text if self.sse else text
        parts = buf.split(b"\r\n\r\n")
        self.sse = parts.pop()
        lg = self.logical
        client = self.client
        for block in parts:
            eid: int | None = None
            kind = b""
            data = False
            payload = b""
            for line in block.split(b"\r\n"):
                if line.startswith(b"id: "):
                    eid = int(line[4:])
                elif line.startswith(b"event: "):
                    kind = line[7:]
                elif line.startswith(b"data"):
                    data = True
                    payload = line
            if eid is not None:
                lg.last_id = eid
                if lg.start_id is None:
                    lg.start_id = eid if not data else eid - 1
            if data:
                if lg.group != "main":
                    lg.ids.append(eid if eid is not None else -1)
                if kind == b"reset":
                    client.resets += 1
                    if client.resets < 5:
                        print(
                            f"reset on {lg.path} after {lg.ids[-6:]}: {payload!r}", file=sys.stderr
                        )
                elif kind == b"case":
                    self.count += 1
                    if self.count == client.target and lg.group == "main":
                        client.on_target()
        if not self.ready:
            self.ready = True
            client.on_ready(self)


@dataclass
class Client:
    targets: list[tuple[str, int]] = field(default_factory=list)
    groups: dict[str, list[Logical]] = field(default_factory=dict)
    target: int = 0
    arrivals: list[float] = field(default_factory=list)
    waiting: asyncio.Future[None] | None = None
    need_ready: int = 0
    ready_fut: asyncio.Future[None] | None = None
    errors: int = 0
    resets: int = 0
    bytes_in: int = 0
    storm_on: bool = False
    reconnects: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def on_target(self) -> None:
        self.arrivals.append(time.monotonic())
        if self.waiting is not None and len(self.arrivals) >= len(self.groups["main"]):
            if not self.waiting.done():
                self.waiting.set_result(None)

    def on_ready(self, sub: Sub) -> None:
        sub.logical.reconnecting = False
        self.need_ready -= 1
        if self.need_ready <= 0 and self.ready_fut is not None and not self.ready_fut.done():
            self.ready_fut.set_result(None)

    def on_lost(self, sub: Sub) -> None:
        lg = sub.logical
        if lg.conn is sub:
            lg.conn = None
        if self.storm_on and lg.group == "storm" and not lg.reconnecting:
            self.reconnect_soon(lg)

    async def open(self, lg: Logical, sem: asyncio.Semaphore) -> None:
        host, port = self.targets[lg.target_ix % len(self.targets)]
        loop = asyncio.get_running_loop()
        async with sem:
            for attempt in range(200 if lg.group == "storm" else 20):
                try:
                    _, sub = await loop.create_connection(
                        lambda: Sub(self, lg, f"{host}:{port}"), host, port
                    )
                    lg.conn = sub
                    return
                except OSError:
                    await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)))
        self.errors += 1
        self.need_ready -= 1

    async def connect(self, group: str, paths: Sequence[str], n: int) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        subs = [Logical(group, paths[i % len(paths)], i) for i in range(n)]
        self.groups[group] = subs
        self.need_ready = n
        self.ready_fut = loop.create_future()
        sem = asyncio.Semaphore(512)
        t0 = time.monotonic()
        tasks = [asyncio.ensure_future(self.open(lg, sem)) for lg in subs]
        await asyncio.gather(*tasks)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready_fut, 60)
        return {
            "seconds": time.monotonic() - t0,
            "ready": sum(1 for lg in subs if lg.conn is not None and lg.conn.ready),
            "errors": self.errors,
        }

    async def expect(self, k: int, within: float) -> dict[str, Any]:
        self.target = k
        self.arrivals = []
        main = self.groups["main"]
        # Subscribers that already counted k (cannot happen between pushes) count too.
        for lg in main:
            if lg.conn is not None and lg.conn.count >= k:
                self.arrivals.append(time.monotonic())
        self.waiting = asyncio.get_running_loop().create_future()
        if len(self.arrivals) >= len(main):
            self.waiting.set_result(None)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.waiting, within)
        self.waiting = None
        return {"arrivals": self.arrivals, "n": len(main)}

    def close(self, group: str) -> None:
        for lg in self.groups.pop(group, []):
            if lg.conn is not None and lg.conn.transport is not None:
                rst_close(lg.conn.transport)

    def reconnect_soon(self, lg: Logical) -> None:
        lg.reconnecting = True
        self.reconnects += 1
        lg.target_ix += 1  # with several servers: the other one
        loop = asyncio.get_running_loop()
        loop.call_later(random.uniform(0.0, 0.3), self._reopen, lg)

    def _reopen(self, lg: Logical) -> None:
        lg.history.append(lg.last_id)
        self.need_ready += 1
        task = asyncio.ensure_future(self.open(lg, asyncio.Semaphore(1)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def storm(self, duration: float, drops: int) -> None:
        self.storm_on = True
        loop = asyncio.get_running_loop()
        for lg in self.groups["storm"]:
            for _ in range(drops):
                loop.call_later(random.uniform(0.05, duration), self._drop, lg)

    def _drop(self, lg: Logical) -> None:
        sub = lg.conn
        if sub is None or lg.reconnecting or sub.transport is None:
            return
        lg.reconnecting = True
        lg.conn = None
        rst_close(sub.transport)
        self.reconnect_soon(lg)

    async def storm_check(self, within: float) -> dict[str, Any]:
        refs = {lg.path: lg for lg in self.groups["ref"]}
        storm = self.groups["storm"]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            behind = [
                lg
                for lg in storm
                if lg.reconnecting or lg.conn is None or lg.last_id != refs[lg.path].last_id
            ]
            if not behind:
                break
            await asyncio.sleep(0.1)
        self.storm_on = False
        gaps = dups = extra = disorder = late = 0
        for lg in storm:
            ref = refs[lg.path]
            start = max(lg.start_id or 0, ref.start_id or 0)
            expected = {i for i in ref.ids if i > start}
            got = [i for i in lg.ids if i > start]
            seen = set(got)
            missing = expected - seen
            if lg.last_id != ref.last_id:
                late += 1
            if missing and gaps < 50:
                print(
                    f"gap on {lg.path}: missing {sorted(missing)}; start {start}, got {got}, "
                    f"reconnected after {lg.history}",
                    file=sys.stderr,
                )
            gaps += len(missing)
            dups += len(got) - len(seen)
            extra += len(seen - expected)
            disorder += sum(1 for a, b in itertools.pairwise(got) if b <= a)
        return {
            "gaps": gaps,
            "duplicates": dups,
            "out_of_scope": extra,
            "disorder": disorder,
            "behind": late,
            "resets": self.resets,
            "reconnects": self.reconnects,
            "events_per_ref": {p: len(r.ids) for p, r in refs.items()},
            "subscribers": len(storm),
        }


async def client_main() -> None:
    raise_nofile()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    client = Client()

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            return
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "targets":
            client.targets = [(h, p) for h, p in cmd["targets"]]
            reply({})
        elif op == "connect":
            reply(await client.connect(cmd["group"], cmd["paths"], cmd["n"]))
        elif op == "expect":
            reply(await client.expect(cmd["k"], cmd["within"]))
        elif op == "close":
            client.close(cmd["group"])
            await asyncio.sleep(0.3)
            reply({})
        elif op == "bytes":
            reply({"bytes": client.bytes_in})
        elif op == "storm":
            client.storm(cmd["duration"], cmd["drops"])
            reply({})
        elif op == "storm_check":
            reply(await client.storm_check(cmd["within"]))
        elif op == "quit":
            reply({})
            return


# --- the floor server (a subprocess: `--floor PORT`) ---------------------------------


class FloorConn(asyncio.Protocol):
    def __init__(self, conns: set[asyncio.Transport]) -> None:
        self.conns = conns
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport in self.conns:
            return
        self.buf += data
        if b"\r\n\r\n" in self.buf:
            first = b": floor\r\n\r\nid: 0\r\n\r\n"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + b"%x\r\n%b\r\n" % (len(first), first)
            )
            self.conns.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.conns.discard(self.transport)


def floor_payload(size: int, seq: int) -> bytes:
    """A case and a stats event, `size` bytes of SSE in all, like one push."""
    case = b"id: %d\r\nevent: case\r\ndata: " % seq
    stats = b"id: %d\r\nevent: stats\r\ndata: {}\r\n\r\n" % (seq + 1)
    pad = max(2, size - len(case) - len(stats) - 4)
    return case + b"{" + b"x" * (pad - 2) + b"}\r\n\r\n" + stats


async def floor_main(port: int) -> None:
    raise_nofile()
    loop = asyncio.get_running_loop()
    conns: set[asyncio.Transport] = set()
    server = await loop.create_server(lambda: FloorConn(conns), "127.0.0.1", port, backlog=2048)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while True:
        line = await reader.readline()
        if not line:
            break
        _, size, seq = line.split()
        body = floor_payload(int(size), int(seq))
        framed = b"%x\r\n%b\r\n" % (len(body), body)
        # The floor: one pre-encoded write per open transport.
        for t in conns:
            t.write(framed)
        print("done", flush=True)
    server.close()


# --- the orchestrator --------------------------------------------------------------


def cpu_ns(pid: int) -> int:
    """On-CPU time of every thread of `pid`, nanoseconds."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ClientProc:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            PYTHON,
            __file__,
            "--client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )

    async def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("client process ended")
        out: dict[str, Any] = json.loads(line)
        return out

    def cpu(self) -> int:
        return cpu_ns(self.proc.pid) if self.proc is not None else 0

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.call(op="quit"), 5)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


def write_config(tmp: Path, poll: float, database_url: str | None = None) -> Path:
    towns = "\n".join(f'[[towns]]\nslug = "{s}"\nname = "{n}"\n' for s, n in TOWNS)
    cfg = tmp / "yizheng.toml"
    url = database_url or f"sqlite:///{tmp / 'yizheng.db'}"
    cfg.write_text(
        f'secret_key = "bench-secret-key-not-for-production"\n'
        f'[database]\nurl = "{url}"\n'
        f"[sse]\nheartbeat = 15.0\npoll_interval = {poll}\n\n{towns}\n"
        f'[[feeds]]\nname = "push"\nkind = "webhook"\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    return cfg


@dataclass
class Servers:
    procs: list[asyncio.subprocess.Process]
    ports: list[int]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def cpu(self) -> int:
        return sum(cpu_ns(pid) for pid in self.pids)

    def rss(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids)


async def start_servers(
    tmp: Path, processes: int, poll: float, database_url: str | None = None
) -> Servers:
    cfg = write_config(tmp, poll, database_url)
    procs = []
    ports = []
    for i in range(processes):
        port = free_port()
        env = {**os.environ, "YIZHENG_RUN_FEEDS": "true" if i == 0 else "false"}
        log = (tmp / f"server{i}.log").open("ab")
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            "display.cli",
            "--config",
            str(cfg),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            stdout=log,
            stderr=log,
            cwd=str(ROOT),
            env=env,
        )
        log.close()
        procs.append(proc)
        ports.append(port)
    import httpx

    async with httpx.AsyncClient() as http:
        for port in ports:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code < 500:
                        break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"server on {port} did not start; see {tmp}")
    return Servers(procs, ports)


async def stop_servers(servers: Servers) -> float:
    """SIGTERM every server; seconds until the last one exited."""
    t0 = time.monotonic()
    for p in servers.procs:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
    for p in servers.procs:
        try:
            await asyncio.wait_for(p.wait(), 20)
        except TimeoutError:
            p.kill()
            await p.wait()
    return time.monotonic() - t0


class Pusher:
    def __init__(self, servers: Servers, run: str) -> None:
        import httpx

        self.http = httpx.AsyncClient(timeout=30)
        self.urls = [f"http://127.0.0.1:{p}" for p in servers.ports]
        self.run = run
        self.n = 0
        self.ts = int(time.time())

    async def push(self, town: str = "longshi") -> None:
        from feeds.webhook import signed_headers

        self.n += 1
        rec = {
            "source_id": f"{self.run}-{self.n}",
            "town": town,
            "village": "银杏村",
            "kind": "general",
            "category": "道路交通",
            "channel": "12345热线",
            "summary": f"反映银杏村{self.n}组道路破损，雨天积水",
            "department": "镇规划建设办",
            "status": "registered",
            "received_at": "2026-11-20T09:30:00+08:00",
        }
        body = json.dumps({"records": [rec]}, ensure_ascii=False).encode()
        ts = max(int(time.time()), self.ts)
        url = self.urls[self.n % len(self.urls)]
        r = await self.http.post(
            f"{url}/feeds/push/push",
            content=body,
            headers=signed_headers(SECRET, ts, body),
        )
        r.raise_for_status()

    async def aclose(self) -> None:
        await self.http.aclose()


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Figures:
    name: str
    n: int
    connect: float
    all_have: list[float]
    single: list[float]
    cpu_per_event: list[float]
    kb_per_sub: float
    bytes_per_event: float = 0.0
    errors: int = 0
    #: CPU microseconds per connection while connecting: server, client.
    connect_cpu: float = 0.0
    client_connect_cpu: float = 0.0


async def measure(
    name: str,
    client: ClientProc,
    n: int,
    events: int,
    paths: Sequence[str],
    trigger: Any,
    cpu: Any,
    rss: Any,
) -> Figures:
    await asyncio.sleep(0.5)
    rss0 = rss()
    cc0, sc0 = client.cpu(), cpu()
    c = await client.call(op="connect", group="main", paths=list(paths), n=n)
    cc1, sc1 = client.cpu(), cpu()
    await asyncio.sleep(1.0)
    rss1 = rss()
    all_have: list[float] = []
    single: list[float] = []
    cpus: list[float] = []
    b1 = (await client.call(op="bytes"))["bytes"]
    for k in range(1, events + 1):
        assert client.proc is not None and client.proc.stdin
        client.proc.stdin.write(json.dumps({"op": "expect", "k": k, "within": 30}).encode() + b"\n")
        await client.proc.stdin.drain()
        await asyncio.sleep(0.05)  # the client is listening
        c0 = cpu()
        t0 = time.monotonic()
        await trigger(k)
        assert client.proc.stdout
        res = json.loads(await client.proc.stdout.readline())
        c1 = cpu()
        arr = res["arrivals"]
        if len(arr) < res["n"]:
            print(f"  ! {name}: only {len(arr)}/{res['n']} subscribers got event {k}")
        if arr:
            all_have.append(max(arr) - t0)
            single += [a - t0 for a in arr]
        cpus.append((c1 - c0) / 1e6)
        await asyncio.sleep(0.2)
    b2 = (await client.call(op="bytes"))["bytes"]
    await client.call(op="close", group="main")
    return Figures(
        name,
        n,
        c["seconds"],
        all_have,
        single,
        cpus,
        (rss1 - rss0) / max(1, n),
        (b2 - b1) / max(1, n * events),
        c["errors"],
        (sc1 - sc0) / 1e3 / max(1, n),
        (cc1 - cc0) / 1e3 / max(1, n),
    )


async def run_real(
    args: argparse.Namespace, n: int, client: ClientProc, storm: bool
) -> tuple[Figures, dict[str, Any] | None, float]:
    tmp = Path(tempfile.mkdtemp(prefix="yizheng-bench-"))
    try:
        async with database(args.database_url) as url:
            return await _run_real(args, n, client, storm, tmp, url)
    finally:
        if args.keep:
            print(f"  (server logs and database kept in {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.asynccontextmanager
async def database(base: str | None) -> AsyncIterator[str | None]:
    """None (a SQLite file per run), or a fresh PostgreSQL schema dropped afterwards."""
    if base is None or not base.startswith(("postgresql://", "postgres://")):
        yield base
        return
    import asyncpg

    schema = f"bench_{random.randrange(16**12):012x}"
    admin = await asyncpg.connect(base, timeout=10)
    try:
        await admin.execute(f"CREATE SCHEMA {schema}")
        yield f"{base}{'&' if '?' in base else '?'}search_path={schema}"
    finally:
        with contextlib.suppress(Exception):
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await admin.close()


async def _run_real(
    args: argparse.Namespace,
    n: int,
    client: ClientProc,
    storm: bool,
    tmp: Path,
    database_url: str | None,
) -> tuple[Figures, dict[str, Any] | None, float]:
    servers = await start_servers(tmp, args.processes, args.poll, database_url)
    pusher = Pusher(servers, f"n{n}-{random.randrange(10**6)}")
    try:
        await client.call(op="targets", targets=[["127.0.0.1", p] for p in servers.ports])
        for _ in range(3):  # warm up ingest, the tailer and the stream path
            await pusher.push()
        await client.call(op="connect", group="warm", paths=["/events"], n=20)
        await client.call(op="close", group="warm")

        async def trigger(k: int) -> None:
            await pusher.push("longshi")

        fig = await measure(
            "yizheng",
            client,
            n,
            args.events,
            ["/events", "/events?town=longshi"],
            trigger,
            servers.cpu,
            servers.rss,
        )
        storm_result = None
        if storm:
            storm_result = await run_storm(args, client, pusher)
        # Shutdown with subscribers connected.
        await client.call(op="connect", group="main", paths=["/events"], n=n)
        down = await stop_servers(servers)
        await client.call(op="close", group="main")
        return fig, storm_result, down
    finally:
        await pusher.aclose()
        for p in servers.procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def run_storm(args: argparse.Namespace, client: ClientProc, pusher: Pusher) -> dict[str, Any]:
    await client.call(op="connect", group="ref", paths=STORM_PATHS, n=len(STORM_PATHS))
    await client.call(op="connect", group="storm", paths=STORM_PATHS, n=args.storm)
    await client.call(op="storm", duration=args.storm_seconds, drops=2)
    towns = [s for s, _ in TOWNS[:4]]
    t_end = time.monotonic() + args.storm_seconds + 0.5
    pushes = 0
    while time.monotonic() < t_end:
        await pusher.push(random.choice(towns))
        pushes += 1
        await asyncio.sleep(0.05)
    res = await client.call(op="storm_check", within=30)
    res["pushes"] = pushes
    await client.call(op="close", group="storm")
    await client.call(op="close", group="ref")
    return res


async def run_floor(args: argparse.Namespace, n: int, client: ClientProc, size: int) -> Figures:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        __file__,
        "--floor",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    try:
        await proc.stdout.readline()
        await client.call(op="targets", targets=[["127.0.0.1", port]])
        seq = [1000]

        async def trigger(k: int) -> None:
            assert proc.stdin and proc.stdout
            seq[0] += 2
            proc.stdin.write(f"push {size} {seq[0]}\n".encode())
            await proc.stdin.drain()
            await proc.stdout.readline()

        return await measure(
            "floor",
            client,
            n,
            args.events,
            ["/"],
            trigger,
            lambda: cpu_ns(proc.pid),
            lambda: rss_kb(proc.pid),
        )
    finally:
        proc.kill()
        await proc.wait()


def report(real: Figures, floor: Figures, down: float) -> None:
    def row(f: Figures) -> str:
        cpu = statistics.median(f.cpu_per_event)
        return (
            f"  {f.name:8} connect {f.connect:5.2f} s ({f.connect_cpu:4.0f} us CPU/conn, "
            f"client {f.client_connect_cpu:4.0f}) | all have it p50 "
            f"{pct(f.all_have, 0.5) * 1000:6.0f} ms p99 {pct(f.all_have, 0.99) * 1000:6.0f} ms"
            f" | single p99 {pct(f.single, 0.99) * 1000:5.0f} ms | CPU/event {cpu:7.1f} ms"
            f" | {f.kb_per_sub:5.1f} KB/subscriber"
        )

    ratio = statistics.median(real.cpu_per_event) / max(
        1e-9, statistics.median(floor.cpu_per_event)
    )
    print(
        f"N = {real.n:,} ({len(real.all_have)} events, {real.bytes_per_event:.0f} bytes of "
        f"SSE per subscriber per event)"
    )
    print(row(real))
    print(row(floor))
    print(
        f"  CPU/event ratio to the floor: {ratio:.2f}x (target <= 2x at 10,000) | "
        f"SIGTERM to exit with {real.n:,} connected: {down:.2f} s"
    )
    if real.errors or floor.errors:
        print(f"  ! connection errors: yizheng {real.errors}, floor {floor.errors}")


async def orchestrate(args: argparse.Namespace) -> None:
    limit = raise_nofile()
    need = max(args.n) + args.storm + 100
    if limit < need:
        print(f"RLIMIT_NOFILE is {limit}; {need} needed", file=sys.stderr)
    print(
        f"sse_fanout: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{args.processes} server process(es), loopback"
    )
    client = ClientProc()
    await client.start()
    try:
        for i, n in enumerate(args.n):
            storm = args.storm > 0 and i == 0
            real, storm_result, down = await run_real(args, n, client, storm)
            floor = await run_floor(args, n, client, max(64, round(real.bytes_per_event)))
            report(real, floor, down)
            if storm_result is not None:
                s = storm_result
                print(
                    f"Reconnect storm: {s['subscribers']:,} subscribers, {s['reconnects']:,} "
                    f"reconnects, {s['pushes']} pushes: gaps {s['gaps']}, duplicates "
                    f"{s['duplicates']}, out of scope {s['out_of_scope']}, out of order "
                    f"{s['disorder']}, resets {s['resets']}"
                    + (f", NOT CAUGHT UP {s['behind']}" if s["behind"] else "")
                )
    finally:
        await client.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--n", type=int, action="append", help="subscribers (repeatable); default 1000 and 10000"
    )
    p.add_argument("--events", type=int, default=8, help="events per N (at least 5)")
    p.add_argument("--storm", type=int, default=1000, help="reconnect-storm subscribers (0: off)")
    p.add_argument("--storm-seconds", type=float, default=4.0)
    p.add_argument("--processes", type=int, default=1, choices=(1, 2))
    p.add_argument("--poll", type=float, default=0.25, help="sse.poll_interval of the servers")
    p.add_argument(
        "--database-url",
        help="postgresql://… to run the servers on PostgreSQL (a fresh schema, dropped "
        "afterwards); default: a temporary SQLite file",
    )
    p.add_argument("--keep", action="store_true", help="keep the servers' logs and database")
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--floor", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        asyncio.run(client_main())
        return 0
    if args.floor:
        asyncio.run(floor_main(args.floor))
        return 0
    args.n = args.n or [1000, 10000]
    args.events = max(5, args.events)
    asyncio.run(orchestrate(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
