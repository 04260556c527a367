"""Notebook 02's ipywidgets player in a real browser: JupyterLab + headless Chromium.

Run with ``make browser-test`` (pyproject's addopts keep tests/browser out of ``make test``;
naming the folder on the command line runs it). A missing Chromium or playwright FAILS this
test with the install command; it never skips.

What it does: starts the venv's JupyterLab on 127.0.0.1 (free port, token, temporary root dir,
all workbook and Jupyter folders in temp dirs), copies notebook 02 there with the smoke
parameters injected by papermill (``prepare_only``), opens it at ``/lab/tree/<name>``, runs
Run > Run All Cells, finds the player (sample slider, Play, frame slider, Output with the
frame figure), moves the frame slider and then the sample slider with the keyboard, and checks
that the figure follows. The question and its options are drawn into that figure (below the
timeline), so the question block is compared as the image rows under the part a frame move
changes. Screenshots at 1280x800 (and the player's figure as received) go to
``outputs/browser/`` (git-ignored); a failure leaves ``02_player_failure*.png`` there.
"""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from lab_harness import (CHROMIUM, CHROMIUM_ARGS, INSTALL_HINT, REPO, BrowserTestError,
                         LabServer, prepare_notebook)
from lab_ui import (decode_img, kernel_status, open_notebook, run_all, wait_kernel_idle,
                    wait_notebook_done)

NOTEBOOK = REPO / "notebooks" / "02_pseudo_videos.ipynb"
SCREENSHOTS = REPO / "outputs" / "browser"
VIEWPORT = {"width": 1280, "height": 800}
PARAMS = {"RUN_NAME": "browser", "PROFILE": "smoke", "N": 24, "N_PREVIEWS": 1, "EXPORT_N": 0,
          "INTERACTIVE": True}
PROBE = ('import sys, lib, lib.paths\n'
         'print("KERNEL-PROBE", sys.prefix, lib.__file__, lib.paths.outputs_dir(), sep="|")')
RUN_TIMEOUT_S = 300  # Run All on the smoke profile: about 20 s on 2 cores
WIDGET_TIMEOUT_S = 60
# The player's image must stay the same this long to count as redrawn. The kernel status is
# not enough: widget messages may run on a kernel subshell while the status bar says idle.
SETTLE_S = 2.0
FRAME_STEPS = 2  # ArrowRight presses on the frame slider
HIGHLIGHT = (0xB7, 0xE4, 0xC7)  # lib.preview.draw_qa's band behind the right option


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: {INSTALL_HINT}", pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"python package playwright is missing: {INSTALL_HINT}", pytrace=False)


@contextmanager
def lab_server(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    prepare_notebook(NOTEBOOK, root / "02_player.ipynb", PARAMS, probe=PROBE)
    with LabServer(root, tmp_path, tmp_path / "lab.log") as server:
        server.notebook = "02_player.ipynb"
        yield server


@contextmanager
def chromium_page(lab: LabServer):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                        headless=True, timeout=60_000)
        except Exception as e:
            raise BrowserTestError(f"Chromium did not start ({e}); {INSTALL_HINT}") from e
        try:
            pg = browser.new_page(viewport=VIEWPORT)
            pg.console_errors = []
            pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
            yield pg
        finally:
            lab.remember_kernels()
            browser.close()


def _failure_screenshot(page) -> None:
    try:
        page.screenshot(path=str(SCREENSHOTS / "02_player_failure.png"))
        src = page.locator(".widget-output img").last.get_attribute("src", timeout=5000)
        (SCREENSHOTS / "02_player_failure_figure.png").write_bytes(
            base64.b64decode(src.split(",", 1)[1]))
    except Exception:  # noqa: BLE001 - the test's own failure is what matters
        pass


