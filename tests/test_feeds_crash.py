"""kill -9 in the middle of pulling loses and doubles nothing.

The feed process is killed while the case system keeps changing; a second run
must bring the database exactly in line with the source, and no change may
have been announced twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

from feeds.simulator import Simulator
from tests.conftest import serve_app

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, sim_url: str) -> Path:
    towns = [("longshi", "龙市镇"), ("huangjia", "黄家镇"), ("shuangfeng", "双凤镇")]
    lines = [
        'secret_key = "test-secret-key-not-for-production"',
        "[database]",
        f'url = "sqlite:///{tmp_path / "feed.db"}"',
    ]
    for slug, name in towns:
        lines += ["[[towns]]", f'slug = "{slug}"', f'name = "{name}"']
    lines += [
        "[[feeds]]",
        'name = "hotline"',
        'kind = "open311"',
        f'url = "{sim_url}/open311/v2"',
        "interval = 0.1",
    ]
    path = tmp_path / "yizheng.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "display.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def test_kill_during_pulls_loses_and_doubles_nothing(tmp_path: Path) -> None:
    sim = Simulator(
        [("longshi", "龙市镇"), ("huangjia", "黄家镇"), ("shuangfeng", "双凤镇")],
        seed=11,
        step_seconds=0.05,
        initial_cases=300,
    )
    sim.delay = 0.02
    stop = asyncio.Event()
    async with serve_app(sim.app) as (sim_url, _):
        config = _config(tmp_path, sim_url)
        mover = asyncio.create_task(sim.run(stop))
        proc = await _run("--config", str(config), "feed", "run", "hotline")
        db = tmp_path / "feed.db"
        # Wait until the first pull committed something, then let it run a little.
        for _ in range(300):
            if db.exists():
                with sqlite3.connect(db) as conn:
                    try:
                        if conn.execute("SELECT count(*) FROM cases").fetchone()[0] > 0:
                            break
                    except sqlite3.OperationalError:
                        pass
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.7)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        stop.set()
        await mover
        # The source stands still now; one more pull must make us equal to it.
        again = await _run("--config", str(config), "feed", "run", "hotline", "--once")
        out, _ = await again.communicate()
        assert again.returncode == 0, out.decode()

    with sqlite3.connect(db) as conn:
        stored = dict(conn.execute("SELECT no, stage FROM cases WHERE withdrawn = 0"))
        rows = conn.execute("SELECT seq, data FROM events WHERE kind = 'case' ORDER BY seq")
        announced: dict[str, list[str]] = {}
        for _, data in rows:
            case = json.loads(data)
            announced.setdefault(case["no"], []).append(data)
    expected = {cid: c.stage for cid, c in sim.cases.items() if c.stage}
    assert stored == expected
    for no, versions in announced.items():
        # Each announced version differs from the one before: nothing doubled.
        assert all(a != b for a, b in itertools.pairwise(versions)), no
        assert json.loads(versions[-1])["stage"] == expected[no]
