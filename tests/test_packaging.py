"""A wheel is a complete service: templates, assets, fonts and migrations included.

`templates/` and `assets/` live at the top of the checkout (DESIGN.md);
`display/templates` and `display/assets` link to them, so a wheel carries them as
package data. This test builds the wheel, unpacks it (a pure-Python wheel unpacked
is installed) and serves the kiosk, a vendored script and an LED frame from the
unpacked copy, in a process that cannot see the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import settings_dict

ROOT = Path(__file__).resolve().parent.parent

SERVE = """
import json, sys
import display
from starlette.testclient import TestClient
from display.app import create_app
from display.settings import parse

settings = parse(json.loads(sys.argv[1]))
with TestClient(create_app(settings)) as client:
    kiosk = client.get("/kiosk/longshi")
    script = client.get("/assets/js/vendor/htmx-2.0.11.min.js")
    frame = client.get("/led/longshi-gate/frame.png")
print(json.dumps({
    "package": display.__file__,
    "kiosk": [kiosk.status_code, "龙市镇" in kiosk.text],
    "script": [script.status_code, len(script.content)],
    "frame": [frame.status_code, frame.headers.get("content-type"), frame.content[:4].hex()],
}))
"""


def test_a_wheel_serves_without_the_checkout(tmp_path: Path) -> None:
    # Built from a copy of the working tree (links kept as links): a build in the
    # checkout would leave build/ behind, and a stale build/ hides missing files.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    dist = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*build, "--wheel-dir", str(dist), str(source)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    [wheel] = dist.glob("yizheng-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)

    # Every file of templates/ and assets/ is in the wheel, under display/.
    for top in ("templates", "assets"):
        files = [p.relative_to(ROOT / top) for p in (ROOT / top).rglob("*") if p.is_file()]
        assert files
        missing = [str(f) for f in files if not (site / "display" / top / f).is_file()]
        assert missing == [], f"{top}/ files missing from the wheel: {missing}"
    assert list((site / "display" / "store" / "migrations").glob("*.sql"))

    # Serve from the unpacked copy: its own path first, run from elsewhere.
    config = settings_dict(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    out = subprocess.run(
        [sys.executable, "-c", SERVE, json.dumps(config)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(site), got["package"]
    assert got["kiosk"] == [200, True]
    assert got["script"][0] == 200
    assert got["script"][1] == (ROOT / "assets/js/vendor/htmx-2.0.11.min.js").stat().st_size
    assert got["frame"] == [200, "image/png", "89504e47"]
