"""``tc-clip serve``: the demo model goes fit -> export -> from_pretrained -> a real server on 127.0.0.1 -> uploads.

Every answer is checked against :func:`tc_clip.inference.predict` on the same file and names; bad uploads get
their 4xx while the server keeps serving (16 requests at once, bad ones mixed in); the server shuts down
cleanly. The LitAPI and the vocabulary cache are also tested in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

pytest.importorskip("litserve")
requests = pytest.importorskip("requests")

import tc_clip  # noqa: E402
from tc_clip import TCCLIP, inference  # noqa: E402
from tc_clip.cli import main as tc_clip_main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SRC = Path(tc_clip.__file__).resolve().parents[1]
LIMITS = ["--max_upload_mb", "0.5", "--max_duration_s", "3", "--max_classes", "20", "--max_name_chars", "40"]
TOL = 1e-5


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """``make demo`` shortened (one epoch on a few videos), then ``tc-clip export`` of its best.ckpt."""
    root = tmp_path_factory.mktemp("demo")
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI must see only the arguments given here
    try:
        code = fit_and_check(root)
    finally:
        sys.argv = argv
    assert code == 0
    (ckpt,) = (root / "runs").glob("version_*/checkpoints/best.ckpt")
    assert tc_clip_main(["export", "--model", str(ckpt), "--output_dir", str(root / "exported")]) == 0
    folder = root / "exported"
    model = TCCLIP.from_pretrained(folder)
    assert torch.equal(model.state_dict()["prompt_ctx"], inference.load_model(ckpt).state_dict()["prompt_ctx"])
    videos = {}
    for i in range(5):
        videos[f"class{i}"], _ = inference.synthetic_video(root / "clips" / f"c{i}.mp4", class_index=i, seed=i)
    videos["long"], _ = inference.synthetic_video(root / "clips" / "long.mp4", num_frames=60, fps=15)  # 4 s
    videos["avi"], _ = inference.synthetic_video(root / "clips" / "c.avi", class_index=2, seed=7)
    return {"root": root, "folder": folder, "model": model, "names": model.class_names, "videos": videos}


def fit_and_check(root: Path) -> int:
    return tc_clip_main([
        "fit", "--config", str(REPO / "configs" / "demo.yaml"), "--data.cache_dir", str(root / "videos"),
        "--data.videos_per_class", "2", "--data.val_per_class", "1", "--data.batch_size", "5",
        "--data.num_workers", "0", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.default_root_dir", str(root / "runs"),
    ])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m tc_clip.cli serve ...`` in its own session, waited for until /health says ok."""

    def __init__(self, folder: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tc_clip.cli", "serve", "--model", str(folder), "--port", str(self.port), *extra],
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        self.kill()
        raise AssertionError(f"the server was not ready within 240 s:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def post(self, path: Path | None = None, data: dict | list | None = None, content: bytes | None = None,
             filename: str = "clip.mp4", text_parts: dict | None = None) -> requests.Response:
        """Multipart ``POST /predict``: the file (``path`` or ``content``), ``data`` fields, ``text_parts``
        (multipart fields without a file name)."""
        files = {k: (None, v) for k, v in (text_parts or {}).items()}
        if path is not None or content is not None:
            files["video"] = (filename, content if content is not None else Path(path).read_bytes())
        return requests.post(self.url + "/predict", files=files or None, data=data, timeout=120)

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status once every process of it is gone."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=90)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return code
            time.sleep(0.5)
        raise AssertionError(f"processes of the server's group outlived it:\n{self.tail()}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def server(demo):
    srv = Server(demo["folder"], demo["root"] / "serve.log", "--max_batch_size", "8", "--batch_timeout", "0.05",
                 *LIMITS)
    yield srv
    if srv.proc.poll() is None:
        srv.kill()


def expected(demo: dict, video: Path, names: list[str] | None, top_k: int) -> list[tuple[str, float]]:
    """``inference.predict`` on the file, with ``names`` or the model's default vocabulary."""
    model = demo["model"]
    clip, _ = inference.read_clip(video, num_frames=model.config.num_frames, size=model.visual.image_size[0])
    return inference.predict(model, clip, names or demo["names"], top_k=top_k)


def check_answer(response: requests.Response, want: list[tuple[str, float]]) -> None:
    assert response.status_code == 200, response.text
    check_predictions(response.json(), want)


def check_predictions(body: dict, want: list[tuple[str, float]]) -> None:
    got = [(p["name"], p["score"]) for p in body["predictions"]]
    assert [n for n, _ in got] == [n for n, _ in want]
    assert max(abs(g - w) for (_, g), (_, w) in zip(got, want, strict=True)) < TOL
    assert len(body["frame_indices"]) == 8 and body["frame_indices"] == sorted(body["frame_indices"])


# ------------------------------------------------------------------------------------------- tests
def test_health_and_info(server, demo):
    assert requests.get(server.url + "/health", timeout=10).text == "ok"
    info = requests.get(server.url + "/info", timeout=10).json()["model"]
    assert info["default_vocabulary_size"] == 5 and info["default_vocabulary"] == demo["names"]
    assert info["switches"]["num_frames"] == 8 and info["input"] == {"frames": 8, "size": 64}
    assert info["limits"]["max_classes"] == 20 and info["batching"]["max_batch_size"] == 8
    assert info["provenance"]["source_kind"] == "lightning"


def test_answers_equal_inference_predict(server, demo):
    videos = demo["videos"]
    r = server.post(videos["class1"])
    check_answer(r, expected(demo, videos["class1"], None, 5))
    assert r.json()["frame_indices"] == [2, 6, 10, 14, 18, 22, 26, 30] and r.json()["num_frames"] == 32
    names = ["a red square", "a green circle", "a blue triangle"]
    check_answer(server.post(videos["avi"], {"class_names": json.dumps(names), "top_k": "2"}),
                 expected(demo, videos["avi"], names, 2))
    check_answer(server.post(videos["class3"], [("class_names", n) for n in names] + [("top_k", "9")]),
                 expected(demo, videos["class3"], names, 9))  # repeated fields; top_k past C gives all C


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_readme_curl_command(server, demo):
    out = subprocess.run(["curl", "-s", "-F", f"video=@{demo['videos']['class0']}", "-F", "top_k=3",
                          f"{server.url}/predict"], capture_output=True, text=True, timeout=120, check=True).stdout
    check_predictions(json.loads(out), expected(demo, demo["videos"]["class0"], None, 3))


def bad_requests(demo, tmp: Path) -> dict[str, tuple[dict, int, str]]:
    """name -> (post arguments, status, part of the detail)."""
    good = demo["videos"]["class0"].read_bytes()
    zero = tmp / "zero.avi"
    import av

    with av.open(str(zero), "w") as c:  # a video stream without a single frame
        s = c.add_stream("mpeg4", rate=15)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        c.start_encoding()
    return {
        "not a video": ({"content": b"this is not a video" * 50}, 422, "not a readable video"),
        "truncated": ({"content": good[: len(good) // 2]}, 422, "not a readable video"),
        "zero frames": ({"content": zero.read_bytes(), "filename": "zero.avi"}, 422, "no frames"),
        "empty file": ({"content": b""}, 422, "the upload is empty"),
        "too long": ({"path": demo["videos"]["long"]}, 422, "lasts 4.0 s, over the limit of 3 s"),
        "too large": ({"content": os.urandom(600_000)}, 413, "larger than the limit of 0.5 MB"),
        "blank name": ({"content": good, "data": {"class_names": '["run", "  "]'}}, 400, "blank names"),
        "duplicate names": ({"content": good, "data": {"class_names": '["run", "swim", "run"]'}}, 400,
                            "duplicate class name 'run'"),
        "too many classes": ({"content": good, "data": {"class_names": json.dumps([f"c{i}" for i in range(21)])}},
                             400, "too many classes: 21, the limit is 20"),
        "over-long name": ({"content": good, "data": {"class_names": json.dumps(["x" * 41])}}, 400, "longer than 40"),
        "empty vocabulary": ({"content": good, "data": {"class_names": "[]"}}, 400, "class_names is empty"),
        "same prompt": ({"content": good, "data": {"class_names": '["ApplyEyeMakeup", "apply eye makeup"]'}}, 400,
                        "give the same prompt"),
        "bad top_k": ({"content": good, "data": {"top_k": "three"}}, 400, "top_k must be a positive integer"),
        "a server-side path": ({"content": good, "data": {"path": "/etc/passwd"}}, 400, "unknown form field 'path'"),
        "a path instead of an upload": ({"text_parts": {"video": "/etc/passwd"}}, 400,
                                        "exactly one file in the form field 'video'"),
        "not multipart": ({"data": {"video": "/etc/passwd"}}, 415, "send a multipart/form-data upload"),
    }


def test_every_bad_input_gets_its_4xx(server, demo, tmp_path):
    for name, (kwargs, status, detail) in bad_requests(demo, tmp_path).items():
        r = server.post(**kwargs)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert detail in r.json()["detail"], (name, r.json())
    r = requests.post(server.url + "/predict", json={"video": "/etc/passwd"}, timeout=60)
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    check_answer(server.post(demo["videos"]["class2"]), expected(demo, demo["videos"]["class2"], None, 5))


def test_16_concurrent_requests_with_bad_uploads_mixed_in(server, demo, tmp_path):
    videos = demo["videos"]
    bad = bad_requests(demo, tmp_path)
    names = ["juggling", "cooking", "riding a bike"]
    jobs = []  # (post kwargs, expected answer or (status, detail))
    for i in range(9):
        video = videos[f"class{i % 5}"] if i != 8 else videos["avi"]
        vocab = names if i % 3 == 0 else None
        data = {"class_names": json.dumps(vocab)} if vocab else None
        jobs.append(({"path": video, "data": data}, expected(demo, video, vocab, 5)))
    for name in ("not a video", "truncated", "zero frames", "too long", "too large", "duplicate names", "bad top_k"):
        kwargs, status, detail = bad[name]
        jobs.append((kwargs, (status, detail)))
    assert len(jobs) == 16
    start = threading.Barrier(16)

    def send(job):
        start.wait(timeout=60)
        return server.post(**job[0])

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(send, jobs))
    for (kwargs, want), r in zip(jobs, responses, strict=True):
        if isinstance(want, tuple):
            assert r.status_code == want[0] and want[1] in r.json()["detail"], (kwargs, r.text)
        else:
            check_answer(r, want)
    check_answer(server.post(videos["class4"]), expected(demo, videos["class4"], None, 5))  # still serving


def test_clean_shutdown(server):
    assert server.stop() == 0
    assert "Traceback" not in server.tail()
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url + "/health", timeout=5)


def test_unbatched_server_gives_the_same_answers(demo):
    srv = Server(demo["folder"], demo["root"] / "serve1.log", "--max_batch_size", "1")
    try:
        video = demo["videos"]["class3"]
        check_answer(srv.post(video), expected(demo, video, None, 5))
        assert srv.post(content=b"junk" * 100).status_code == 422
        assert srv.stop() == 0
    finally:
        srv.kill()


# ------------------------------------------------------------------------------------------ in-process
def test_cli_errors_are_one_line(tmp_path, capsys):
    assert tc_clip_main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == "tc-clip: error: serve: the following arguments are required: --model"
    assert tc_clip_main(["serve", "--model", str(tmp_path), "--host", "localhost"]) == 2
    assert "argument --host: invalid choice: 'localhost'" in capsys.readouterr().err
    assert tc_clip_main(["serve", "--model", str(tmp_path / "no" / "such")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tc-clip: error: model folder not found")


def test_lit_api_answers_each_request_of_a_batch_on_its_own(demo):
    from tc_clip.serve.api import TCCLIPAPI, Failure

    api = TCCLIPAPI(str(demo["folder"]), max_batch_size=4)
    api.setup("cpu")
    videos = demo["videos"]
    names = ["a", "b c"]
    requests_ = [{"video": videos["class0"].read_bytes(), "class_names": None, "top_k": 2},
                 {"video": b"junk", "class_names": None, "top_k": 2},
                 {"video": videos["class1"].read_bytes(), "class_names": names, "top_k": 5},
                 {"video": videos["class2"].read_bytes(), "class_names": None, "top_k": 3}]
    out = api.unbatch(api.predict(api.batch([api.decode_request(r) for r in requests_])))
    assert isinstance(out[1], Failure) and out[1].status == 422
    assert api.encode_response(out[1]).status_code == 422
    for i, (video, vocab, k) in {0: ("class0", None, 2), 2: ("class1", names, 5), 3: ("class2", None, 3)}.items():
        want = expected(demo, videos[video], vocab, k)
        assert [p["name"] for p in out[i]["predictions"]] == [n for n, _ in want]
        assert all(abs(p["score"] - s) < TOL for p, (_, s) in zip(out[i]["predictions"], want, strict=True))


def test_vocabulary_cache_encodes_each_vocabulary_once_and_stays_bounded(demo, monkeypatch):
    from tc_clip.serve.vocab import VocabularyCache

    model = TCCLIP.from_pretrained(demo["folder"])
    calls = []
    original = model._text_prefix
    monkeypatch.setattr(model, "_text_prefix", lambda stop: calls.append(stop) or original(stop))
    cache = VocabularyCache(model, capacity=2)
    x = torch.randn(1, 8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    vocabularies = [model.class_names, ["run", "swim"], ["cook", "eat", "sleep"]]
    reference = {}
    for names in vocabularies:
        fresh = TCCLIP.from_pretrained(demo["folder"])
        fresh.set_class_names(names)
        with torch.no_grad():
            reference[tuple(names)] = fresh(x)

    def run(names):
        cache.use(names)
        with torch.no_grad():
            out = model(x)
        cache.done()
        assert torch.equal(out, reference[tuple(names)])

    for names in (vocabularies[0], vocabularies[1], vocabularies[0], vocabularies[1], vocabularies[0]):
        run(names)
    assert len(calls) == 2 and len(cache) == 2  # two vocabularies, each encoded once
    run(vocabularies[2])  # a third evicts the least recently used (vocabularies[1])
    assert len(calls) == 3 and len(cache) == 2 and vocabularies[1] not in cache
    run(vocabularies[1])
    assert len(calls) == 4
