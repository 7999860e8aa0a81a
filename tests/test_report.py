"""result.report(path) and result._repr_html_(): content and escaping checked on the HTML text, and
the page rendered in a real headless browser (Debian's chromium: two launches in all)."""
import base64
import html
import html.parser
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import minireg
from minireg import datasets
from minireg.diagnose import Finding
from minireg.report import render

REPORT = sys.modules["minireg.report"]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _find_chromium():
    for path in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if path and os.path.exists(path):
            return path
    return None


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium; installed with apt-get when missing and we are root, else the test skips."""
    path = _find_chromium()
    if path:
        return path
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and we are not root to install it: apt-get install -y chromium")
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and there is no apt-get to install it with")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}: {exc})")
        log.append(p.stdout[-2000:] + p.stderr[-2000:])
        if p.returncode != 0:
            pytest.skip(f"could not install chromium ({' '.join(cmd)} exited {p.returncode}): {log[-1][-500:]}")
    path = _find_chromium()
    if not path:
        pytest.skip("apt-get installed chromium but no chromium executable was found")
    return path


def browse(chromium, page, tmp_path, dump=True):
    """One headless launch: (DOM text, screenshot path, browser stderr)."""
    shot = tmp_path / "shot.png"
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
           "--window-size=1200,2000", *(["--dump-dom"] if dump else []), page.resolve().as_uri()]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout, shot, p.stderr


def png_pixels(path):
    import matplotlib.image
    return matplotlib.image.imread(str(path))


@pytest.fixture
def no_plots(monkeypatch):
    """Reports without their plots (matplotlib takes ~1-2 s a figure), for tests about the text."""
    monkeypatch.setattr(REPORT, "_result_plots", lambda result: [])


@pytest.fixture(scope="module")
def diverged():
    X, y = datasets.linear_1d()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", minireg.DivergenceWarning)
        return minireg.train(X, y, optimizer="sgd", lr=10.0, batch_size=32, epochs=50, trace=True)


class _Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.imgs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)


def parse(text):
    p = _Parser()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def diverged_page(diverged, tmp_path_factory):
    """The diverged run's report, written once (its plots take a few seconds)."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    assert diverged.report(out) == str(out)
    return out


def test_report_content(diverged, diverged_page):
    text = diverged_page.read_text(encoding="utf-8")
    codes = [f.code for f in diverged.findings]  # report() diagnosed the run
    assert {"lr_too_high", "nonfinite"} <= set(codes)
    p = parse(text)
    body = "".join(p.text)
    for code in codes:
        assert code in body
    assert "train(..., lr=" in html_unescape(body)  # the fix
    X, y = datasets.linear_1d()
    bound = minireg.stability_bound(X, y, optimizer="sgd", lr=10.0, batch_size=32)
    assert "Stability bound" in body and "minireg.stability_bound" in body and f"{bound.lr_max:.4g}" in body
    assert "evidence" in body and "Configuration" in body
    # self-contained: every image is an embedded PNG that decodes; nothing loads from outside
    assert len(p.imgs) >= 2  # plot_result and plot_path (linear, one feature, traced)
    for img in p.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1])
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)


def html_unescape(s):
    return html.unescape(s)


def test_report_escapes_all_text(no_plots):
    r = minireg.train(*datasets.linear_1d(n=30), epochs=5)
    evil = "<script>alert('x')</script>"
    r.findings = [Finding("outliers", "warning", f"message {evil} & more", 3, {"used": evil, evil: [1, 2]},
                          {"loss": evil})]
    r.config = {**r.config, "activation": evil}
    text = render(r)
    assert "<script>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "&amp; more" in text


