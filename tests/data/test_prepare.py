"""``tc-clip prepare``: outputs read back with PyAV (size, GOP, no B-frames, no audio, rotation), the
manifest and list files, resuming after a real kill, bad sources and refused folders, and the loader
reading the prepared lists."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType

from data_helpers import set_mp4_rotation, write_labels
from tc_clip.cli import main as cli_main
from tc_clip.data import synthetic
from tc_clip.data.prepare import (
    JOURNAL,
    MANIFEST,
    TMP_SUFFIX,
    PrepareError,
    PrepareSettings,
    prepare_files,
    prepare_folder,
)
from tc_clip.data.reencode import container_format, target_size

FRAMES = 40


def moving(n: int = FRAMES, w: int = 640, h: int = 360, seed: int = 0) -> np.ndarray:
    """Smooth texture panning under a bright square in the top-left corner."""
    rng = np.random.default_rng(seed)
    base = np.kron(rng.integers(30, 200, size=(h // 20 + 4, w // 20 + 4, 3)), np.ones((20, 20, 1)))
    frames = np.stack([base[t % 20 : t % 20 + h, t % 40 : t % 40 + w] for t in range(n)]).astype(np.uint8)
    frames[:, : h // 6, : h // 6] = 255
    return frames


def write_with_audio(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        samples = 16000 // fps
        for t, f in enumerate(frames):
            for p in v.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, samples), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts, sound.time_base = 16000, t * samples, Fraction(1, 16000)
            for p in a.encode(sound):
                c.mux(p)
        for s in (v, a):
            for p in s.encode():
                c.mux(p)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """videos/<class>/...: 640x360 H.264 (x264's default GOP and B-frames, one with audio, one rotated),
    a small MPEG-4 .avi, a VP9 .webm and an unreadable file."""
    root = tmp_path_factory.mktemp("src") / "videos"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    synthetic.write_video(root / "a" / "v0.mp4", moving(seed=0))
    write_with_audio(root / "a" / "v1.mp4", moving(seed=1))
    synthetic.write_video(root / "b" / "plain.mp4", moving(seed=2))
    set_mp4_rotation(root / "b" / "plain.mp4", root / "b" / "rotated.mp4")
    (root / "b" / "plain.mp4").unlink()
    synthetic.write_video(root / "b" / "small.avi", moving(w=200, h=150, seed=3))
    synthetic.write_video(root / "b" / "clip.webm", moving(w=160, h=96, seed=4))
    (root / "b" / "broken.mp4").write_bytes(b"not a video at all" * 10)
    return root


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "prepared"
    report = prepare_folder(source, out, workers=2, psnr_videos=3, progress=False)
    return out, report


def read_back(path: Path) -> dict:
    """What a reader sees: codec, size, rotation, audio, frame types and keyframe positions."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        info = {"codec": stream.codec_context.name, "audio": len(c.streams.audio), "keys": [], "types": set()}
        for i, frame in enumerate(c.decode(stream)):
            info["size"], info["rotation"] = (frame.width, frame.height), int(frame.rotation or 0)
            info["types"].add(PictureType(int(frame.pict_type)).name)
            if frame.key_frame:
                info["keys"].append(i)
            info["frames"] = i + 1
            info.setdefault("first", frame.to_ndarray(format="rgb24"))
    return info


def test_geometry_rules():
    assert target_size(1280, 720, 256) == (456, 256)
    assert target_size(640, 360, 256) == (456, 256)
    assert target_size(720, 1280, 256) == (256, 456)
    assert target_size(200, 150, 256) == (200, 150)  # never upscaled
    assert target_size(201, 151, 256) == (200, 150)  # even sides for 4:2:0, never larger
    assert container_format("x.MP4") == "mp4" and container_format("x.avi") == "avi"
    assert container_format("x.webm") == "matroska"  # WebM cannot hold H.264: Matroska under the same name
    with pytest.raises(ValueError, match="gop"):
        PrepareSettings(gop=0).validate()


def test_outputs_read_back(source, prepared):
    out, report = prepared
    assert report.videos == 6 and report.encoded == 5 and report.skipped == 0
    expected = {"a/v0.mp4": (456, 256), "a/v1.mp4": (456, 256), "b/rotated.mp4": (256, 456),
                "b/small.avi": (200, 150), "b/clip.webm": (160, 96)}
    for rel, size in expected.items():
        got = read_back(out / rel)
        assert got["codec"] == "h264" and got["size"] == size, rel
        assert got["frames"] == FRAMES, rel  # every frame kept
        assert got["audio"] == 0 and got["rotation"] == 0, rel
        assert "B" not in got["types"], rel
        assert got["keys"][0] == 0 and max(np.diff(got["keys"] + [FRAMES])) <= 16, rel
    assert max(np.diff(read_back(source / "a" / "v0.mp4")["keys"] + [FRAMES])) > 16  # x264 default GOP: 250
    assert "B" in read_back(source / "a" / "v0.mp4")["types"]
    assert read_back(source / "a" / "v1.mp4")["audio"] == 1
    # the rotation is in the pixels: the bright corner (top-left before rotation) is now top-right
    first = read_back(out / "b" / "rotated.mp4")["first"]
    assert first[:30, -30:].mean() > 220 and first[:30, :30].mean() < 200
    assert not list(out.rglob(f"*{TMP_SUFFIX}")) and not (out / JOURNAL).exists()
    assert not (source / "b" / "broken.mp4.tc-clip-tmp").exists() and len(list(source.rglob("*"))) == 8


def test_manifest_lists_and_bad_source(source, prepared):
    out, report = prepared
    manifest = json.loads((out / MANIFEST).read_text())
    files = {e["path"]: e for e in manifest["files"]}
    assert set(files) == {"a/v0.mp4", "a/v1.mp4", "b/rotated.mp4", "b/small.avi", "b/clip.webm", "b/broken.mp4"}
    bad = files.pop("b/broken.mp4")
    assert bad["status"] == "failed" and bad["error"] and not (out / "b" / "broken.mp4").exists()
    assert report.failed == [(str(source / "b" / "broken.mp4"), bad["error"])]
    assert "broken.mp4" in str(report) and "1 failed" in str(report)
    v0 = files["a/v0.mp4"]
    assert v0["source_sha256"] == hashlib.sha256((source / "a" / "v0.mp4").read_bytes()).hexdigest()
    assert v0["output_bytes"] == (out / "a" / "v0.mp4").stat().st_size and v0["frames"] == FRAMES
    assert files["b/rotated.mp4"]["rotation"] in (90, 270)
    assert manifest["settings"] == {"short_side": 256, "gop": 16, "bframes": 0, "crf": 18, "preset": "medium",
                                    "tune": "fastdecode", "encoder": "pyav"}
    assert manifest["tools"]["pyav"].startswith(f"PyAV {av.__version__}")
    assert manifest["summary"]["failed"] == 1 and manifest["summary"]["psnr_videos"] == len(report.psnr) >= 2
    assert all(p > 30 for p in report.psnr), report.psnr  # visually lossless on this smooth content
    assert sorted((out / "videos.txt").read_text().split()) == sorted([*expected_paths(), "b/broken.mp4"])


def expected_paths() -> list[str]:
    return ["a/v0.mp4", "a/v1.mp4", "b/rotated.mp4", "b/small.avi", "b/clip.webm"]


def test_refused_folders(source, tmp_path, capsys):
    with pytest.raises(PrepareError, match="inside the source tree"):
        prepare_folder(source, source / "a" / "out", progress=False)
    assert not (source / "a" / "out").exists()
    with pytest.raises(PrepareError, match="holds the source video"):
        prepare_files([(str(source / "a" / "v0.mp4"), "v0.mp4")], source.parent, tmp_path, progress=False)
    assert cli_main(["prepare", "--input_dir", str(source), "--output_dir", str(source / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tc-clip: error:") and "inside the source tree" in err[0]
    assert cli_main(["prepare", "--input_dir", str(source), "--output_dir", str(tmp_path / "o"), "--gop", "x"]) == 2
    assert capsys.readouterr().err.startswith("tc-clip: error: prepare: argument --gop")
    assert not (tmp_path / "o").exists()


def _video_count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.mp4"))


def test_resume_after_kill(tmp_path):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    for k in range(6):
        synthetic.write_video(src / f"v{k}.mp4", moving(n=60, seed=k))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(synthetic.__file__).parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tc_clip.cli", "prepare", "--input_dir", str(src), "--output_dir", str(out),
           "--workers", "1", "--no_progress", "--preset", "slow"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal, deadline = out / JOURNAL, time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_text().count("\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"prepare ended before it was killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    finished = [json.loads(line)["path"] for line in journal.read_text().splitlines()]
    assert 2 <= len(finished) < 6 and not (out / MANIFEST).exists()
    for p in out.glob("*.mp4"):  # a final name is only ever a complete file: 60 frames
        assert read_back(p)["frames"] == 60, p
    mtimes = {rel: (out / rel).stat().st_mtime_ns for rel in finished}
    slow = PrepareSettings(preset="slow")  # the killed run's settings: the same command
    report = prepare_folder(src, out, settings=slow, workers=1, progress=False)
    assert report.skipped == len(finished) and report.encoded == 6 - len(finished) and report.ok
    assert {rel: (out / rel).stat().st_mtime_ns for rel in finished} == mtimes  # not redone
    assert _video_count(out) == 6 and not list(out.rglob(f"*{TMP_SUFFIX}")) and not journal.exists()
    again = prepare_folder(src, out, settings=slow, workers=1, progress=False)
    assert again.skipped == 6 and again.encoded == 0
    (src / "v0.mp4").write_bytes((src / "v1.mp4").read_bytes())  # a changed source is redone
    changed = prepare_folder(src, out, settings=slow, workers=1, progress=False)
    assert changed.skipped == 5 and changed.encoded == 1
    other = prepare_folder(src, out, settings=PrepareSettings(short_side=128, preset="fast"), progress=False)
    assert other.encoded == 6 and read_back(out / "v3.mp4")["size"] == (228, 128)  # other settings: redone


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg binary is not installed")
def test_ffmpeg_encoder(source, tmp_path):
    sources = [(str(source / "b" / "rotated.mp4"), "r.mp4"), (str(source / "a" / "v1.mp4"), "v1.mkv")]
    settings = PrepareSettings(encoder="ffmpeg", gop=8)
    report = prepare_files(sources, tmp_path / "out", source, settings=settings, psnr_videos=2, progress=False)
    assert report.ok and report.encoded == 2 and "ffmpeg version" in report.tools["ffmpeg"]
    r, v = read_back(tmp_path / "out" / "r.mp4"), read_back(tmp_path / "out" / "v1.mkv")
    assert r["size"] == (256, 456) and r["rotation"] == 0 and r["first"][:30, -30:].mean() > 220
    for got in (r, v):
        assert got["frames"] == FRAMES and got["audio"] == 0 and "B" not in got["types"]
        assert max(np.diff(got["keys"] + [FRAMES])) <= 8
    assert all(p > 30 for p in report.psnr) and len(report.psnr) == 2


def test_datamodule_lists_and_loader(source, tmp_path, capsys):
    from tc_clip.data import VideoDataModule

    lists = tmp_path / "lists"
    lists.mkdir()
    labels = write_labels(lists / "labels.csv", ["a", "b"])
    (lists / "train.txt").write_text("a/v0.mp4 0\na/v1.mp4 0\nb/rotated.mp4 1\nb/small.avi 1\n")
    (lists / "val.txt").write_text("b/clip.webm 1\na/v0.mp4 0\n")
    out = tmp_path / "prepared"
    data = ["--data", "tc_clip.data.VideoDataModule", "--data.train_list", str(lists / "train.txt"),
            "--data.val_list", str(lists / "val.txt"), "--data.labels", labels, "--data.root", str(source),
            "--data.num_frames", "4", "--data.input_size", "32", "--data.batch_size", "2", "--data.num_workers", "0"]
    assert cli_main(["prepare", *data, "--output_dir", str(out), "--stages", "fit", "validate",
                     "--no_progress", "--crf", "23", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "prepared 5 videos" in printed and "5 encoded" in printed and "encoder: pyav" in printed
    assert (out / "fit_train.txt").read_text().split("\n")[:2] == ["a/v0.mp4 0", "a/v1.mp4 0"]
    assert (out / "validate_val.txt").read_text() == "b/clip.webm 1\na/v0.mp4 0\n"
    assert (out / "fit_train_labels.csv").read_text() == "id,name\n0,a\n1,b\n"
    assert json.loads((out / MANIFEST).read_text())["settings"]["crf"] == 23
    # the written lists, and the original lists with the prepared tree as root, both load
    for kwargs in ({"train_list": str(out / "fit_train.txt"), "labels": str(out / "fit_train_labels.csv")},
                   {"train_list": str(lists / "train.txt"), "labels": labels, "root": str(out)}):
        dm = VideoDataModule(**kwargs, num_frames=4, input_size=32, batch_size=4, num_workers=0,
                             persistent_workers=False, pin_memory=False, strict=True)
        dm.setup("fit")
        assert all(s.path.startswith(str(out)) for s in dm.splits("fit")[0].samples)
        batch = next(iter(dm.train_dataloader()))
        assert batch["video"].shape[:2] == (4, 4) and batch["label"].tolist().count(1) == 2