class Player:
    """The interactive_preview VBox: [HBox[sample slider, Play, frame slider], Output]."""

    def __init__(self, page, root):
        self.page, self.root = page, root
        self.sliders = root.locator(".widget-slider")
        self.imgs = root.locator(".widget-output img")

    def slider(self, label: str):
        return self.sliders.filter(has=self.page.locator(".widget-label", has_text=label)).first

    def value(self, label: str) -> str:
        return (self.slider(label).locator(".widget-readout").text_content() or "").strip()

    def press(self, label: str, key: str, times: int = 1) -> None:
        handle = self.slider(label).locator(".noUi-handle")
        handle.focus()
        for _ in range(times):
            handle.press(key)

    def src(self) -> str | None:
        return self.imgs.first.get_attribute("src") if self.imgs.count() == 1 else None

    def settled_src(self, previous: str | None, step: str, timeout_s: float = 60) -> str:
        """Wait for exactly one image, different from ``previous``, unchanged for SETTLE_S
        seconds with the kernel idle; return its data URL."""
        deadline = time.monotonic() + timeout_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            src = self.src()
            if src != last:
                last, since = src, time.monotonic()
            elif (src and src != previous and kernel_idle(self.page)
                  and time.monotonic() - since >= SETTLE_S):
                return src
            time.sleep(0.1)
        raise BrowserTestError(
            f"{step}: the player's image did not change and settle within {timeout_s:.0f} s "
            f"(images in the Output: {self.imgs.count()}, sample={self.value('sample')!r}, "
            f"frame={self.value('frame')!r}, console errors: {self.page.console_errors[-3:]})")

    def show(self) -> None:
        """Scroll the notebook so that the player's top is at the top of the viewport."""
        self.root.evaluate("e => e.scrollIntoView({block: 'start'})")
        time.sleep(0.3)

    def screenshot(self, name: str, src: str) -> None:
        """The 1280x800 viewport with the player at its top, and the player's whole figure
        as the page received it (taller than the notebook area for some samples)."""
        self.show()
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
        (SCREENSHOTS / f"{name}_figure.png").write_bytes(base64.b64decode(src.split(",", 1)[1]))


def kernel_idle(page) -> bool:
    return kernel_status(page) == "idle"


def find_player(page) -> Player:
    root = page.locator(".widget-vbox").filter(has=page.locator(".widget-play")).filter(
        has=page.locator(".widget-output")).last
    try:
        root.wait_for(state="attached", timeout=WIDGET_TIMEOUT_S * 1000)
        root.locator(".widget-output img").first.wait_for(state="attached",
                                                          timeout=WIDGET_TIMEOUT_S * 1000)
    except Exception as e:
        raise BrowserTestError(
            f"widget not found: no player (VBox with Play, sliders and an Output image) within "
            f"{WIDGET_TIMEOUT_S} s after Run All; widget views on the page: "
            f"{page.locator('.jupyter-widgets').count()}, console errors: "
            f"{page.console_errors[-3:]}") from e
    player = Player(page, root)
    labels = [t.strip() for t in root.locator(".widget-slider .widget-label").all_text_contents()]
    if labels != ["sample", "frame"]:
        raise BrowserTestError(f"widget not found: player sliders are {labels}, "
                               "expected ['sample', 'frame']")
    return player


def changed_rows(a, b):
    """Indices of the rows in which two same-size images differ."""
    import numpy as np

    return np.nonzero((a != b).any(axis=(1, 2)))[0]


def assert_drawn(img, what: str) -> None:
    """Not blank (a race between redraws once showed white or transparent figures) and with
    the right option highlighted."""
    rgb = img[..., :3]
    dark = ((rgb < 128).any(axis=-1) & (img[..., 3] > 0)).mean()
    assert dark > 0.01, f"{what}: the player's figure is blank ({dark:.2%} dark pixels)"
    hl = (rgb == HIGHLIGHT).all(axis=-1).sum()
    assert hl > 100, f"{what}: no highlighted (green) answer in the question block ({hl} px)"


