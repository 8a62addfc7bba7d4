"""litdata shards: packing, streaming with the same clips as from files, DDP, mid-epoch resume, safety."""

from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("litdata")

from data_helpers import make_synthetic  # noqa: E402
from tc_clip.data import BadVideoWarning, VideoDataModule  # noqa: E402
from tc_clip.data.shards import META_FILE, pack  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("synth") / "ds")


@pytest.fixture(scope="module")
def shards(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = pack(_dm(synth), out)
    return out, report


def _dm(synth, **kw):
    args = dict(train_list=synth.train_list, val_list=synth.val_list, labels=synth.labels, num_frames=4,
                input_size=32, batch_size=3, num_workers=0, seed=3)
    args.update(kw)
    return VideoDataModule(**args)


def test_pack_report_layout_and_idempotence(synth, shards, tmp_path):
    out, report = shards
    sets = [(s["stage"], s["name"], s["videos"]) for s in report["sets"]]
    assert sets == [("fit", "train", 9), ("validate", "val", 3)]
    root = Path(synth.root)
    lines = Path(synth.train_list).read_text().splitlines()
    sizes = sum(os.path.getsize(root / line.rsplit(" ", 1)[0]) for line in lines)
    assert report["sets"][0]["bytes"] == sizes
    index = json.loads((out / "fit" / "00" / "index.json").read_text())
    assert sorted(set(index["config"]["data_format"])) == ["bytes", "int", "str"]  # no video/file/pickle formats
    before = (out / "fit" / "00" / "index.json").stat().st_mtime_ns
    assert pack(_dm(synth), out)["sets"] == report["sets"]  # same fingerprint: kept
    assert (out / "fit" / "00" / "index.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="stage must be one of"):
        pack(_dm(synth), out, stage="predict")
    lst = tmp_path / "list.txt"
    lst.write_text(Path(synth.val_list).read_text() + f"{tmp_path / 'gone.mp4'} 0\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.mp4 \(.*list\.txt:4\)"):
        pack(_dm(synth, val_list=str(lst), root=str(Path(synth.val_list).parent)), tmp_path / "s", stage="validate")


def test_stream_every_video_once_per_epoch_and_reshuffled(synth, shards):
    dm = _dm(synth, shards_dir=str(shards[0]))
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert type(loader).__name__ == "StreamingDataLoader"
    epochs = []
    for _ in range(2):
        order = []
        for b in loader:
            assert b["video"].dtype == torch.uint8 and b["video"].shape == (3, 4, 3, 32, 32)
            assert b["label"].tolist() == [dm.datasets("fit")[0].samples[i].label for i in b["index"].tolist()]
            order += b["index"].tolist()
        epochs.append(order)
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(9))
    assert epochs[0] != epochs[1]


def test_sharded_evaluation_equals_files(synth, shards):
    """Same clips, batches and metrics from the shards as from the files."""
    from tc_clip.lightning import TCCLIPModule
    from tc_clip.model import TCCLIPConfig

    results = []
    for shards_dir in (None, str(shards[0])):
        dm = _dm(synth, shards_dir=shards_dir, input_size=64, val_views=2, eval_batch_size=2)
        dm.setup("validate")
        batches = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()[0]]
        torch.manual_seed(0)
        module = TCCLIPModule(model_name="tiny", config=TCCLIPConfig(num_frames=4, num_context_tokens=16,
                                                                     merge_step=20))
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        metrics = trainer.validate(module, datamodule=dm, verbose=False)[0]
        results.append((batches, metrics))
    (files, m_files), (sharded, m_shards) = results
    assert type(_dm(synth, shards_dir=str(shards[0])).val_dataloader()[0]).__name__ == "StreamingDataLoader"
    assert len(files) == len(sharded) == 2
    for a, b in zip(files, sharded, strict=True):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["label"], b["label"])
        assert torch.equal(a["index"], b["index"]) and torch.equal(a["decoder"], b["decoder"])
        assert bool((a["decoder"] >= 0).all())  # every clip names the backend that read it
    assert m_files and m_files == m_shards


def test_mid_epoch_resume(synth, shards):
    def loader():
        dm = _dm(synth, shards_dir=str(shards[0]), batch_size=2)
        dm.setup("fit")
        return dm.train_dataloader()

    full = [b["index"].tolist() for b in loader()]
    first = loader()
    it = iter(first)
    seen = [next(it)["index"].tolist() for _ in range(2)]
    state = first.state_dict()
    resumed = loader()
    resumed.load_state_dict(state)
    rest = [b["index"].tolist() for b in resumed]
    assert seen + rest == full and len(full) == 4  # 9 videos, batch 2: the last one is dropped