def test_loaded_run_report_has_its_bound_from_the_saved_rows(diverged, tmp_path, no_plots):
    diverged.diagnose()
    diverged.save(tmp_path / "run.minireg")
    loaded = minireg.load(tmp_path / "run.minireg")
    text = render(loaded)
    bound = next(f for f in diverged.findings if f.code == "lr_too_high").evidence["bound"]
    assert "lr_too_high" in text and f"{bound:.6g}" in text  # the saved findings and their bound numbers
    assert "of its 100 training rows" in text and "largest stable lr" in text and "n/a: this run" not in text
    diverged.save(tmp_path / "bare.minireg", rows=0)
    text = render(minireg.load(tmp_path / "bare.minireg"))
    assert "n/a: this run was saved without training rows" in text
    # an untraced run that exploded: named as such, with its loss figure and the bound
    X, y = datasets.linear_1d(n=3000)
    r = minireg.train(X, y, lr=10.0, epochs=100)
    r.save(tmp_path / "big.minireg")
    big = minireg.load(tmp_path / "big.minireg")
    assert big.saved_sample == {"rows": 2000, "of": 3000}
    kind, what = big.outcome()
    assert kind == "bad" and what.startswith("exploding: the loss grew ×")
    text = render(big)
    assert "exploding" in text and ">finite<" not in text
    assert "exact, from the saved X̃ᵀX̃/n of all training rows" in html_unescape(text)
    b = minireg.stability_bound(X, y)
    assert f"{b.lr_max:.4g}" in text


def test_report_of_an_untraced_adam_mlp_run(no_plots):
    X, y = datasets.sine(n=60)
    r = minireg.train(X, y, model="mlp", hidden=(8,), optimizer="adam", lr=0.01, epochs=20, validation=0.2)
    text = render(r)
    assert "final validation loss" in text
    assert "adaptive optimizer without its state" in text  # the Adam bound needs the traced state


def test_repr_html(diverged):
    r = minireg.train(*datasets.linear_1d(), epochs=10, validation=0.2)
    h = r._repr_html_()
    assert "not diagnosed yet" in h and "val loss" in h and "data:image/png;base64," in h
    r.diagnose()
    h = r._repr_html_()
    assert "not diagnosed yet" not in h and "findings" in h
    diverged.diagnose()
    h = diverged._repr_html_()
    assert "diverged at step" in h and "lr_too_high" in h and "fix:" in h
    p = parse(h)
    assert p.tags[0] == "div" and "table" in p.tags


def test_report_in_a_headless_browser(diverged, diverged_page, tmp_path, chromium):
    dom, shot, stderr = browse(chromium, diverged_page, tmp_path)
    assert "Uncaught" not in stderr and "CONSOLE" not in stderr
    assert dom.lstrip().lower().startswith("<!doctype html>") or "<html" in dom[:200]
    for f in diverged.findings:
        assert f'data-code="{f.code}"' in dom
        assert f.message.split(":")[0] in html_unescape(dom)
    assert "train(..., lr=" in html_unescape(dom)
    assert shot.exists() and shot.stat().st_size > 20_000
    px = png_pixels(shot)
    assert px.shape[:2] == (2000, 1200)
    rgb = (px[..., :3] * 255).round().astype(int)
    colors = np.unique(rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2])
    assert len(colors) > 50  # text, tables, badges: not a blank page
    red = np.all(np.abs(rgb - [215, 0, 21]) <= 8, axis=-1)  # the 'error' badges and the divergence flag
    assert red.sum() > 100


def test_loaded_run_report_in_a_headless_browser(tmp_path, chromium):
    from minireg.cli import main
    bad, findings, _ = datasets.run_case("low_lr", verbose=False)
    bad.save(tmp_path / "run.minireg")
    assert main(["report", str(tmp_path / "run.minireg"), "-o", str(tmp_path / "loaded.html")]) == 0
    dom, shot, _ = browse(chromium, tmp_path / "loaded.html", tmp_path)
    assert "lr_too_low" in [f.code for f in findings]
    assert 'data-code="lr_too_low"' in dom and "with 100 of its 100 training rows" in dom
    assert "train(..., lr=" in html_unescape(dom)
    assert shot.stat().st_size > 20_000
