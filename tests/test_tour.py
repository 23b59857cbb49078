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


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


#: The lessons the tour teaches; each must hold in the quick run as in the full one.
LESSONS = {
    "He beats zeros and randn x 10",
    "He trains the deep ReLU network, LeCun's 1/n does not",
    "standardized inputs converge in fewer iterations",
}


def assert_lessons_hold(summary: dict) -> None:
    """The lessons, checked on the numbers themselves (not only on the tour's own flags)."""
    assert LESSONS <= set(summary["lessons"]) and all(summary["lessons"].values()), summary["lessons"]
    runs = {r["scheme"]: r for r in summary["sections"]["initialization"]["table"]}
    for other in ("zeros", "randn x 10"):
        assert runs["He"]["costs"][-1] < runs[other]["costs"][-1]
        assert runs["He"]["train_accuracy"] > runs[other]["train_accuracy"]
        assert runs["He"]["test_accuracy"] > runs[other]["test_accuracy"]
    depth = summary["sections"]["depth"]
    # Trained: from ln 10 = 2.30 (chance over 10 classes) to below 0.5, where LeCun's 1/n stays above 2.
    assert depth["training"]["He 2/n"] < 0.5 < 2.0 < depth["training"]["LeCun 1/n"]
    assert depth["training_accuracy"]["He 2/n"][0] > 0.9
    normalization = {r["inputs"]: r for r in summary["sections"]["normalization"]["table"]}
    fast, slow = normalization["standardized"]["iterations_to_target"], normalization["raw"]["iterations_to_target"]
    assert fast is not None and (slow is None or fast < slow)


def test_the_quick_tour_keeps_every_lesson(report) -> None:
    assert_lessons_hold(_summary(report))


@pytest.mark.slow
def test_the_full_tour_keeps_every_lesson(tmp_path) -> None:
    assert main(["tour", "-o", str(tmp_path / "full")]) == 0
    summary = _summary(tmp_path / "full")
    assert summary["quick"] is False
    assert_lessons_hold(summary)


#: Outcome -> the colour its badge must have, whatever the demonstration meant to show.
OUTCOME_COLOURS = {"healthy": "good", "passed": "good", "vanishing": "bad", "saturated": "bad", "failed": "bad"}


def test_badges_are_coloured_by_outcome_and_say_each_thing_once(report) -> None:
    findings = [f for section in _summary(report)["sections"].values() for f in section["findings"]]
    assert findings and all(f["expected"] for f in findings), [f for f in findings if not f["expected"]]
    for f in findings:
        if f["outcome"] in OUTCOME_COLOURS:
            assert f["tone"] == OUTCOME_COLOURS[f["outcome"]], f
        if f["outcome"].startswith(("not converged", "stuck", "bug caught")):
            assert f["tone"] == "bad", f
    bug = next(f for f in findings if f["subject"].startswith("planted bug"))
    assert bug["outcome"] == "bug caught in W2: analytic = 2.00 x numeric"
    page = (report / "report.html").read_text()
    assert page.count("&#10003;") == len(findings) and "#fde2e1" in page and "#d9f2dd" in page


def _chromium(page, tmp_path, *extra: str) -> str:
    """Headless Chromium's DOM dump of ``page`` (Debian's package; never a downloaded browser)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", *extra, "--dump-dom"]
    return subprocess.run([chromium, *flags, page.as_uri()], capture_output=True, text=True, timeout=120).stdout


#: After the page has loaded: whether every image decoded; every element that runs off the page, and every text
#: block wider than itself that is not a table scrolling sideways with a visible cue (a scroll bar and an edge
#: shadow: pre.table); and how many tables scroll.
PROBE = """<script>window.addEventListener('load', () => {
  const ok = [...document.images].every(i => i.complete && i.naturalWidth > 0);
  const page = document.documentElement.clientWidth;
  const scrolls = e => e.matches('pre.table') && getComputedStyle(e).overflowX === 'auto' &&
    getComputedStyle(e).backgroundImage.includes('radial-gradient');
  const wide = [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > page + 1 ||
    (e.tagName === 'PRE' && e.scrollWidth > e.clientWidth + 1 && !scrolls(e)));
  const scrolling = [...document.querySelectorAll('pre')].filter(e => e.scrollWidth > e.clientWidth + 1);
  document.title = (ok ? 'LOADED-' : 'BROKEN-') + document.images.length + ' WIDE-' + wide.length +
    ' SCROLLING-' + scrolling.length + ' ' + wide.slice(0, 3).map(e => e.tagName + ':' +
    e.textContent.slice(0, 40)).join('|');
});</script>"""


@pytest.mark.parametrize("width", [1280, 800])
def test_every_image_loads_and_no_text_runs_off_the_page_in_a_real_browser(report, tmp_path, width) -> None:
    page = tmp_path / "probe.html"
    page.write_text((report / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(page, tmp_path, f"--window-size={width},900")
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title, dom[-2000:]
    assert title.group(1).startswith(f"LOADED-{len(list(report.glob('*.png')))} WIDE-0 "), title.group(1)
    if width == 1280:  # at a desktop width every table fits; only a phone-sized page needs to scroll one
        assert " SCROLLING-0" in title.group(1), title.group(1)


def test_the_training_health_section_names_the_dead_layers_at_the_spike_and_the_fix_stays_healthy(report) -> None:
    section = json.loads((report / "summary.json").read_text())["sections"]["training_health"]["table"]
    spiked, fixed = section["runs"]
    start, end = section["spike_steps"]
    dead = [v for v in spiked["verdicts"] if v["verdict"] == "dead"]
    assert dead and start < dead[0]["began"] <= end + 20 and "learning rate rose from 0.05 to 10" in dead[0]["message"]
    assert fixed["verdicts"] == [] and fixed["accuracy"] > spiked["accuracy"]


def test_the_jax_section_checks_a_custom_vjp_rule_in_float32(report) -> None:
    pytest.importorskip("jax")
    checks = json.loads((report / "summary.json").read_text())["sections"]["jax"]
    assert checks["correct_passed"] and not checks["buggy_passed"]
    assert checks["buggy_hints"] == ["w: analytic = 2.00 x numeric"]