def test_shards_dir_checks(synth, shards, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("\n".join(Path(synth.train_list).read_text().splitlines()[:5]) + "\n")
    dm = _dm(synth, shards_dir=str(shards[0]), train_list=str(other), root=str(Path(synth.train_list).parent))
    dm.setup("fit")
    with pytest.raises(ValueError, match="training split \\(5 videos\\) is not packed"):
        dm.train_dataloader()
    with pytest.raises(FileNotFoundError, match=META_FILE):
        _dm(synth, shards_dir=str(tmp_path)).train_dataloader()
    evil = tmp_path / "evil"
    evil.mkdir()
    for f in (shards[0]).iterdir():
        if f.is_file():
            (evil / f.name).write_bytes(f.read_bytes())
    (evil / "fit").mkdir()
    (evil / "fit" / "00").mkdir()
    for f in (shards[0] / "fit" / "00").iterdir():
        (evil / "fit" / "00" / f.name).write_bytes(f.read_bytes())
    index = json.loads((evil / "fit" / "00" / "index.json").read_text())
    index["config"]["data_format"] = ["pickle", "int", "str", "int"]
    (evil / "fit" / "00" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="pickle"):
        _dm(synth, shards_dir=str(evil)).train_dataloader()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, synth_paths: tuple[str, str, str], shards_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        random.seed(rank)
        train, val, labels = synth_paths
        dm = VideoDataModule(train_list=train, val_list=val, labels=labels, num_frames=4, input_size=32,
                             batch_size=2, num_workers=0, seed=3, shards_dir=shards_dir)
        dm.setup("fit")
        loader = dm.train_dataloader()
        epochs = [[i for b in loader for i in b["index"].tolist()] for _ in range(2)]
        gathered = [None] * world
        dist.all_gather_object(gathered, epochs)
        if rank == 0:
            Path(shards_dir, "ddp.json").write_text(json.dumps(gathered))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_see_every_video_once(synth, tmp_path):
    """8 training videos, 2 ranks x batch 2: every video exactly once per epoch across the ranks."""
    lines = Path(synth.train_list).read_text().splitlines()[:8]
    root = Path(synth.train_list).parent
    train = tmp_path / "train8.txt"
    train.write_text("\n".join(f"{root / line.rsplit(' ', 1)[0]} {line.rsplit(' ', 1)[1]}" for line in lines) + "\n")
    paths = (str(train), synth.val_list, synth.labels)
    pack(VideoDataModule(train_list=paths[0], val_list=paths[1], labels=paths[2]), tmp_path / "shards")
    mp.start_processes(_ddp_worker, args=(2, _free_port(), paths, str(tmp_path / "shards")), nprocs=2,
                       start_method="fork")
    per_rank = json.loads((tmp_path / "shards" / "ddp.json").read_text())
    for epoch in range(2):
        a, b = per_rank[0][epoch], per_rank[1][epoch]
        assert len(a) == len(b) == 4 and sorted(a + b) == list(range(8)), (epoch, a, b)
    assert per_rank[0][0] != per_rank[0][1] or per_rank[1][0] != per_rank[1][1]  # reshuffled


def test_unreadable_video_handled_as_from_files(synth, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00garbage" * 50)
    root = Path(synth.val_list).parent
    lines = [f"{bad} 0"] + [f"{root / x.rsplit(' ', 1)[0]} {x.rsplit(' ', 1)[1]}"
                            for x in Path(synth.val_list).read_text().splitlines()]
    lst = tmp_path / "val.txt"
    lst.write_text("\n".join(lines) + "\n")
    pack(_dm(synth, val_list=str(lst)), tmp_path / "shards", stage="validate")
    batches = []
    for shards_dir in (None, str(tmp_path / "shards")):
        dm = _dm(synth, val_list=str(lst), shards_dir=shards_dir, eval_batch_size=4)
        dm.setup("validate")
        with pytest.warns(BadVideoWarning, match="bad.mp4"):
            batches.append(next(iter(dm.val_dataloader()[0])))
    files, sharded = batches
    assert sharded["skipped"].tolist() == files["skipped"].tolist() == [1, 0, 0, 0]
    assert sharded["label"][0] == files["label"][0] == -1  # left out of the metric
    for key in ("video", "label", "index"):
        assert torch.equal(files[key], sharded[key]), key
    strict = _dm(synth, val_list=str(lst), shards_dir=str(tmp_path / "shards"), strict=True)
    strict.setup("validate")
    with pytest.raises(Exception, match="bad.mp4"):
        next(iter(strict.val_dataloader()[0]))
