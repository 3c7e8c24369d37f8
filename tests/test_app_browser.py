"""The web demo in a real headless browser: Debian's chromium + chromium-driver, driven by selenium.

Starts ``python -m recon.app`` on a tiny random checkpoint, uploads the astronaut, waits for the result,
checks the Gaussian viewer drew something and that the three downloads parse. With
``ANYHEAD_UPDATE_DOCS=1`` the page screenshot is written to docs/images/demo_screenshot.png.
"""
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from tests.tiny_model import write_tiny_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                                                     "(make test installs them: apt-get install chromium chromium-driver)")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = tmp_path_factory.mktemp("app")
    ck = write_tiny_checkpoint(d / "tiny.safetensors")
    port = _free_port()
    log = open(d / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "recon.app", "--checkpoint", str(ck), "--port", str(port),
                             "--work-dir", str(d / "work")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"demo did not start: {(d / 'app.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield url, d
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1100",
              "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def test_upload_reconstruct_view_and_download(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from recon.export import load_ply

    url, d = server
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(photo, quality=92)
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#photo input[type=file]"))).send_keys(str(photo))
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#photo img")))
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    links = wait.until(lambda b: [a for a in b.find_elements(By.CSS_SELECTOR, "#downloads a[href]")] or None)
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#viewer canvas")))
    for sel in ("#crop img", "#matte img", "#landmarks img", "#pose img", "#turntable img"):
        assert browser.find_elements(By.CSS_SELECTOR, sel), f"{sel} not shown"
    assert "Gaussians" in browser.find_element(By.CSS_SELECTOR, "#summary").text
    # the viewer drew the splats: its canvas is not a flat colour
    canvas = browser.find_element(By.CSS_SELECTOR, "#viewer canvas")
    std = 0.0
    for _ in range(20):
        shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("RGB")).astype(float)
        std = shot.std(axis=(0, 1)).max()
        if std > 3:
            break
        time.sleep(0.5)
    browser.save_screenshot(str(tmp_path / "demo.png"))
    if os.environ.get("ANYHEAD_UPDATE_DOCS"):
        shutil.copyfile(tmp_path / "demo.png", ROOT / "docs/images/demo_screenshot.png")
    assert std > 3, f"the 3D viewer canvas is blank (pixel std {std:.2f})"
    # the downloads parse
    got = {}
    for a in links:
        href = a.get_attribute("href")
        name = Path(urllib.request.urlparse(href).path).name
        got[name] = urllib.request.urlopen(href, timeout=30).read()
    assert set(got) == {"head.ply", "head.splat", "head_mesh.ply"}, got.keys()
    (tmp_path / "head.ply").write_bytes(got["head.ply"])
    g, header = load_ply(tmp_path / "head.ply")
    assert g.num == 256 and len(got["head.splat"]) == 32 * g.num
    import trimesh

    mesh = trimesh.load(io.BytesIO(got["head_mesh.ply"]), file_type="ply")
    assert len(mesh.vertices) > 0
