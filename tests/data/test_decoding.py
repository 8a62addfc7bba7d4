"""Decoding: every available backend (sparse PyAV reader, torchcodec) returns exactly the frames of a
full decode; the backend choice; synthetic videos."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from data_helpers import make_synthetic, noise_frames, set_mp4_rotation
from tc_clip.data import decoding, synthetic
from tc_clip.data.decoding import VideoDecodeError, probe, read_all_frames, read_frames, resolve_backend

_TORCHCODEC = decoding.torchcodec_status()


@pytest.fixture(
    params=[
        "pyav",
        pytest.param("torchcodec", marks=pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])),
        pytest.param("auto", marks=pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])),
    ]
)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds")


@pytest.fixture(scope="module")
def gop_videos(tmp_path_factory):
    """90-frame videos with a keyframe every 10 frames (so the reader jumps between groups)."""
    d = tmp_path_factory.mktemp("gop")
    frames = noise_frames(90)
    paths = []
    for ext in ("mp4", "avi", "webm"):
        p = d / f"gop.{ext}"
        synthetic.write_video(p, frames, fps=30, gop_size=10)
        paths.append(p)
    return paths


def test_generate_writes_three_codecs_lists_and_labels(synth):
    root = Path(synth.root)
    codecs = {}
    for line in (
        Path(synth.train_list).read_text().splitlines() + Path(synth.val_list).read_text().splitlines()
    ):
        rel, label = line.rsplit(" ", 1)
        assert (root / rel).exists() and 0 <= int(label) < 3
        with av.open(str(root / rel)) as c:
            codecs[Path(rel).suffix] = c.streams.video[0].codec_context.name
    assert codecs == {".mp4": "h264", ".avi": "mpeg4", ".webm": "vp9"}
    assert Path(synth.labels).read_text().splitlines()[0] == "id,name"
    assert len(Path(synth.train_list).read_text().splitlines()) == 9
    mtime = (root / ".done").stat().st_mtime
    again = synthetic.generate(root, num_classes=3, videos_per_class=3, val_per_class=1, num_frames=20)
    assert again.train_list == synth.train_list and (root / ".done").stat().st_mtime == mtime


def test_synthetic_classes_differ_visually():
    rng = np.random.default_rng(0)
    # mean colour of the moving shape's pixels separates the classes
    means = []
    for c in range(5):
        clip = synthetic.render_clip(c, 5, rng, 8, 64, 48).astype(float)
        bright = clip.max(-1) > 150
        means.append(clip[bright].mean(0))
    dists = [np.abs(means[i] - means[j]).max() for i in range(5) for j in range(i + 1, 5)]
    assert min(dists) > 40


def _check_equal(path, index_sets, backend):
    full = read_all_frames(path)
    for idx in index_sets:
        got, n = read_frames(path, idx, backend=backend)
        assert n == len(full)
        np.testing.assert_array_equal(got, full[idx], err_msg=f"{path} {idx}")


def test_sparse_decode_equals_full_decode(synth, gop_videos, backend):
    rng = np.random.default_rng(0)
    paths = [
        Path(synth.root) / line.rsplit(" ", 1)[0]
        for line in Path(synth.train_list).read_text().splitlines()[:3]
    ]
    for p in paths + gop_videos:
        n = probe(p).num_frames
        sets = [[0], [n - 1], list(range(n)), [n - 1, 0, 5, 5, 3]]
        sets += [sorted(rng.choice(n, 8, replace=False).tolist()) for _ in range(3)]
        _check_equal(p, sets, backend)


def test_sampler_callable_and_clamping(gop_videos, backend):
    got, n = read_frames(gop_videos[0], lambda n: [0, n - 1, n + 10], backend=backend)
    assert n == 90 and got.shape == (3, 48, 64, 3)
    np.testing.assert_array_equal(got[1], got[2])


def test_variable_frame_rate(tmp_path, backend):
    p = tmp_path / "vfr.mp4"
    frames = noise_frames(30)
    with av.open(str(p), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts, vf.time_base = t, Fraction(1, 1000)
            t += 20 if i % 3 else 70  # irregular gaps
            for pkt in s.encode(vf):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    assert probe(p).num_frames == 30
    _check_equal(p, [[0, 7, 13, 29], list(range(0, 30, 2))], backend)


def test_short_grayscale_odd_size(tmp_path, backend):
    p = tmp_path / "gray.mkv"
    gray = noise_frames(5, 63, 47)[..., 0]
    synthetic.write_video(p, gray, codec="ffv1", pix_fmt="gray")
    got, n = read_frames(p, [0, 1, 2, 3, 4, 4, 4, 4], backend=backend)
    assert n == 5 and got.shape == (8, 47, 63, 3)
    np.testing.assert_array_equal(got[..., 0], gray[[0, 1, 2, 3, 4, 4, 4, 4]])
    np.testing.assert_array_equal(got[..., 0], got[..., 2])


def test_rotation_metadata(tmp_path, backend):
    src, rotated = tmp_path / "r.mp4", tmp_path / "r90.mp4"
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, :8, :8] = 255  # white top-left corner
    synthetic.write_video(src, frames)
    set_mp4_rotation(src, rotated)
    got, _ = read_frames(rotated, [0], backend=backend)
    assert got.shape == (1, 64, 48, 3)
    # rotated 90 degrees clockwise: the corner moves to the top-right
    assert got[0, :6, -6:].mean() > 200 and got[0, :6, :6].mean() < 50


def test_short_side_resize_in_decoder(gop_videos, backend):
    got, _ = read_frames(gop_videos[0], [0, 1], short_side=24, backend=backend)
    assert got.shape == (2, 24, 32, 3)
    full = read_all_frames(gop_videos[0])[[0, 1]].astype(np.float32)
    small = full.reshape(2, 24, 2, 32, 2, 3).mean((2, 4))  # the 2 x 2 average
    # a real downscale of these noise frames (area or bilinear filter), far from a wrong one
    err, wrong = np.abs(got - small).mean(), np.abs(got - small[:, ::-1]).mean()
    assert err < 16 and err < 0.6 * wrong
    got, _ = read_frames(gop_videos[0], [0], short_side=100, backend=backend)  # never upsample
    assert got.shape == (1, 48, 64, 3)


def test_bad_files(tmp_path, backend):
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "nope.mp4", [0], backend=backend)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="bad.mp4"):
        read_frames(bad, [0], backend=backend)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty.avi"):
        read_frames(empty, [0], backend=backend)
    with pytest.raises(VideoDecodeError, match="shard item 7"):
        read_frames(bad.read_bytes(), [0], backend=backend, name="shard item 7")


def test_bytes_source_equals_file(gop_videos, backend):
    for path in gop_videos:
        from_file, n = read_frames(path, [3, 0, 47, 89], backend=backend)
        from_bytes, m = read_frames(path.read_bytes(), [3, 0, 47, 89], backend=backend)
        assert n == m == 90
        np.testing.assert_array_equal(from_bytes, from_file)


def test_backend_choice(monkeypatch, gop_videos):
    monkeypatch.delenv("TC_CLIP_DECODER", raising=False)
    assert resolve_backend("auto") == ("auto" if _TORCHCODEC[0] else "pyav")
    assert resolve_backend("pyav") == "pyav"
    with pytest.raises(ValueError, match="'ffmpeg'"):
        resolve_backend("ffmpeg")
    monkeypatch.setenv("TC_CLIP_DECODER", "pyav")
    assert resolve_backend("auto") == "pyav" and resolve_backend("torchcodec" if _TORCHCODEC[0] else "pyav")
    monkeypatch.setenv("TC_CLIP_DECODER", "decord")
    with pytest.raises(ValueError, match="TC_CLIP_DECODER='decord'"):
        resolve_backend("auto")
    monkeypatch.delenv("TC_CLIP_DECODER")
    monkeypatch.setattr(decoding.torchcodec, "torchcodec_status", lambda: (False, "torchcodec unavailable (test)"))
    assert resolve_backend("auto") == "pyav"
    with pytest.raises(RuntimeError, match="torchcodec unavailable"):
        resolve_backend("torchcodec")


@pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])
def test_auto_falls_back_to_pyav_per_file(monkeypatch, gop_videos):
    calls = []

    def broken(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("unsupported codec")

    monkeypatch.delenv("TC_CLIP_DECODER", raising=False)
    monkeypatch.setattr(decoding.torchcodec, "read_frames", broken)
    monkeypatch.setattr(decoding, "_auto_pyav", {})  # forget the choices of earlier tests
    monkeypatch.setattr(decoding, "_auto_family", {})
    webm = gop_videos[2]  # no B-frames: auto tries torchcodec first
    for _ in range(2):
        clip = decoding.decode(webm, [0, 5])
        np.testing.assert_array_equal(clip.frames, read_all_frames(webm)[[0, 5]])
        assert clip.backend == "pyav"
        assert decoding._auto_pyav[str(webm)] is True and len(calls) == 1  # remembered: not tried again
    with pytest.raises(VideoDecodeError, match="with torchcodec: unsupported codec"):
        read_frames(webm, [0, 5], backend="torchcodec")


@pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])
def test_auto_picks_per_stream(monkeypatch, tmp_path, gop_videos):
    """B-frames (x264's default) -> PyAV, which skips non-reference frames; none (MPEG-4 in AVI, VP9)
    -> torchcodec."""
    monkeypatch.delenv("TC_CLIP_DECODER", raising=False)
    bframes = tmp_path / "b.mp4"
    synthetic.write_video(bframes, noise_frames(30), fps=30, codec="libx264", options={"bf": "3"})
    with av.open(str(bframes)) as c:
        assert c.streams.video[0].codec_context.has_b_frames
    cases = [(bframes, "pyav"), (gop_videos[1], "torchcodec"), (gop_videos[2], "torchcodec")]
    for path, expected in cases:
        monkeypatch.setattr(decoding, "_auto_pyav", {})
        monkeypatch.setattr(decoding, "_auto_family", {})
        clip = decoding.decode(path, [0, 7, 20])
        np.testing.assert_array_equal(clip.frames, read_all_frames(path)[[0, 7, 20]])
        assert clip.backend == expected, path


@pytest.fixture(scope="module")
def avi_b_frames(tmp_path_factory):
    """AVI files with B-frames: H.264 (packet timestamps are decode times there) and MPEG-4 (Xvid-like)."""
    d = tmp_path_factory.mktemp("avi_b")
    frames = noise_frames(40)
    paths = []
    for name, codec in (("h264_b.avi", "libx264"), ("mpeg4_b.avi", "mpeg4")):
        synthetic.write_video(d / name, frames, fps=30, codec=codec, options={"bf": "2"}, gop_size=12)
        with av.open(str(d / name)) as c:
            assert c.streams.video[0].codec_context.has_b_frames, name
        paths.append(d / name)
    return paths


def test_avi_with_b_frames_reads_in_presentation_order(avi_b_frames, monkeypatch):
    """Sparse PyAV reads equal the full decode, even where the timestamps are decode times (H.264 in AVI:
    trusting them returned frame 4 as frame 2). ``auto`` reads these files with PyAV, also where they
    come after AVI files without B-frames in the same folder (every AVI file is probed)."""
    for path in avi_b_frames:
        n = probe(path).num_frames
        assert n == len(read_all_frames(path)) == 40
        _check_equal(path, [[k] for k in range(n)] + [[n - 1, 0, 5, 5, 3], list(range(0, n, 3))], "pyav")
    if not _TORCHCODEC[0]:
        return
    monkeypatch.delenv("TC_CLIP_DECODER", raising=False)
    monkeypatch.setattr(decoding, "_auto_pyav", {})
    monkeypatch.setattr(decoding, "_auto_family", {})
    folder = avi_b_frames[0].parent
    plain = folder / "plain.avi"
    synthetic.write_video(plain, noise_frames(40), fps=30, codec="mpeg4", gop_size=12)
    for path, expected in [(plain, "torchcodec"), *((p, "pyav") for p in avi_b_frames), (plain, "torchcodec")]:
        clip = decoding.decode(path, [2, 9, 31])
        np.testing.assert_array_equal(clip.frames, read_all_frames(path)[[2, 9, 31]])
        assert clip.backend == expected, path


@pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])
def test_torchcodec_refuses_avi_with_b_frames(avi_b_frames, gop_videos):
    """torchcodec returns the frames of these files out of order (or fails midway): asking for it is
    refused by name and file, and a dataset run stops on it instead of skipping the video as bad."""
    from tc_clip.data.annotations import Sample
    from tc_clip.data.dataset import VideoClipDataset
    from tc_clip.errors import UserError

    for path in avi_b_frames:
        with pytest.raises(decoding.DecoderMismatchError, match=rf"{path.name}.*AVI file with B-frames.*'pyav'"):
            decoding.decode(path, [0, 7], backend="torchcodec")
    got, _ = read_frames(gop_videos[1], [0, 7], backend="torchcodec")  # AVI without B-frames: read
    np.testing.assert_array_equal(got, read_all_frames(gop_videos[1])[[0, 7]])
    ds = VideoClipDataset([Sample(str(avi_b_frames[1]), 0)], 4, 32, train=False, decoder="torchcodec")
    with pytest.raises(UserError, match="AVI file with B-frames"):
        ds[0]


@pytest.mark.skipif(not _TORCHCODEC[0], reason=_TORCHCODEC[1])
def test_auto_first_pass_opens_each_file_once(monkeypatch, tmp_path):
    """An epoch meets every file once per worker: the B-frame probe must not cost an extra open. A B-frame
    stream is probed with the container that decodes it; in a folder without B-frames only the first
    file is probed, the others go straight to torchcodec. Same backend per stream, same pixels."""
    monkeypatch.delenv("TC_CLIP_DECODER", raising=False)
    monkeypatch.setattr(decoding, "_auto_pyav", {})
    monkeypatch.setattr(decoding, "_auto_family", {})
    opens: list[str] = []
    for module, name in ((decoding.pyav, "open_video"), (decoding.torchcodec, "read_frames")):
        real = getattr(module, name)
        counted = lambda src, *a, _real=real, **k: opens.append(str(src)) or _real(src, *a, **k)  # noqa: E731
        monkeypatch.setattr(module, name, counted)
    frames = noise_frames(20)
    for sub, options, expected in (("b", {"bf": "2"}, "pyav"), ("nob", {"bf": "0"}, "torchcodec")):
        paths = [tmp_path / sub / f"v{i}.mp4" for i in range(3)]
        for p in paths:
            p.parent.mkdir(exist_ok=True)
            synthetic.write_video(p, frames, fps=10, codec="libx264", options=options)
        opens.clear()
        clips = [decoding.decode(p, [1, 9]) for p in paths]
        probe = [str(paths[0])] if expected == "torchcodec" else []  # the folder's first file, once
        assert opens == probe + [str(p) for p in paths]
        for p, clip in zip(paths, clips, strict=True):
            assert clip.backend == expected
            np.testing.assert_array_equal(clip.frames, read_all_frames(p)[[1, 9]])


def test_shrink_equals_the_training_resize(gop_videos, backend):
    """The decoder's resize is the transform's: resizing there or in the transform gives the same clip,
    whichever backend decoded it."""
    got, _ = read_frames(gop_videos[1], [0, 33], short_side=40, backend=backend)
    full = torch.from_numpy(read_all_frames(gop_videos[1])[[0, 33]]).permute(0, 3, 1, 2)
    expected = v2.functional.resize(full, [40], antialias=True).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, expected)


def test_data_module_decoder_option(synth, monkeypatch, caplog):
    from tc_clip.data import VideoDataModule

    def dm(decoder):
        return VideoDataModule(train_list=synth.train_list, labels=synth.labels, num_frames=4, input_size=32,
                               batch_size=2, num_workers=0, decoder=decoder)

    from tc_clip.data import dataset

    dataset._announce_decoder.cache_clear()  # said once per process: forget earlier tests
    with caplog.at_level("INFO"):
        d = dm("pyav")
        d.setup("fit")
    assert "video decoder: pyav" in caplog.text and d.datasets("fit")[0].decoder == "pyav"
    batch = next(iter(d.train_dataloader()))
    assert batch["video"].shape == (2, 4, 3, 32, 32)
    assert batch["decoder"].tolist() == [decoding.DECODERS.index("pyav")] * 2
    monkeypatch.setattr(decoding.torchcodec, "torchcodec_status", lambda: (False, "torchcodec unavailable (test)"))
    with pytest.raises(RuntimeError, match="decoder 'torchcodec' was asked for but torchcodec unavailable"):
        dm("torchcodec").setup("fit")
