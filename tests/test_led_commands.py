"""`yizheng render`: one board's frame from the database to a file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from display.led.commands import render_cmd, write_output
from display.led.encode import from_mono1
from display.led.render import render_board
from display.led.sample import AT, sample_content
from display.settings import Board, Settings

GATE = Board(id="gate", town="longshi", width=128, height=32)


def test_render_cmd_writes_the_board_png(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gate.png"
    assert render_cmd(make_settings(), "longshi-gate", out, 0) == 0
    with Image.open(out) as img:
        assert img.size == (128, 32) and img.mode == "1"
        assert img.getbbox() is not None  # something is drawn (the title)
    assert "128x32 mono" in capsys.readouterr().out


def test_render_cmd_rejects_unknown_board_and_page(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    assert render_cmd(settings, "nope", tmp_path / "x.png") == 2
    assert "longshi-gate" in capsys.readouterr().err  # names the boards that exist
    assert render_cmd(settings, "longshi-hall", tmp_path / "x.png") == 2  # a kiosk
    assert render_cmd(settings, "longshi-gate", tmp_path / "x.png", 42) == 2
    assert "page 42" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("suffix", ["png", "gif", "txt", "mono1", "rgb565", "rgb888"])
def test_write_output_by_suffix(tmp_path: Path, suffix: str) -> None:
    rendered = render_board(GATE, sample_content(), now=AT)
    out = tmp_path / f"frame.{suffix}"
    write_output(rendered, out, 1, AT)
    data = out.read_bytes()
    page = rendered.pages[1]
    if suffix == "txt":
        assert data.decode("utf-8") == page.text
    elif suffix == "mono1":
        assert from_mono1(data, 128, 32).tobytes() == page.image.tobytes()
    elif suffix == "rgb565":
        assert len(data) == 128 * 32 * 2
    elif suffix == "rgb888":
        assert len(data) == 128 * 32 * 3
    elif suffix == "gif":
        with Image.open(out) as gif:
            assert gif.format == "GIF" and getattr(gif, "n_frames", 1) == len(rendered.pages)
    else:
        with Image.open(out) as img:
            assert img.tobytes() == page.image.tobytes()
