"""``tc-clip export``: every source (fit checkpoint with or without WiSE-FT, TCCLIP.save file, release file
from a random ViT-B/16, folder) becomes a folder that reloads with identical logits; ONNX matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import open_clip
import pytest
import torch
import yaml

from release_helpers import save_release
from tc_clip import TCCLIP, TCCLIPConfig, inference
from tc_clip.cli import main as tc_clip
from tc_clip.model import TINY_CLIP_CFG
from tc_clip.model.pretrained import CARD_FILE, read_config

NAMES = ["RunFast", "jump_high", "Swim"]
TINY = dict(num_frames=8, num_context_tokens=16, merge_step=40)


def logits(model: TCCLIP, frames: int = 8, size: int = 64, batch: int = 2) -> torch.Tensor:
    x = torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.eval()(x)


def export(capsys, *args: str) -> tuple[int, str]:
    code = tc_clip(["export", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pt"
    torch.save(open_clip.CLIP(**TINY_CLIP_CFG).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def fit_run(tmp_path_factory, clip_file) -> Path:
    """A run folder as ``tc-clip fit`` leaves it: checkpoints/best.ckpt, config.yaml, eval_results.jsonl."""
    from tc_clip.lightning import TCCLIPModule

    run = tmp_path_factory.mktemp("runs") / "demo" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    module = TCCLIPModule(model_name="tiny", pretrained=str(clip_file), config=TCCLIPConfig(**TINY), class_names=NAMES)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # "fine-tuned": every weight moved away from CLIP's
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(module)
    trainer.save_checkpoint(run / "checkpoints" / "best.ckpt")
    config = {"model": {"model_name": "tiny", "pretrained": str(clip_file), "lr": 0.001},
              "data": {"class_path": "tc_clip.data.SyntheticVideoDataModule",
                       "init_args": {"num_frames": 8, "input_size": 64, "cache_dir": "/home/someone/secret"}},
              "trainer": {"max_epochs": 3}, "checkpoint": {"monitor": "val/synthetic/val/top1", "mode": "max"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    def record(stage, epoch, top1, **extra):
        return {"stage": stage, "epoch": epoch, **extra,
                "sets": [{"name": "synthetic/val", "top1": top1, "top5": 1.0, "videos": 30}]}

    records = [record("val", 0, 0.4), record("val", 1, 0.9), record("test", 1, 0.8, ckpt_path="/x/other.ckpt")]
    (run / "eval_results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run


def test_fit_checkpoint_exports_with_its_run_provenance_and_figures(fit_run, tmp_path, capsys):
    ckpt = fit_run / "checkpoints" / "best.ckpt"
    code, out = export(capsys, "--model", ckpt, "--output_dir", tmp_path / "out")
    assert code == 0, out
    loaded = TCCLIP.from_pretrained(tmp_path / "out")
    assert torch.equal(logits(loaded), logits(inference.load_model(ckpt)))
    assert loaded.class_names == NAMES
    prov = read_config(tmp_path / "out")["provenance"]
    assert prov["source_kind"] == "lightning" and prov["checkpoint"] == "best.ckpt" and prov["epoch"] == 0
    assert len(prov["source_sha256"]) == 64 and prov["run"] == "version_0"
    # the figures of this checkpoint (epoch 0), not the run's best epoch nor another checkpoint's test
    assert prov["evaluation"]["epoch"] == 0 and prov["evaluation"]["sets"][0]["top1"] == 0.4
    assert prov["training"]["data"] == "tc_clip.data.SyntheticVideoDataModule"
    assert prov["training"]["model.pretrained"] == "tiny_clip.pt"  # a file name, not the training machine's path
    card = (tmp_path / "out" / CARD_FILE).read_text()
    assert "| synthetic/val | 40.0 | 100.0 | 30 |" in card and "/home/someone" not in json.dumps(prov)


def test_wise_ft_is_baked_in_and_recorded(fit_run, clip_file, tmp_path, capsys):
    from tc_clip.model import wise as ensemble

    ckpt = fit_run / "checkpoints" / "best.ckpt"
    code, out = export(capsys, "--model", ckpt, "--clip_weights", clip_file, "--wise_ratio", "0.5",
                       "--output_dir", tmp_path / "wise")
    assert code == 0, out
    finetuned = inference.load_model(ckpt)
    expected = ensemble.ensembled_copy(finetuned, ensemble.load_clip_state(clip_file, model=finetuned), 0.5)
    loaded = TCCLIP.from_pretrained(tmp_path / "wise")
    assert torch.equal(logits(loaded), logits(expected))
    assert not torch.equal(logits(loaded), logits(finetuned))
    prov = read_config(tmp_path / "wise")["provenance"]
    assert prov["wise_ft"]["ratio"] == 0.5 and prov["wise_ft"]["clip_weights"] == "tiny_clip.pt"
    assert "evaluation" not in prov and "before WiSE-FT" in prov["evaluation_note"]
    code, out = export(capsys, "--model", ckpt, "--clip_weights", clip_file, "--wise_ratio", "1.5",
                       "--output_dir", tmp_path / "bad")
    assert code == 1 and out.strip().startswith("tc-clip: error:") and "alpha must be in [0, 1]" in out
    code, out = export(capsys, "--model", ckpt, "--wise_ratio", "0.5", "--output_dir", tmp_path / "bad2")
    assert code == 1 and "WiSE-FT needs the CLIP weights" in out


def test_tcclip_save_file_and_folder_export(tmp_path, capsys):
    model = inference.tiny_model(NAMES, positional_embedding="joint")
    model.save(tmp_path / "model.pt")
    code, out = export(capsys, "--model", tmp_path / "model.pt", "--output_dir", tmp_path / "a")
    assert code == 0, out
    assert torch.equal(logits(TCCLIP.from_pretrained(tmp_path / "a")), logits(model))
    assert read_config(tmp_path / "a")["provenance"]["source_kind"] == "tcclip"
    names = tmp_path / "names.txt"
    names.write_text("juggling\nriding a bike\n")
    code, out = export(capsys, "--model", tmp_path / "a", "--output_dir", tmp_path / "b", "--class_names", names)
    assert code == 0, out
    again = TCCLIP.from_pretrained(tmp_path / "b")
    assert again.class_names == ["juggling", "riding a bike"]
    assert read_config(tmp_path / "b")["provenance"]["source_kind"] == "tcclip"  # the folder's provenance is kept


def test_export_errors_are_one_line(tmp_path, capsys):
    code, out = export(capsys, "--output_dir", tmp_path / "x")
    assert code == 2 and out.strip() == "tc-clip: error: export: the following arguments are required: --model"
    code, out = export(capsys, "--model", tmp_path / "missing.ckpt", "--output_dir", tmp_path / "x")
    missing = tmp_path / "missing.ckpt"
    assert code == 1 and out.strip().splitlines() == [f"tc-clip: error: model file not found: {missing}"]
    inference.tiny_model(NAMES).save(tmp_path / "m.pt")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    code, out = export(capsys, "--model", tmp_path / "m.pt", "--output_dir", tmp_path / "full")
    assert code == 1 and "exists and is not empty" in out and (tmp_path / "full" / "keep.txt").exists()


def test_release_file_from_a_random_vit_b16_exports_and_reloads_identically(tmp_path, capsys):
    from release_helpers import to_release_layout

    torch.manual_seed(0)
    clip_path = tmp_path / "ViT-B-16.pt"
    torch.save({k: v.half() for k, v in open_clip.create_model("ViT-B-16-quickgelu").state_dict().items()}, clip_path)
    model = TCCLIP.from_clip("ViT-B-16", str(clip_path), ["archery", "bowling", "ApplyEyeMakeup"], quick_gelu=True,
                             num_frames=2)
    with torch.no_grad():
        for p in model.visual.local_global_bias.values():
            p.normal_(std=0.3)
        model.prompt_ctx.add_(torch.randn_like(model.prompt_ctx) * 0.1)
    release = save_release(tmp_path / "zero_shot_k400_tc_clip.pth", to_release_layout(model),
                           {"trainer_name": "TCCLIP", "num_frames": 2, "context_token_k": 96})
    del model
    code, out = export(capsys, "--model", release, "--output_dir", tmp_path / "k400")
    assert code == 1 and "give CLIP's weights (--clip_weights" in out
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,archery\n1,bowling\n2,ApplyEyeMakeup\n")
    code, out = export(capsys, "--model", release, "--clip_weights", clip_path, "--output_dir", tmp_path / "k400",
                       "--class_names", labels)
    assert code == 0, out
    reference = TCCLIP.from_release_checkpoint(release, clip_weights=str(clip_path),
                                               class_names=["archery", "bowling", "ApplyEyeMakeup"])
    loaded = TCCLIP.from_pretrained(tmp_path / "k400")
    assert torch.equal(logits(loaded, frames=2, size=224, batch=1), logits(reference, frames=2, size=224, batch=1))
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    prov = read_config(tmp_path / "k400")["provenance"]
    assert prov["release_file"] == "zero_shot_k400_tc_clip.pth" and prov["clip_weights"] == "ViT-B-16.pt"


@pytest.mark.slow
@pytest.mark.parametrize("switches", [{}, {"aggregation": "kmeans", "positional_embedding": "joint"}],
                         ids=["default", "kmeans-joint"])
def test_onnx_matches_pytorch_with_a_dynamic_batch(tmp_path, capsys, switches):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    from tc_clip.model.onnx import onnx_logits

    model = inference.tiny_model(NAMES, **switches)
    model.save(tmp_path / "m.pt")
    code, out = export(capsys, "--model", tmp_path / "m.pt", "--output_dir", tmp_path / "onnx", "--format", "onnx",
                       "--check_onnx")
    assert code == 0, out
    assert "model.onnx matches PyTorch" in out
    info = read_config(tmp_path / "onnx")["onnx"]
    assert info["file"] == "model.onnx" and info["class_names"] == NAMES
    for batch in (1, 3):
        x = torch.randn(batch, 8, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model.eval()(x)
        got = onnx_logits(tmp_path / "onnx" / "model.onnx", x)
        assert (got - expected).abs().max() < 1e-4
        assert torch.equal(got.argmax(-1), expected.argmax(-1))


@pytest.mark.parametrize("aggregation", ["tube", "random"])
def test_onnx_refuses_switches_it_does_not_export_by_name(tmp_path, capsys, aggregation):
    inference.tiny_model(NAMES, aggregation=aggregation).save(tmp_path / "m.pt")
    code, out = export(capsys, "--model", tmp_path / "m.pt", "--output_dir", tmp_path / "o", "--format", "onnx")
    assert code == 1 and f"aggregation={aggregation!r}" in out and "Export the model folder" in out
