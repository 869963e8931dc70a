"""A missing optional backend is one line naming the extra that installs it, never a traceback."""

from __future__ import annotations

import pytest

from bench import deps
from bench.metrics.base import select_metrics


@pytest.fixture()
def without(monkeypatch):
    """Pretend some distributions are not installed."""

    def hide(*names: str) -> None:
        real = deps.installed.__wrapped__
        monkeypatch.setattr(deps, "installed", lambda d: d not in names and real(d))

    return hide


def test_install_hint_names_the_extras():
    assert deps.install_hint(["pesq", "pystoi"]) == "pip install 'bench[pesq,stoi]'"
    assert deps.install_hint(["somepkg"]) == "pip install somepkg"


def test_explicit_metric_without_backend_is_a_user_error(without):
    without("pesq")
    with pytest.raises(deps.MissingBackendError, match=r"metric 'pesq_wb' needs pesq.*bench\[pesq\]"):
        select_metrics("si_sdr,pesq_wb")


def test_default_metrics_leave_out_what_is_not_installed(without):
    without("pesq", "pystoi")
    notes: list[str] = []
    names = [m.name for m in select_metrics(None, say=notes.append)]
    assert "si_sdr" in names and not {"pesq_wb", "pesq_nb", "stoi", "estoi"} & set(names)
    assert len(notes) == 1 and "pesq_wb" in notes[0] and "bench[pesq,stoi]" in notes[0]


def test_report_without_pandas_exits_2_with_the_extra(without, tmp_path, capsys):
    from bench.cli import main as bench_main

    (tmp_path / "results.sqlite").write_bytes(b"")
    without("pandas")
    code = bench_main(["report", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "bench[reports]" in err and "Traceback" not in err
