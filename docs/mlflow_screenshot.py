"""Photograph MLflow's UI comparing the runs of an experiment, with headless Chromium driven over the
DevTools protocol (aiohttp, which MLflow's dependencies bring; no browser-automation package needed).

    python docs/mlflow_screenshot.py URL OUT.png [--width 1600] [--height 1300]

URL is the page to open (e.g. http://127.0.0.1:5077/#/experiments/1/runs?compareRunsMode=CHART). The
script waits for the charts, closes the MLflow Assistant side panel (it covers a quarter of the page
in a fresh browser), and saves a PNG reduced to 128 colours. `docs/mlflow_screenshot.sh` calls it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request

# The side panel's close button: the rightmost button in the page's top 60 pixels, right of the main view.
_CLOSE_ASSISTANT = """
(() => {
  if (!document.body.innerText.includes('MLflow Assistant')) return 'no assistant';
  const top = [...document.querySelectorAll('button')].map(b => [b, b.getBoundingClientRect()])
      .filter(([b, r]) => r.top < 60 && r.width > 0 && r.left > window.innerWidth * 0.75);
  if (!top.length) return 'no button';
  top.sort((x, y) => y[1].left - x[1].left);
  top[0][0].click();
  return 'closed';
})()
"""


# Type into the "Search metric charts" box (a React input: set the value natively, then say it changed).
_FILTER_CHARTS = """
((text) => {
  const box = [...document.querySelectorAll('input')].find(i => /search metric charts/i.test(i.placeholder || ''));
  if (!box) return 'no search box';
  Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(box, text);
  box.dispatchEvent(new Event('input', {bubbles: true}));
  return 'filtered';
})(%s)
"""


async def _shoot(url: str, width: int, height: int, port: int, charts: str) -> bytes:
    import aiohttp

    targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
    page = next(t for t in targets if t["type"] == "page")
    async with aiohttp.ClientSession() as session, session.ws_connect(page["webSocketDebuggerUrl"],
                                                                      max_msg_size=0) as ws:  # fmt: skip
        counter = 0

        async def call(method: str, **params):
            nonlocal counter
            counter += 1
            await ws.send_json({"id": counter, "method": method, "params": params})
            async for message in ws:
                data = json.loads(message.data)
                if data.get("id") == counter:
                    return data.get("result", {})
            raise RuntimeError("the browser closed the connection")

        async def evaluate(expression: str):
            result = await call("Runtime.evaluate", expression=expression, returnByValue=True)
            return result.get("result", {}).get("value")

        await call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        deadline = time.monotonic() + 90
        while not await evaluate("document.body && document.body.innerText.includes('Model metrics')"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url}: no 'Model metrics' section after 90 s")
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # the charts draw after their section appears
        print("assistant:", await evaluate(_CLOSE_ASSISTANT))
        if charts:
            print("charts:", await evaluate(_FILTER_CHARTS % json.dumps(charts)))
        await asyncio.sleep(10)  # the charts redraw at their new width
        shot = await call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--port", type=int, default=9333)
    parser.add_argument("--charts", default="", help="only the charts whose metric matches (the UI's search box)")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        parser.error("no Chromium found (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                 f"--remote-debugging-port={args.port}", f"--user-data-dir={profile}",
                                 f"--window-size={args.width},{args.height}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            for _ in range(60):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{args.port}/json/version", timeout=2)
                    break
                except OSError:
                    time.sleep(0.5)
            png = asyncio.run(_shoot(args.url, args.width, args.height, args.port, args.charts))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=128).save(args.out, optimize=True)  # a UI's few colours: small and sharp
    print(f"{args.out}: {image.width}x{image.height}")


if __name__ == "__main__":
    main()
