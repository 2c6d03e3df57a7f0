"""End to end: the main job's logs opened by a real ``tensorboard`` in a real headless Chromium (Playwright).

What a newcomer sees is checked from the rendered page: the Graphs dashboard lands on the main
job's run, ``vgg19`` expands into ``block1 ... block5`` and ``classifier``, the ``optimized`` run
names the fused ops, and the Text dashboard holds the pool-shape table.  Screenshots go to
``logs/browser/`` (docs/tensorboard.md shows copies of them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tfbench.inspection import main_job

CHROMIUM = os.environ.get("TFBENCH_CHROMIUM", "/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "logs" / "browser"
POOL_SHAPES = ["(1, 112, 112, 64)", "(1, 56, 56, 128)", "(1, 28, 28, 256)", "(1, 14, 14, 512)", "(1, 7, 7, 512)"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard(logdir: Path, timeout: float = 120) -> Iterator[str]:
    """A real TensorBoard on 127.0.0.1 and a free port; yields its URL, always killed afterwards."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "CI": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/data/plugins_listing", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"tensorboard did not answer on {url} within {timeout} s") from None
                time.sleep(0.5)
        yield url
    finally:
        server.kill()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("logs")
    # A second experiment whose runs sort before "vgg19" alphabetically: the Graphs dashboard must still
    # open on the main job's run.
    result = subprocess.run([sys.executable, "-m", "tfbench.graphs", "show", "conv_bias_relu", "--image-size", "8",
                             "--logdir", str(logdir)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "tfbench.vgg_graph", "--no-bench", "--no-xla", "--profile",
                             "--logdir", str(logdir)], capture_output=True, text=True, timeout=900,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return logdir


@pytest.fixture(scope="module")
def url(logdir) -> Iterator[str]:
    """One TensorBoard for the tests of this file."""
    with tensorboard(logdir) as address:
        yield address


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: scripts/test.sh installs Debian's chromium"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def node_labels(page) -> list[str]:
    """The names of the graph nodes drawn now (each label's <title> holds the full name)."""
    return page.locator("g.node > text > title").all_text_contents()


def expand(page, name: str) -> None:
    """Double-click the drawn group node ``name`` (as a person does) and wait for its children."""
    before = len(node_labels(page))
    index = node_labels(page).index(name)
    node = page.locator("g.node > text > title").nth(index).locator("xpath=../..")  # title -> text -> g.node
    node.locator("rect").first.dblclick()
    deadline = time.monotonic() + 30
    while len(node_labels(page)) <= before and time.monotonic() < deadline:
        page.wait_for_timeout(250)


def shoot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
    return path


def test_graphs_dashboard_opens_on_the_main_job_with_blocks_and_fusion(url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/#graphs")
    page.locator("g.node > text > title", has_text="vgg19").first.wait_for(state="attached", timeout=90_000)
    run_box = page.locator("paper-dropdown-menu").first.locator("input").first
    assert f"{main_job.RUN_FOLDER}/" in run_box.input_value() and run_box.input_value().endswith("/graph")
    assert {"images", "vgg19", "logits"} <= set(node_labels(page))
    shoot(page, "graphs_top_level")
    expand(page, "vgg19")
    labels = node_labels(page)
    assert {"block1", "block2", "block3", "block4", "block5", "classifier"} <= set(labels), labels
    expand(page, "block1")
    assert {"conv1_1", "conv1_2", "pool1"} <= set(node_labels(page))
    shoot(page, "graphs_vgg19_blocks")

    page.locator("paper-dropdown-menu").first.click()
    page.locator("paper-item", has_text="/optimized").first.click()
    page.wait_for_timeout(1000)
    page.locator("g.node > text > title", has_text="vgg19").first.wait_for(state="attached", timeout=60_000)
    assert run_box.input_value().endswith("/optimized")
    for name in ("vgg19", "block1", "conv1_1"):
        expand(page, name)
    labels = node_labels(page)
    assert "FusedConv2D+BiasAdd+Relu" in labels and "Conv2D" not in labels, labels
    assert {"weights", "biases"} <= set(labels)
    shoot(page, "graphs_optimized_fused")


def test_text_and_hparams_dashboards_hold_the_tables(url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/#text")
    table = page.locator("table", has_text="(1, 7, 7, 512)").first
    table.wait_for(timeout=90_000)
    text = table.inner_text()
    for shape in POOL_SHAPES:
        assert shape in text
    assert "143,667,240" in text and "block1_conv1" in text
    assert page.get_by_text("where to click").count() >= 1
    shoot(page, "text_guide")
    table.scroll_into_view_if_needed()
    shoot(page, "text_layer_table")

    page.goto(f"{url}/#hparams")
    page.get_by_text("tf.function", exact=True).first.wait_for(timeout=90_000)
    assert page.get_by_text("eager", exact=True).count() >= 1
    shoot(page, "hparams")

    page.goto(f"{url}/#images")
    page.get_by_text("1_photo_with_crop_box").first.wait_for(timeout=90_000)
    page.wait_for_timeout(2000)
    shoot(page, "images")


def test_profile_tab_opens_offline_with_the_trace(url, browser):
    """``--profile``: the PROFILE tab (tensorboard-plugin-profile) lists the run; its Trace Viewer loads the steps."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    traces: list[bytes] = []
    page.on("response", lambda r: traces.append(r.body()) if "trace_viewer" in r.url and r.ok else None)
    page.goto(f"{url}/#profile")
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Overview Page").first.wait_for(timeout=90_000)
    assert frame.get_by_text(f"{main_job.RUN_FOLDER}/").count() >= 1
    frame.get_by_text("Overview Page").first.click()
    frame.locator("mat-option", has_text="Trace Viewer").first.click()
    deadline = time.monotonic() + 60
    while not any(b"tf.function" in body for body in traces) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
    page.wait_for_timeout(3000)
    shoot(page, "profile_trace_viewer")
    assert any(b"tf.function" in body and b"eager" in body for body in traces), [len(b) for b in traces]


@pytest.fixture(scope="module")
def inspect_url(tmp_path_factory) -> Iterator[str]:
    """``python -m tfbench.inspect`` on a small saved Keras model, in its own logdir and TensorBoard."""
    root = tmp_path_factory.mktemp("inspect")
    script = ("import keras\nkeras.utils.set_random_seed(0)\ni = keras.Input((16, 16, 3))\n"
              "x = keras.layers.Conv2D(8, 3, activation='relu')(i)\nx = keras.layers.GlobalAveragePooling2D()(x)\n"
              f"keras.Model(i, keras.layers.Dense(4)(x), name='tiny').save({str(root / 'tiny.keras')!r})\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "tfbench.inspect", str(root / "tiny.keras"), "--repeats", "1",
                             "--no-ablate", "--no-progress", "--logdir", str(root / "logs")],
                            capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    with tensorboard(root / "logs") as address:
        yield address


def test_inspect_run_has_its_text_cards_and_roofline_image(inspect_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{inspect_url}/#text")
    page.get_by_text("TF profiler, inference graph").first.wait_for(timeout=90_000)  # the cross-check line
    assert page.get_by_text("inspect/summary").count() >= 1
    assert page.locator("table", has_text="GlobalAveragePooling2D").count() >= 1  # the per-layer card
    shoot(page, "inspect_text")
    page.goto(f"{inspect_url}/#images")
    page.get_by_text("inspect/roofline_plot").first.wait_for(timeout=90_000)
    image = page.locator("img").first
    image.wait_for(timeout=60_000)
    deadline = time.monotonic() + 30
    while image.evaluate("img => img.naturalWidth") == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert image.evaluate("img => img.naturalWidth") > 500  # the roofline PNG (1000 px wide), not a broken icon
    shoot(page, "inspect_roofline")
