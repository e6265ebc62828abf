"""The `yizheng` command: every command has help, and the simple ones work end to end."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from display.cli import build_parser, main
from tests.conftest import settings_dict

ROOT = Path(__file__).resolve().parent.parent


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"yizheng {' '.join((*prefix, name))} has no help text"
                out.append(((*prefix, name), sub))
                out += _commands(sub, (*prefix, name))
    return out


def test_every_command_has_help_text() -> None:
    commands = _commands(build_parser())
    names = {" ".join(c) for c, _ in commands}
    for expected in [
        "serve",
        "demo",
        "db migrate",
        "db backup",
        "feed run",
        "feed status",
        "import",
        "redact",
        "render",
        "led-client",
        "user add",
    ]:
        assert expected in names
    for _, sub in commands:
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{sub.prog} {action.option_strings} has no help"


def _toml(tmp_path: Path, ledger: Path | None = None) -> Path:
    data = settings_dict(tmp_path)
    lines = [
        f'secret_key = "{data["secret_key"]}"',
        "[database]",
        f'url = "{data["database"]["url"]}"',
    ]
    for t in data["towns"]:
        lines += ["[[towns]]", f'slug = "{t["slug"]}"', f'name = "{t["name"]}"']
    lines += [
        "[[feeds]]",
        'name = "push"',
        'kind = "webhook"',
        'secret = "test-push-secret-0123456789"',
    ]
    if ledger is not None:
        lines += ["[[feeds]]", 'name = "ledger"', 'kind = "ledger"', f'path = "{ledger}"']
    path = tmp_path / "yizheng.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_db_migrate_then_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _toml(tmp_path)
    assert main(["--config", str(config), "db", "migrate"]) == 0
    assert "0001_initial" in capsys.readouterr().out
    assert main(["--config", str(config), "db", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    backup = tmp_path / "backup.db"
    assert main(["--config", str(config), "db", "backup", str(backup)]) == 0
    assert backup.stat().st_size > 0
    assert main(["--config", str(config), "db", "backup", str(backup)]) == 2  # no overwrite


def test_bad_config_stops_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[deadlines]\ngeneral_workdays = "many"\n', encoding="utf-8")
    assert main(["--config", str(bad), "db", "migrate"]) == 2
    assert "deadlines.general_workdays" in capsys.readouterr().err


def test_unknown_feed_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _toml(tmp_path)
    assert main(["--config", str(config), "feed", "run", "nope", "--once"]) == 2
    assert "no feed named 'nope'" in capsys.readouterr().err


def test_redact_command_as_a_real_process(tmp_path: Path) -> None:
    lines = "张兴九大爷反映路灯不亮，电话13812345678\n第二行没有个人信息\n"
    done = subprocess.run(
        [sys.executable, "-m", "display.cli", "redact"],
        input=lines,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    out = done.stdout.splitlines()
    assert len(out) == 2
    assert "兴九" not in out[0] and "13812345678" not in out[0]
    assert out[1] == "第二行没有个人信息"
    done = subprocess.run(
        [sys.executable, "-m", "display.cli", "redact", "--json"],
        input=lines,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    first = json.loads(done.stdout.splitlines()[0])
    assert first["spans"]


async def test_feed_run_refuses_while_the_service_runs_the_feeds(tmp_path: Path) -> None:
    import asyncio

    from display.app import create_app
    from display.settings import load
    from tests.conftest import free_port, serve_app

    config = _toml(tmp_path)
    dead = f"http://127.0.0.1:{free_port()}/open311/v2"
    with config.open("a", encoding="utf-8") as f:
        f.write(f'[[feeds]]\nname = "hotline"\nkind = "open311"\nurl = "{dead}"\ninterval = 60\n')
    app = create_app(load(config, env={}))
    async with serve_app(app):
        for _ in range(100):
            if app.state.ctx.extra.get("feed_leader"):
                break
            await asyncio.sleep(0.05)
        assert app.state.ctx.extra.get("feed_leader")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "display.cli",
            "--config",
            str(config),
            "feed",
            "run",
            "hotline",
            "--once",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "running service" in err.decode()


def test_user_add_with_password_on_stdin_then_reset(tmp_path: Path) -> None:
    config = _toml(tmp_path)
    cmd = [
        sys.executable,
        "-m",
        "display.cli",
        "--config",
        str(config),
        "user",
        "add",
        "zhangsan",
        "--role",
        "town",
        "--town",
        "longshi",
        "--password-stdin",
    ]
    first = subprocess.run(
        cmd,
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    assert "added" in first.stdout
    again = subprocess.run(
        cmd,
        input="another long password\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert again.returncode == 0 and "reset" in again.stdout
    short = subprocess.run(
        [*cmd[:-1], "--password-stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert short.returncode == 2
    db = settings_dict(tmp_path)["database"]["url"].removeprefix("sqlite:///")
    import sqlite3

    with sqlite3.connect(db) as conn:
        (hashed,) = conn.execute("SELECT password_hash FROM users WHERE name='zhangsan'").fetchone()
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert "argon2" in hashed and "another long password" not in hashed
    assert actions == ["user.add", "user.reset"]


LEDGER_HEADER = "受理编号,诉求人,联系电话,诉求内容,所属镇(街道),诉求类型,办理状态,受理时间"


def test_import_prints_counts_progress_and_reasons(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`yizheng import`: counts with reasons, exit 0 even with quarantined rows, 1 when
    the file cannot be read as a ledger, progress on long batches, no personal data."""
    import display.cli
    import display.ingest

    ledgers = tmp_path / "ledgers"
    ledgers.mkdir()
    path = ledgers / "台账.csv"
    rows = [
        LEDGER_HEADER,
        "LC-1,王建国,13812345678,反映王建国家门前路灯损坏,龙市镇,基础设施,办理中,2026-03-05",
        "LC-2,李秀英,13987654321,咨询医保缴费时间,黄家镇,政策咨询,已登记,2026/3/6",
        "LC-3,张志强,13700001111,反映垃圾清运不及时,龙市镇,环境卫生,已办结,2026年3月7日",
        "LC-4,刘丽华,13600002222,反映水管破裂,火星镇,基础设施,办理中,2026-03-08",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="gbk")
    config = _toml(tmp_path, ledger=ledgers)
    monkeypatch.setattr(display.cli, "PROGRESS_MIN", 1)
    monkeypatch.setattr(display.ingest, "PROGRESS_EVERY", 2)

    assert main(["--config", str(config), "import", str(path), "--feed", "ledger"]) == 0
    out = capsys.readouterr()
    assert "new 3, changed 0, unchanged 0, withdrawn 0, quarantined 1" in out.out
    assert "quarantined LC-4: 所属镇(街道)：未知乡镇" in out.out
    assert "prepared 2 / 3 record(s)" in out.err and "prepared 3 / 3 record(s)" in out.err
    for secret in ("王建国", "13812345678", "李秀英", "刘丽华", "13600002222"):
        assert secret not in out.out + out.err

    # A second import of the same file (a new process would be the same) changes nothing.
    assert main(["--config", str(config), "import", str(path), "--feed", "ledger"]) == 0
    assert "new 0, changed 0, unchanged 3, withdrawn 0, quarantined 1" in capsys.readouterr().out

    # The quarantine lists the problem once, seen twice, with its reason.
    assert main(["--config", str(config), "feed", "quarantine", "ledger"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == 2 and listing[0].startswith("last seen (UTC)")
    assert listing[1].split()[2:4] == ["2", "LC-4"] and "未知乡镇" in listing[1]
    assert "刘丽华" not in listing[1] and "13600002222" not in listing[1]
    assert main(["--config", str(config), "feed", "quarantine", "push"]) == 0
    assert "nothing quarantined" in capsys.readouterr().out
    assert main(["--config", str(config), "feed", "quarantine", "nope"]) == 2
    assert "no feed named 'nope'" in capsys.readouterr().err

    # A file that is no ledger at all: the source could not be read, exit 1.
    junk = ledgers / "照片.csv"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert main(["--config", str(config), "import", str(junk), "--feed", "ledger"]) == 1
    assert "could not be read" in capsys.readouterr().err

    # Usage errors: exit 2 with the reason.
    assert (
        main(["--config", str(config), "import", str(tmp_path / "nope.csv"), "--feed", "ledger"])
        == 2
    )
    assert "is not a file" in capsys.readouterr().err
    assert main(["--config", str(config), "import", str(path), "--feed", "push"]) == 2
    assert "import needs a ledger feed" in capsys.readouterr().err
