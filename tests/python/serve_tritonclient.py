"""End-to-end test of janus_serve with the PyPI tritonclient[http] client (a client nobody here wrote).

Usage: serve_tritonclient.py JANUS_SERVE RUN_DIR PORT PORT2 WORKDIR
Starts janus_serve on RUN_DIR, exercises health, metadata, every model (binary and JSON tensors), errors
(400/404/413/503), dynamic batching under concurrent load, and SIGTERM draining. Prints "ALL OK" at the end; any
failed check raises (non-zero exit)."""
import base64
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

serve_bin, run_dir, port, port2, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def start(port, *extra):
    log = open(os.path.join(work, f"serve_{port}.log"), "w")
    p = subprocess.Popen([serve_bin, "--run", run_dir, "--port", str(port), *extra], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"janus_serve exited {p.returncode}: " + open(log.name).read())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return p, log.name
        except Exception:
            time.sleep(0.1)
    p.kill()
    raise RuntimeError("janus_serve did not become ready: " + open(log.name).read())


def png(seed, size=40):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def raw_post(port, path, body, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def bytes_input(name, values, binary=True):
    arr = np.array(values, dtype=np.object_)
    i = httpclient.InferInput(name, list(arr.shape), "BYTES")
    i.set_data_from_numpy(arr, binary_data=binary)
    return i


def expect_error(fn, status, needle):
    try:
        fn()
    except InferenceServerException as e:
        check(str(e.status()) == str(status), f"expected HTTP {status}, got {e.status()}: {e.message()}")
        check(needle in e.message(), f"error '{e.message()}' lacks '{needle}'")
        return
    raise AssertionError(f"expected HTTP {status} ({needle}), got success")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def batch_sizes(text, model):
    out = {}
    for line in text.splitlines():
        if line.startswith(f'janus_infer_batch_size{{model="{model}",size="'):
            size = int(line.split('size="')[1].split('"')[0])
            out[size] = int(line.split()[-1])
    return out


server, log1 = start(port, "--max-batch", "16", "--max-delay-ms", "20", "--max-body-mb", "1")
try:
    c = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    # ---- health and metadata
    check(c.is_server_live() and c.is_server_ready(), "live/ready")
    md = c.get_server_metadata()
    check(md["name"] == "janus" and "binary_tensor_data" in md["extensions"], f"server metadata {md}")
    models = ["caption", "vqa", "embed_text", "embed_image", "generate"]
    for m in models:
        check(c.is_model_ready(m), f"{m} ready")
        mmd = c.get_model_metadata(m)
        check(mmd["name"] == m and mmd["inputs"] and mmd["outputs"], f"{m} metadata {mmd}")
    check([i["name"] for i in c.get_model_metadata("vqa")["inputs"]] == ["image", "question"], "vqa inputs")
    emb = c.get_model_metadata("embed_text")["outputs"][0]
    check(emb["datatype"] == "FP32" and emb["shape"][0] == -1 and emb["shape"][1] > 0, f"embed_text output {emb}")
    E = emb["shape"][1]
    check(c.get_model_config("caption")["max_batch_size"] == 16, "config max_batch_size")
    check(not c.is_model_ready("nope"), "unknown model not ready")
    check(sorted(m["name"] for m in c.get_model_repository_index()) == sorted(models), "repository index")

    imgs = [png(1), png(2), png(3, 56)]
    # ---- caption: binary (tritonclient's default) and JSON (base64) give the same captions
    r = c.infer("caption", [bytes_input("image", imgs)])
    caps = [x.decode() for x in r.as_numpy("caption")]
    check(len(caps) == 3 and all(isinstance(x, str) for x in caps), f"captions {caps}")
    r2 = c.infer("caption", [bytes_input("image", [base64.b64encode(b).decode() for b in imgs], binary=False)],
                 outputs=[httpclient.InferRequestedOutput("caption", binary_data=False)])
    check([x.decode() if isinstance(x, bytes) else x for x in r2.as_numpy("caption")] == caps, "JSON == binary captions")
    single = c.infer("caption", [bytes_input("image", imgs[1:2])]).as_numpy("caption")[0].decode()
    check(single == caps[1], "single-image caption equals its batched caption")

    # ---- vqa
    r = c.infer("vqa", [bytes_input("image", imgs[:2]), bytes_input("question", ["what colour is the circle?", "how many stars are there?"])])
    answers = json.load(open(os.path.join(run_dir, "answers.json")))
    got = [x.decode() for x in r.as_numpy("answer")]
    check(all(a in answers for a in got), f"answers {got} not in vocabulary {answers}")
    score = r.as_numpy("score")
    check(score.dtype == np.float32 and score.shape == (2,) and np.all((score >= 0) & (score <= 1)), f"scores {score}")

    # ---- embed_text / embed_image: [n, E], unit norm, batch-invariant
    texts = ["a red circle", "a blue star", "a green square"]
    e = c.infer("embed_text", [bytes_input("text", texts)]).as_numpy("embedding")
    check(e.shape == (3, E) and e.dtype == np.float32, f"embed_text shape {e.shape}")
    check(np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4), "embed_text unit norm")
    e1 = c.infer("embed_text", [bytes_input("text", texts[2:])]).as_numpy("embedding")
    check(np.allclose(e1[0], e[2], atol=1e-4), "embed_text batch invariance")
    ej = c.infer("embed_text", [bytes_input("text", texts, binary=False)],
                 outputs=[httpclient.InferRequestedOutput("embedding", binary_data=False)]).as_numpy("embedding")
    check(np.allclose(ej, e, atol=1e-5), "embed_text JSON == binary")
    ei = c.infer("embed_image", [bytes_input("image", imgs)]).as_numpy("embedding")
    check(ei.shape == (3, E) and np.allclose(np.linalg.norm(ei, axis=1), 1, atol=1e-4), f"embed_image {ei.shape}")

    # ---- generate: uint8 [n, H, W, 3], seeded
    g = c.infer("generate", [bytes_input("prompt", ["a red circle", "a blue star"])], parameters={"seed": 3, "temperature": 1.0})
    im = g.as_numpy("images")
    check(im.dtype == np.uint8 and im.ndim == 4 and im.shape[0] == 2 and im.shape[3] == 3, f"generate {im.shape}")
    g2 = c.infer("generate", [bytes_input("prompt", ["a blue star"])], parameters={"seed": 3, "temperature": 1.0}).as_numpy("images")
    check(np.array_equal(g2[0], im[1]), "generate: same seed and prompt -> same image")
    # the best-of-N parameter is accepted (which sample is kept is checked in pipeline_test.cpp)
    gb = c.infer("generate", [bytes_input("prompt", ["a blue star"])], parameters={"seed": 3, "temperature": 1.0, "candidates": 3}).as_numpy("images")
    check(gb.shape == g2.shape, f"generate best of 3 {gb.shape}")
    gv = c.infer("generate", [bytes_input("prompt", ["a photo of a blue star"])], parameters={"seed": 3, "candidates": 3, "rerank_by": "vqa"}).as_numpy("images")
    check(gv.shape == g2.shape, f"generate best of 3 by vqa {gv.shape}")

    # ---- errors through tritonclient
    expect_error(lambda: c.infer("nope", [bytes_input("text", ["x"])]), 404, "unknown model 'nope'")
    expect_error(lambda: c.infer("embed_text", [bytes_input("txt", ["x"])]), 400, "has no input 'txt'")
    expect_error(lambda: c.infer("caption", [bytes_input("image", [b"not an image"])]), 400, "image[0]")
    expect_error(lambda: c.infer("caption", [bytes_input("image", ["@@not base64@@"], binary=False)]), 400, "base64")
    expect_error(lambda: c.infer("vqa", [bytes_input("image", imgs[:2]), bytes_input("question", ["q"])]), 400, "batch size")
    expect_error(lambda: c.infer("embed_text", [bytes_input("text", ["x"] * 17)]), 400, "exceeds max_batch_size 16")
    expect_error(lambda: c.infer("generate", [bytes_input("prompt", ["x"])], parameters={"top_p": 2}), 400, "top_p")
    expect_error(lambda: c.infer("generate", [bytes_input("prompt", ["x"])], parameters={"candidates": 0}), 400, "candidates")
    expect_error(lambda: c.infer("generate", [bytes_input("prompt", ["x"])], parameters={"rerank_by": "clip"}), 400, "rerank_by")
    expect_error(lambda: c.infer("generate", [bytes_input("prompt", ["a dog"])], parameters={"candidates": 2, "rerank_by": "vqa"}), 400, "shapes prompt")
    expect_error(lambda: c.infer("embed_text", [bytes_input("text", ["x" * 1_200_000])]), 413, "exceeds the limit")
    # ---- errors through raw HTTP (bodies tritonclient would never send)
    BIN9 = b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":9}}]}'
    for body, hdr, needle in [(b"{", {}, "not valid JSON"),
                              (b'{"inputs": 3}', {}, "'inputs' array"),
                              (BIN9, {"Inference-Header-Content-Length": str(len(BIN9))}, "overruns the body"),
                              (b'{"inputs":[]}xx', {"Inference-Header-Content-Length": "13"}, "not claimed")]:
        st, data = raw_post(port, "/v2/models/embed_text/infer", body, hdr)
        check(st == 400 and needle in json.loads(data)["error"], f"raw {body[:40]} -> {st} {data[:200]}")
    st, data = raw_post(port, "/v2/models/embed_text/infer", b"x" * 2_000_000)
    check(st == 413 and "exceeds the limit" in json.loads(data)["error"], f"raw oversize -> {st} {data[:100]}")
    st, data = raw_post(port, "/v2/models/embed_text/infer", b"{}", {"Content-Encoding": "gzip"})
    check(st == 415, f"gzip body -> {st}")

    # ---- dynamic batching: 32 concurrent clients -> batches of more than one item
    before = batch_sizes(metrics(port), "embed_text")
    errors = []

    def worker(k):
        try:
            cc = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
            for j in range(6):
                out = cc.infer("embed_text", [bytes_input("text", [texts[(k + j) % 3]])]).as_numpy("embedding")
                if not np.allclose(out[0], e[(k + j) % 3], atol=1e-4):
                    errors.append(f"client {k}: wrong embedding under load")
        except Exception as ex:  # noqa: BLE001
            errors.append(f"client {k}: {ex}")

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    check(not errors, f"load errors: {errors[:3]}")
    after = batch_sizes(metrics(port), "embed_text")
    batched = sum(n for s, n in after.items() if s > 1) - sum(n for s, n in before.items() if s > 1)
    check(batched > 0, f"no batch of more than 1 item under 32 concurrent clients: {after}")
    print(f"batch sizes under load: {dict(sorted(after.items()))}")
