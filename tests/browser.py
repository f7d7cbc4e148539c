"""Loading an HTML map in headless Chromium (Debian's `chromium`) with every host name unresolvable, so
that a page that needs the network shows nothing, then clicking each footprint and reading its popup.

A probe script is appended to a copy of the page: once the page has loaded, it dispatches a click on
every clickable Leaflet path (one per footprint), reads the popup Leaflet opens, and writes what it
found into the DOM, which `chromium --dump-dom` prints. Missing Chromium fails the test (`apt-get
install -y chromium`; .ci/run installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PROBE = """<script>
window.addEventListener('load', function () {
  var out = {leaflet: typeof L !== 'undefined', features: [], layers: [], labels: [], legend: ''};
  document.querySelectorAll('path.leaflet-interactive').forEach(function (p) {
    var r = p.getBoundingClientRect();
    p.dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true, view: window,
                                             clientX: r.x + r.width / 2, clientY: r.y + r.height / 2}));
    var all = document.querySelectorAll('.leaflet-popup-content');  // a closed one fades out for 200 ms
    var c = all.length ? all[all.length - 1] : null;
    out.features.push({stroke: p.getAttribute('stroke'), fill: p.getAttribute('fill'),
                       popup: c ? c.innerText : null});
  });
  document.querySelectorAll('.leaflet-control-layers-overlays label').forEach(function (s) {
    out.layers.push(s.innerText.trim());
  });
  document.querySelectorAll('.ingester-label').forEach(function (d) { out.labels.push(d.innerText); });
  var legend = document.querySelector('.ingester-legend');
  out.legend = legend ? legend.innerText : '';
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("headless Chromium is needed for the HTML map tests and is not installed: "
                "`apt-get install -y chromium` (Debian) — .ci/run installs it", pytrace=False)


def browse(page: Path, workdir: Path) -> dict:
    """What the probe saw on `page` (see the module docstring)."""
    text = page.read_text(encoding="utf-8")
    probed = workdir / f"probed-{page.name}"
    probed.write_text(text.replace("</html>", PROBE + "\n</html>"), encoding="utf-8")
    profile = workdir / "chromium-profile"
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND",
               "--window-size=1200,900", "--virtual-time-budget=15000", "--dump-dom", probed.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert match, f"the probe did not run (exit {result.returncode}): {result.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(match.group(1)))
