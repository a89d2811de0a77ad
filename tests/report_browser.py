"""Test helper: open a Snakemake 9 HTML report in headless Chromium and say what it renders.

The report is a single-page React app: the results live in a global ``results`` object
({path: {caption, mime_type, data_uri, ...}}) and nothing but the navigation is in the DOM until
a user clicks. So a copy of the report gets a small script appended that clicks like a user would
(category in the side bar, then the eye button of a result row, then its info button) and writes
what it saw as JSON into a <pre id="thermocg-probe"> element, which ``--dump-dom`` returns.
The report itself is not modified.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")

# Headless and offline: no sandbox (root in CI), no GPU, no network services, a fresh profile.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--window-size=1600,1000",
]

PROBE_JS = r"""
(async function () {
  const wanted = __WANTED__;  // [[category, result path], ...]; the last one stays on screen
  const out = { results: {}, errors: [] };
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function waitFor(find, what) {
    for (let i = 0; i < 100; i++) {
      const found = find();
      if (found) return found;
      await sleep(50);
    }
    throw new Error("timed out waiting for " + what);
  }
  const navLink = (text) => [...document.querySelectorAll("nav a")].find((a) => a.textContent.trim() === text);
  const row = (path) => [...document.querySelectorAll("nav tr")].find((tr) => {
    const cell = tr.querySelector("td");
    return cell && cell.textContent.trim() === path;
  });
  try {
    await waitFor(() => navLink("Workflow"), "the report's side bar");  // React renders after load
  } catch (error) {
    out.errors.push(error.message);
  }
  for (const [category, path] of wanted) {
    const seen = { category: category };
    out.results[path] = seen;
    try {
      if (!navLink(category) && navLink("Results")) navLink("Results").click();  // back from an info view
      (await waitFor(() => navLink(category), "category " + category)).click();
      const eye = (await waitFor(() => row(path), "row " + path)).querySelector('a[iconname="eye"]');
      seen.mime_type = results[path].mime_type;
      if (seen.mime_type.startsWith("image/")) {
        eye.click();
        const img = await waitFor(() => {
          const found = [...document.querySelectorAll("#app img")].find((i) => i.src === results[path].data_uri);
          return found && found.complete ? found : null;
        }, "image of " + path);
        Object.assign(seen, { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
                              shownWidth: img.clientWidth, shownHeight: img.clientHeight });
      } else {
        seen.href = eye.getAttribute("href");  // tables are offered as a download link
        seen.download = eye.getAttribute("download");
      }
      row(path).querySelector('a[iconname="information-circle"]').click();
      await sleep(200);
      seen.info_text = document.querySelector("nav").innerText;
    } catch (error) {
      out.errors.push(path + ": " + error.message);
    }
  }
  const pre = document.createElement("pre");
  pre.id = "thermocg-probe";
  pre.style.display = "none";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def chromium_path():
    """The Chromium executable on PATH, or None."""
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _probe_page(report_html, wanted, directory):
    text = Path(report_html).read_text()
    script = "<script>" + PROBE_JS.replace("__WANTED__", json.dumps(wanted)) + "</script>"
    end = text.rfind("</body>")  # the last one: the bundled libraries contain the string too
    page = Path(directory) / "probe.html"
    page.write_text(text[:end] + script + text[end:])
    return page


def _chromium(page, profile, *action, timeout):
    command = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=15000",
               *action, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def probe(report_html, wanted, directory, screenshot=None, timeout=120):
    """Click through ``wanted`` [(category, result path), ...] of a report; return what rendered.

    Returns {"results": {path: {...}}, "errors": [...]}: for images naturalWidth/naturalHeight
    (the decoded PNG) and shownWidth/shownHeight (on screen), for other files the download href;
    for both the side bar text after clicking the info button (the caption). With
    ``screenshot`` (a .png path) a second run photographs the final state: the last result.
    """
    directory = Path(directory)
    page = _probe_page(report_html, wanted, directory)
    result = _chromium(page, directory / "profile-dom", "--dump-dom", timeout=timeout)
    match = re.search(r'<pre id="thermocg-probe"[^>]*>(.*?)</pre>', result.stdout, re.S)
    if match is None:
        raise RuntimeError(f"the probe did not finish (chromium rc {result.returncode}):\n{result.stderr[-3000:]}")
    found = json.loads(html.unescape(match.group(1)))
    if screenshot is not None:
        shot = _chromium(page, directory / "profile-shot", f"--screenshot={Path(screenshot).resolve()}", timeout=timeout)
        if not Path(screenshot).exists():
            raise RuntimeError(f"no screenshot (chromium rc {shot.returncode}):\n{shot.stderr[-3000:]}")
    return found
