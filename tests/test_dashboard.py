"""The dashboard against a results folder produced by a real (small) search run."""

import base64
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from searchutil import REPO, env, only_run, search, write_space

from nas_attn.dashboard.page import build_page
from nas_attn.dashboard.rundata import load_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
URL = re.compile(r"https?://[^\s\"'<>)]+")


def _dashboard(*args):
    return subprocess.run([sys.executable, "-m", "nas_attn", "dashboard", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env(), cwd=REPO)


@pytest.fixture(scope="module")
def page(smoke_run, tmp_path_factory):
    run, _ = smoke_run
    out = tmp_path_factory.mktemp("dash") / "dashboard.html"
    r = _dashboard(run, "--out", out)
    assert r.returncode == 0, r.stderr
    return run, out


def test_html_is_self_contained(page):
    _, out = page
    text = out.read_text()
    assert "<script src" not in text and "<link" not in text and "@import" not in text and "@font-face" not in text
    external = {u for u in URL.findall(text) if not u.startswith("http://www.w3.org/")
                and not re.match(r"https?://offline\.invalid/", u)}
    assert not external, sorted(external)[:10]
    assert "Plotly.newPlot" in text and len(text) > 3_000_000  # plotly.js is inlined


def _figure(html, div_id):
    """The plotly figure the page draws in ``div_id`` (as inlined by the page)."""
    spec = re.search(rf'<div class="graph" id="{div_id}"></div><script>\(function \(\) {{ const f = (\{{.*?\}}); ', html, re.S)
    return json.loads(spec.group(1).replace("<\\/", "</"))


def _values(v):
    """A plotly array as a list (plotly writes numpy arrays as base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def test_page_data_describes_the_run(smoke_run):
    run, _ = smoke_run
    data = load_run(run)
    html = build_page([data])
    payload = json.loads(re.search(r"const NAS = (\{.*?\});</script>", html, re.S).group(1).replace("<\\/", "</"))
    trials = payload["runs"][0]["trials"]
    assert len(trials) == len(data.trials) == 4
    assert {int(k) for k, t in trials.items() if t["on_front"]} == set(data.front["trial"])
    assert all(t["arch"]["backbone"] == "mobilenetv2" for t in trials.values())
    assert [p["index"] for p in payload["runs"][0]["positions"]][:3] == [1, 2, 3]
    # the front table holds exactly the front's trials with their measured and re-evaluated accuracies
    table = re.search(r'<table class="sortable" id="front-table">.*?</table>', html, re.S).group(0)
    assert sorted(map(int, re.findall(r'data-trial="(\d+)"', table))) == sorted(data.front["trial"])
    for row in data.front.itertuples():
        assert f"{row.val_acc_final:.4f}" in table and f"{row.test_acc:.4f}" in table
        assert f"{row.reeval_val_mean:.4f}" in table
    # the Pareto plot draws every complete trial; the hypervolume is Optuna's, one point per complete trial
    done = data.trials[data.trials["status"] == "complete"]
    pareto = _figure(html, "pareto")
    drawn = [t for t in pareto["data"] if t.get("meta", {}).get("kind") == "complete"][0]
    assert sorted(c[1] for c in drawn["customdata"]) == sorted(done["trial"])
    hv = _figure(html, "hypervolume")["data"][0]
    hv_y = _values(hv["y"])
    assert _values(hv["x"]) == sorted(done["trial"]) and all(b >= a for a, b in zip(hv_y, hv_y[1:], strict=False))
    parallel = _figure(html, "parallel")["data"][0]
    assert {d["label"] for d in parallel["dimensions"]} >= {"layer 14", "layer 17", "MFLOPs", "val acc"}
    assert len(_values(parallel["dimensions"][0]["values"])) == len(done)


def test_several_runs_overlay(smoke_run, tmp_path):
    run, _ = smoke_run
    twin = tmp_path / "smoke" / "twin"
    shutil.copytree(run, twin, ignore=shutil.ignore_patterns("tune"))
    out = tmp_path / "two.html"
    r = _dashboard(run, twin, "--out", out)
    assert r.returncode == 0, r.stderr
    text = out.read_text().replace("\\u002f", "/")  # plotly's JSON escapes "/"
    assert f"{run.name}: Pareto front" in text and "twin: Pareto front" in text  # each run by its id


def test_bad_run_folders_are_one_line_errors(tmp_path):
    for folder, setup, message in [
        (tmp_path / "missing", None, "no such run folder"),
        (tmp_path / "plain", lambda d: d.mkdir(), "not a nas-attn run folder (no manifest.json)"),
        (tmp_path / "broken", lambda d: (d.mkdir(), (d / "manifest.json").write_text("{oops")), "manifest.json: malformed"),
    ]:
        if setup:
            setup(folder)
        r = _dashboard(folder)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and message in r.stderr, r.stderr
    r = _dashboard(tmp_path, "--watch")
    assert r.returncode == 2 and "--watch needs --serve" in r.stderr


def test_empty_run_gives_a_readable_page(tmp_path):
    run = tmp_path / "smoke" / "just-started"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"space": "smoke", "status": "running", "objectives": ["val_acc", "flops"]}))
    r = _dashboard(run)
    assert r.returncode == 0, r.stderr
    text = (run / "dashboard.html").read_text()
    assert "No trial has finished yet" in text and "no trials yet" in text


ONLY_FAILURES = """
imports: [failing_attention]
backbone: {name: mobilenetv2, width: 0.35, small_input: true}
dataset: {name: fashion_mnist, input_size: 32, train_subset: 200, val_subset: 100, test_subset: 200}
search: {positions: [17], modules: [explode], include_vanilla: false}
sampler: {name: random, seed: 0}
budget: {trials: 2, concurrency: 2}
resources: {cpu: 1, gpu: 0}
train: {epochs: 1, batch_size: 32, bn_recalibration: 0}
"""


def test_run_with_only_failed_trials_gives_a_readable_page(tmp_path):
    space = write_space(tmp_path / "all_fail.yaml", ONLY_FAILURES)
    r = search("--space", space, "--results-dir", tmp_path / "results")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "2 failed" in r.stdout and "empty front" in r.stdout
    run = only_run(tmp_path / "results", "all_fail")
    r = _dashboard(run)
    assert r.returncode == 0, r.stderr
    text = (run / "dashboard.html").read_text()
    assert "all_fail" in text and "2 failed" in text and "explode: this module always fails" in text


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_headless_chromium_renders_and_selection_updates_detail(page, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    _, out = page
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000})

        def block(route):  # the network is blocked: any request leaving the file is recorded and refused
            if not route.request.url.startswith(("file://", "data:", "blob:")):
                outside.append(route.request.url)
                return route.abort()
            return route.continue_()

        context.route("**/*", block)
        pg = context.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(out.as_uri())
        pg.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5", timeout=60_000)
        graphs = pg.evaluate("""Array.from(document.querySelectorAll('.js-plotly-plot')).map(
            g => [g.id, g.querySelectorAll('svg.main-svg').length, (g.data || []).length])""")
        assert {g[0] for g in graphs} >= {"pareto", "strip", "curve", "hypervolume", "parallel"}, graphs
        assert all(n_svg > 0 and n_data > 0 for _, n_svg, n_data in graphs), graphs

        shot = tmp_path / "page.png"
        pg.screenshot(path=str(shot), full_page=True)
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank

        default = pg.inner_text("#detail-trial")
        # the selected front trial's heatmaps beside the vanilla backbone's, inlined, labelled with the classes
        cells = pg.evaluate("""Array.from(document.querySelectorAll('#heatmaps table.heatmaps img')).map(
            i => [i.src.slice(0, 22), i.naturalWidth, i.closest('td').innerText])""")
        assert len(cells) >= 8 * 3, cells[:3]  # 8 images: the image, vanilla's and this trial's heatmaps at least
        assert all(src == "data:image/png;base64," and width == 32 for src, width, _ in cells)
        assert any("predicted" in text for _, _, text in cells) and "T-shirt/top" in pg.inner_text("#heatmaps")
        targets = pg.evaluate("""(() => { const gd = document.getElementById('pareto');
            const i = gd.data.findIndex(t => t.meta && t.meta.kind === 'front');
            const paths = gd.querySelectorAll('.scatterlayer .trace')[i].querySelectorAll('.points path');
            return Array.from(paths).map((p, k) => { const b = p.getBoundingClientRect();
                return [gd.data[i].customdata[k][1], b.x + b.width / 2, b.y + b.height / 2]; }); })()""")
        assert targets, "no front point drawn"
        trial, x, y = next((t for t in targets if f"trial {t[0]}" != default), targets[0])
        pg.mouse.move(x, y)
        pg.mouse.click(x, y)
        pg.wait_for_function(f"document.getElementById('detail-trial').textContent === 'trial {trial}'", timeout=10_000)
        assert '"backbone": "mobilenetv2"' in pg.inner_text("#arch-json")
        assert pg.evaluate("document.getElementById('curve').data.length") == 2
        browser.close()
    assert not outside, outside
    assert not errors, errors


def test_committed_example_run_opens():
    example = REPO / "results" / "examples" / "mobilenetv2_ulsam-cpu-budget"
    data = load_run(example)
    assert len(data.trials) == 8 and (data.trials["status"] == "complete").all()
    committed = pd.read_csv(example / "front.csv")  # the front rebuilt from the study is the one written then
    assert sorted(data.front["trial"]) == sorted(committed["trial"]) and data.front["test_acc"].notna().all()
    vanilla = data.trials[data.trials["vanilla"]].iloc[0]
    assert (data.front["flops"] < vanilla["flops"]).all() and data.front["val_acc_final"].max() > vanilla["val_acc_final"]
    assert data.heatmap_images is not None and data.front["test_top5"].notna().all()
    html = build_page([data])
    assert "mobilenetv2_ulsam/mobilenetv2_ulsam-cpu-budget" in html
    drawn = [t for t in _figure(html, "pareto")["data"] if t.get("meta", {}).get("kind") == "complete"][0]
    assert sorted(c[1] for c in drawn["customdata"]) == sorted(data.trials["trial"])  # its 8 trials are drawn
    table = re.search(r'<table class="sortable" id="front-table">.*?</table>', html, re.S).group(0)
    assert sorted(map(int, re.findall(r'data-trial="(\d+)"', table))) == sorted(committed["trial"])