finally:
    server.send_signal(signal.SIGTERM)
    rc = server.wait(timeout=30)
check(rc == 0, f"janus_serve exit {rc} after SIGTERM: {open(log1).read()[-2000:]}")

# ---- a bounded queue: 503 when full; SIGTERM drains requests in flight
server2, log2 = start(port2, "--models", "generate,embed_text", "--max-batch", "8", "--queue", "1", "--max-delay-ms", "0")
statuses = []
lock = threading.Lock()


def gen(k):
    st, data = raw_post(port2, "/v2/models/generate/infer",
                        json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": [f"a red circle {k}"]}],
                                    "parameters": {"seed": k}}).encode())
    with lock:
        statuses.append((st, data))


ts = [threading.Thread(target=gen, args=(k,)) for k in range(12)]
[t.start() for t in ts]
[t.join() for t in ts]
codes = sorted(s for s, _ in statuses)
check(503 in codes and 200 in codes and set(codes) <= {200, 503}, f"queue 1 under 12 concurrent requests: {codes}")
check(all("queue is full" in json.loads(d)["error"] for s, d in statuses if s == 503), "503 reason")

# SIGTERM while one request runs (8 prompts) and another waits in the queue: both are answered.
statuses.clear()
finished = []


def gen8(k):
    st, data = raw_post(port2, "/v2/models/generate/infer",
                        json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [8], "data": [f"a red circle {k}"] * 8}],
                                    "parameters": {"seed": k}}).encode())
    with lock:
        statuses.append((st, data))
        finished.append(time.time())


ts = [threading.Thread(target=gen8, args=(k,)) for k in range(2)]
ts[0].start()
time.sleep(0.05)
ts[1].start()
time.sleep(0.05)
t_sig = time.time()
server2.send_signal(signal.SIGTERM)
[t.join() for t in ts]
rc2 = server2.wait(timeout=30)
check(rc2 == 0, f"janus_serve exit {rc2} after SIGTERM")
check(sorted(s for s, _ in statuses) == [200, 200], f"in-flight requests during SIGTERM: {[(s, d[:200]) for s, d in statuses]}")
after_sig = [round(f - t_sig, 3) for f in finished]
check(max(after_sig) > 0, f"no request was still in flight at SIGTERM (finished at {after_sig} s): the drain was not tested")
logtext = open(log2).read()
check("draining" in logtext and "janus_serve stopped" in logtext, "drain logged")
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port2}/v2/health/live", timeout=2)
    raise AssertionError("server still answering after SIGTERM")
except (urllib.error.URLError, ConnectionError):
    checks += 1
print(f"drained in {time.time() - t_sig:.2f}s; in-flight requests finished {after_sig} s after SIGTERM")
print(f"ALL OK ({checks} checks)")