def test_player_in_jupyterlab(tmp_path: Path):
    _require_browser()  # fails (never skips) without Chromium or playwright
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("02_player_*.png"):
        old.unlink()
    with lab_server(tmp_path) as lab, chromium_page(lab) as page:
        try:
            check_player(lab, page)
        except BaseException:
            _failure_screenshot(page)  # outputs/browser/02_player_failure*.png
            raise


def check_player(lab, page) -> None:
    # 1. open and run the notebook through the UI
    open_notebook(page, lab.url(f"/lab/tree/{lab.notebook}"))
    run_all(page)
    cells = wait_notebook_done(page, RUN_TIMEOUT_S)
    lab.remember_kernels()
    probe = next((c["text"] for c in cells if "KERNEL-PROBE|" in c["text"]), "")
    assert probe, "notebook did not run: the kernel probe cell printed nothing"
    prefix, lib_file, outputs = probe.split("KERNEL-PROBE|", 1)[1].strip().split("|")[:3]
    assert Path(prefix) == REPO / ".venv", f"kernel is not the project venv's python: {prefix}"
    assert Path(lib_file).parent == REPO / "lib", f"kernel imported lib from {lib_file}"
    assert Path(outputs).is_relative_to(lab.tmp), f"kernel writes outputs to {outputs}"

    # 2. the player, as rendered after Run All
    player = find_player(page)
    assert (player.value("sample"), player.value("frame")) == ("0", "0")
    src0 = player.settled_src(None, "player's first figure")
    img0 = decode_img(src0)
    assert_drawn(img0, "before")
    player.screenshot("02_player_1_before", src0)

    # 3. frame slider: the frame changes, the question block (bottom of the figure) does not
    player.press("frame", "ArrowRight", FRAME_STEPS)
    src1 = player.settled_src(src0, f"frame slider moved {FRAME_STEPS} steps")
    assert player.value("frame") == str(FRAME_STEPS), player.value("frame")
    assert player.value("sample") == "0"
    img1 = decode_img(src1)
    assert_drawn(img1, "after frame move")
    assert img1.shape == img0.shape, "a frame move changed the figure's size (question block?)"
    rows = changed_rows(img0, img1)
    assert len(rows), "the frame image did not change after the frame slider moved"
    qa_top = rows.max() + 1  # the question block lies below everything a frame move changes
    qa_height = img0.shape[0] - qa_top
    assert qa_height > 60 and (img0[qa_top:, :, :3] < 128).any(), (
        f"no unchanged question block under the frame: only {qa_height} rows of "
        f"{img0.shape[0]} stay the same when the frame moves")
    player.screenshot("02_player_2_after_frame", src1)

    # 4. sample slider: a new sample resets the frame to 0 and shows another question
    player.press("sample", "ArrowRight")
    src2 = player.settled_src(src1, "sample slider moved")
    assert (player.value("sample"), player.value("frame")) == ("1", "0")
    img2 = decode_img(src2)
    assert_drawn(img2, "after sample move")
    # Bottom-aligned, so that a longer or shorter question block still lines up; most of its
    # text rows must differ (tick labels alone, for another video length, would be a few).
    # Left-aligned too: another question's text may widen or narrow the tight-cropped figure.
    h, w = min(qa_height, img2.shape[0]), min(img1.shape[1], img2.shape[1])
    qa1, qa2 = img1[-h:, :w], img2[-h:, :w]
    text = ((qa1[..., :3] < 128).any(axis=(1, 2)) | (qa2[..., :3] < 128).any(axis=(1, 2)))
    differ = (qa1 != qa2).any(axis=(1, 2))
    share = (differ & text).sum() / max(1, text.sum())
    assert share > 0.5, (f"the question block did not change after the sample slider moved "
                         f"({share:.0%} of its text rows differ)")
    player.screenshot("02_player_3_after_sample", src2)

    wait_kernel_idle(page, 30, "after the player interactions")
    assert not [e for e in page.console_errors if "widget" in e.lower()], page.console_errors
