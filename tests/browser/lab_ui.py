"""Driving JupyterLab's UI with playwright: open a notebook, Run All, wait, read outputs.

Every wait has a timeout and fails with a ``BrowserTestError`` that names the step.
Cell prompts are read with ``textContent``: Lab's default windowing (content-visibility) leaves
``innerText`` empty for cells outside the viewport.
"""

from __future__ import annotations

import base64
import io
import time

from lab_harness import BrowserTestError

# The status bar's kernel item, "Python 3 (ipykernel) | Idle" (Busy, Starting, Connecting...).
KERNEL_ITEM = '.jp-StatusBar-TextItem[title^="Change kernel"]'

_CELL_STATE_JS = """() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  return cells.map(c => {
    const p = c.querySelector('.jp-InputPrompt');
    const outs = [...c.querySelectorAll('.jp-OutputArea-output')];
    return {
      prompt: p ? p.textContent.trim() : '',
      source: [...c.querySelectorAll('.jp-InputArea-editor .cm-line')]
                .map(l => l.textContent).join('\\n'),
      stderr: outs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr')
                  .map(o => o.textContent).join('\\n'),
      text: outs.map(o => o.textContent).join('\\n'),
    };
  });
}"""


def kernel_status(page) -> str:
    """"idle", "busy", "starting", ... as Lab's status bar shows it; "" before it shows one."""
    el = page.query_selector(KERNEL_ITEM)
    text = (el.text_content() or "") if el else ""
    return text.rsplit("|", 1)[1].strip().lower() if "|" in text else ""


def open_notebook(page, url: str, timeout_s: float = 90) -> None:
    """Load ``/lab/tree/<name>`` and wait for its cells and an idle kernel."""
    step = "open notebook in JupyterLab"
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=timeout_s * 1000)
    except Exception as e:  # playwright's TimeoutError and navigation errors
        raise BrowserTestError(f"{step}: no notebook cells within {timeout_s:.0f} s ({e})") from e
    wait_kernel_idle(page, timeout_s, step + ": kernel did not start")


def wait_kernel_idle(page, timeout_s: float, step: str) -> None:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        status = kernel_status(page)
        if status == "idle":
            return
        time.sleep(0.2)
    raise BrowserTestError(f"{step}: kernel status {status!r} after {timeout_s:.0f} s")


def run_all(page) -> None:
    """Run > Run All Cells, through Lab's main menu."""
    try:
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu .lm-Menu-item", has_text="Run All Cells").first.click()
    except Exception as e:
        raise BrowserTestError(f"Run > Run All Cells: menu not usable ({e})") from e


def cell_states(page) -> list[dict]:
    return page.evaluate(_CELL_STATE_JS)


def wait_notebook_done(page, timeout_s: float) -> list[dict]:
    """Wait until no cell is queued or running and the kernel is idle; fail (with the failing
    cell's traceback) if execution stopped before the last code cell."""
    start_deadline = time.monotonic() + min(60.0, timeout_s)
    while not any(c["prompt"] not in ("", "[ ]:") for c in cell_states(page)):
        if time.monotonic() > start_deadline:
            raise BrowserTestError("notebook did not run: no cell started within 60 s of "
                                   "Run > Run All Cells")
        time.sleep(0.2)
    deadline = time.monotonic() + timeout_s
    cells: list[dict] = []
    while time.monotonic() < deadline:
        cells = cell_states(page)
        if (cells and not any(c["prompt"] == "[*]:" for c in cells)
                and kernel_status(page) == "idle"):
            break
        time.sleep(0.5)
    else:
        running = [i for i, c in enumerate(cells) if c["prompt"] == "[*]:"]
        raise BrowserTestError(f"notebook did not run: still running after {timeout_s:.0f} s "
                               f"(code cells queued or running: {running})")
    done = [i for i, c in enumerate(cells) if c["prompt"] not in ("", "[ ]:", "[*]:")]
    if not done or done[-1] != len(cells) - 1:
        failed = done[-1] if done else 0
        c = cells[failed]
        raise BrowserTestError(
            f"notebook did not run: execution stopped at code cell {failed} of {len(cells)} "
            f"(prompt {c['prompt']!r}):\n{c['source'][:400]}\n--- output ---\n"
            f"{(c['stderr'] or c['text'])[-3000:]}")
    return cells


def decode_img(src: str):
    """An ``<img>``'s data URL as an RGBA numpy array."""
    import numpy as np
    from PIL import Image

    if not src or not src.startswith("data:image/png;base64,"):
        raise BrowserTestError(f"player image is not an inline PNG: {str(src)[:60]!r}")
    data = base64.b64decode(src.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA")).astype(np.int16)
