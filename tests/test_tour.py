"""The tour writes a report people can open offline: report.html with embedded figures, PNGs, summary.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from preflight.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tour") / "report"
    assert main(["tour", "--quick", "-o", str(folder)]) == 0
    return folder


def test_the_report_files_exist_and_are_not_empty(report) -> None:
    for name in ("report.html", "summary.json"):
        assert (report / name).stat().st_size > 0
    pngs = list(report.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_the_html_is_self_contained(report) -> None:
    page = (report / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:)?//', page)
    assert len(sources) == len(list(report.glob("*.png")))


def test_the_summary_carries_the_expected_verdicts(report) -> None:
    summary = json.loads((report / "summary.json").read_text())
    table = {row["scheme"]: row for row in summary["sections"]["initialization"]["table"]}
    assert table["zeros"]["train_accuracy"] == 0.5
    assert table["He"]["costs"][0] == pytest.approx(0.8830537463419761, rel=1e-9)


def test_a_file_in_place_of_the_folder_is_a_clear_error(tmp_path, capsys) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    assert main(["tour", "--quick", "-o", str(blocker)]) == 2
    assert "output: expected a folder" in capsys.readouterr().err


def test_the_gradient_check_section_passes_the_correct_network_and_names_the_planted_bug(report) -> None:
    checks = json.loads((report / "summary.json").read_text())["sections"]["gradient_checking"]
    assert checks["correct_passed"] and checks["float32_passed"]
    assert not checks["buggy_passed"] and checks["buggy_worst"] == "W2"
    assert any("2.00 x numeric" in hint for hint in checks["buggy_hints"])


def test_the_normalization_section_shows_standardizing_converges_where_raw_does_not(report) -> None:
    runs = {
        r["inputs"]: r for r in json.loads((report / "summary.json").read_text())["sections"]["normalization"]["table"]
    }
    assert runs["standardized"]["iterations_to_target"] is not None
    assert runs["raw"]["iterations_to_target"] is None
    assert runs["standardized"]["stable_learning_rate"] > 1e6 * runs["raw"]["stable_learning_rate"]


def test_the_depth_section_finds_what_mean_field_theory_predicts(report) -> None:
    depth = json.loads((report / "summary.json").read_text())["sections"]["depth"]
    for scheme, verdict in depth["verdicts"].items():
        assert verdict == depth["expected"].get(scheme, "healthy"), scheme
    assert depth["training"]["He 2/n"] < depth["training"]["LeCun 1/n"]


def test_the_diagnosis_turns_a_saturated_network_healthy_with_its_recommendation(report) -> None:
    diagnostics = json.loads((report / "summary.json").read_text())["sections"]["diagnostics"]
    assert diagnostics == {**diagnostics, "before": "saturated", "recommended": "lecun", "after": "healthy"}


def test_every_image_loads_in_a_real_browser(report, tmp_path) -> None:
    """Render the report in headless Chromium (Debian's package; never a downloaded browser): every image decodes."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    probe = (
        "<script>window.addEventListener('load', () => { const ok = [...document.images].every("
        "i => i.complete && i.naturalWidth > 0); document.title = (ok ? 'LOADED-' : 'BROKEN-') + "
        "document.images.length; });</script>"
    )
    page = tmp_path / "probe.html"
    page.write_text((report / "report.html").read_text().replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert f"<title>LOADED-{len(list(report.glob('*.png')))}</title>" in dom


def test_the_training_health_section_names_the_dead_layers_at_the_spike_and_the_fix_stays_healthy(report) -> None:
    section = json.loads((report / "summary.json").read_text())["sections"]["training_health"]["table"]
    spiked, fixed = section["runs"]
    start, end = section["spike_steps"]
    dead = [v for v in spiked["verdicts"] if v["verdict"] == "dead"]
    assert dead and start < dead[0]["began"] <= end + 20 and "learning rate rose from 0.05 to 10" in dead[0]["message"]
    assert fixed["verdicts"] == [] and fixed["accuracy"] > spiked["accuracy"]
