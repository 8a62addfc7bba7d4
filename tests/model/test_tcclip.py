"""TCCLIP: exactness of the fast path against the reference, building blocks, switches and bad input."""

from __future__ import annotations

import pytest
import torch

from reference import ref_bipartite_merge, ref_logits
from tc_clip import TCCLIP, TCCLIPConfig
from tc_clip.model import merge, text

NAMES = ["ApplyEyeMakeup", "playing_guitar", "run", "jump high over the fence quickly"]


def tiny(**overrides) -> TCCLIP:
    torch.manual_seed(0)
    overrides.setdefault("num_frames", 4)
    return TCCLIP.from_clip("tiny", class_names=NAMES, **overrides)


def video(b=2, t=4, size=64, seed=1) -> torch.Tensor:
    return torch.randn(b, t, 3, size, size, generator=torch.Generator().manual_seed(seed))


SWITCHES = [
    {},
    {"vp_layers": [1]},
    {"vp_layers": [0, 2]},
    {"use_vp": False},
    {"num_context_tokens": 20, "merge_step": 7},
    {"positional_embedding": "joint"},
    {"local_global_bias": False},
    {"n_ctx": 6, "prompt_init": "random"},
    {"vp_init": "random"},
    {"use_tc": False, "use_vp": False, "n_ctx": 0, "prompt_template": "a photo of a {}."},
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
def test_fast_path_matches_reference_logits_and_gradients(switches):
    model = tiny(**switches)
    with torch.no_grad():  # make the new parameters non-trivial
        for p in model.visual.local_global_bias.values():
            p.normal_(std=0.5)
    x = video()
    fast = model(x)
    ref = ref_logits(model, x)
    assert torch.allclose(fast, ref, atol=1e-5, rtol=0), (fast - ref).abs().max()

    params = [p for p in model.parameters() if p.requires_grad]
    weights = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * weights).sum(), params, allow_unused=True)
    g_ref = torch.autograd.grad((ref * weights).sum(), params, allow_unused=True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, g_fast, g_ref, strict=True):
        if a is None or b is None:
            assert a is None and b is None or (a if a is not None else b).abs().max() == 0, name
            continue
        # 1e-5 relative to the gradient's scale: sums over classes run in another order on the fast path
        scale = float(b.abs().max().clamp_min(1.0))
        assert torch.allclose(a, b, atol=1e-5 * scale, rtol=1e-4), (name, (a - b).abs().max(), scale)


def test_eval_cache_is_exact_and_follows_names_and_weights():
    model = tiny().eval()
    x = video()
    with torch.no_grad():
        first = model(x)
        assert torch.equal(model(x), first)  # cached text prefix gives the same numbers
        model.set_class_names(NAMES[:2])
        assert model(x).shape == (2, 2)
        assert torch.allclose(model(x), ref_logits(model, x)[:, :2], atol=1e-5)
        model.set_class_names(NAMES)
        # weights changed in place (as an optimizer step does); a constant shift would vanish in LayerNorm
        model.prompt_ctx.add_(torch.randn(model.prompt_ctx.shape, generator=torch.Generator().manual_seed(3)))
        changed = model(x)
        assert not torch.allclose(changed, first)
        assert torch.allclose(changed, ref_logits(model, x), atol=1e-5)


@pytest.mark.parametrize(
    "n,k,r,expected",
    [
        (928, 96, 100, [100] * 8 + [32]),
        (10, 4, 3, [3, 3]),
        (20, 8, 100, [10, 2]),
        (96, 96, 100, []),
        (50, 96, 100, []),
        (300, 10, 100, [100, 100, 50, 25, 12, 3]),
    ],
)
def test_merge_schedule(n, k, r, expected):
    steps = merge.merge_schedule(n, k, r)
    assert steps == expected
    assert n - sum(steps) == min(n, k)


def test_bipartite_step_on_hand_made_tokens():
    # even positions (A): a0, a1, a2; odd positions (B): b0, b1
    a0, a1, a2 = [1.0, 0.0], [0.0, 1.0], [0.9, 0.1]
    b0, b1 = [1.0, 0.05], [0.0, 2.0]
    x = torch.tensor([[a0, b0, a1, b1, a2]])
    size = torch.tensor([[[1.0], [1.0], [2.0], [1.0], [3.0]]])
    out, out_size, _ = merge.bipartite_merge_step(x, size, r=2)
    # best matches: a0->b0 (0.99875), a1->b1 (1.0), a2->b0 (0.99820); sorted a1, a0, a2: merge a1 and a0
    expected_b0 = (torch.tensor(b0) * 1 + torch.tensor(a0) * 1) / 2
    expected_b1 = (torch.tensor(b1) * 1 + torch.tensor(a1) * 2) / 3
    assert torch.allclose(out[0], torch.stack([torch.tensor(a2), expected_b0, expected_b1]))
    assert out_size[0].flatten().tolist() == [3.0, 2.0, 3.0]


def test_several_sources_land_on_one_target_and_sizes_add():
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.9, 0.0], [-1.0, 0.0], [0.95, 0.05]]])
    out, size, sources = merge.bipartite_merge_step(x, torch.ones(1, 5, 1), r=3, sources=torch.eye(5)[None])
    # all three A tokens match b0 = [1, .1]; b1 = [-1, 0] stays alone
    assert size[0].flatten().tolist() == [4.0, 1.0]
    assert torch.allclose(out[0, 0], x[0, [0, 1, 2, 4]].mean(0))
    assert sources[0, 0].tolist() == [1, 1, 1, 0, 1]


def test_bipartite_merge_equals_token_by_token_reference():
    x = torch.randn(3, 40, 8, generator=torch.Generator().manual_seed(3))
    out, sources = merge.bipartite_merge(x, k=9, r=6, track_sources=True)
    for b in range(3):
        assert torch.allclose(out[b], ref_bipartite_merge(x[b], 9, 6), atol=1e-6)
    assert torch.equal(sources.sum(1), torch.ones(3, 40))  # every seed ends up in exactly one token


def test_no_gradient_through_similarity_but_through_averaging():
    x = torch.randn(1, 12, 4, requires_grad=True)
    out, _ = merge.bipartite_merge(x, k=4, r=3)
    (grad,) = torch.autograd.grad(out.sum(), x)
    # each output is the mean of its group, so every input token gets 1/|group| on every feature and the
    # gradients sum to k per feature; a gradient through the similarity would break both
    assert torch.allclose(grad[0].sum(0), torch.full((4,), 4.0))
    assert torch.allclose(grad[0, :, 0:1].expand(-1, 4), grad[0])


@pytest.mark.parametrize("method", ["kmeans", "random", "tube", "none"])
def test_other_aggregations_give_context_tokens(method):
    model = tiny(aggregation=method, num_context_tokens=8)
    logits, aux = model(video(), return_aux=True)
    assert logits.shape == (2, len(NAMES)) and torch.isfinite(logits).all()
    assert len(aux.context_sources) == model.visual.num_layers
    seeds = model.visual.num_seeds * 4
    assert torch.allclose(aux.context_sources[0].sum((1, 2, 3)), torch.full((2,), float(seeds)))


def test_seed_selection_takes_top_cls_attention_in_order():
    model = tiny()
    _, aux = model(video(), return_aux=True)
    m = int(64 * 0.3)
    for idx, score in zip(aux.seed_indices, aux.cls_attention, strict=True):
        assert idx.shape == (2, 4, m)
        picked = score.gather(-1, idx)
        assert torch.all(picked[..., :-1] >= picked[..., 1:])  # descending
        assert torch.allclose(picked[..., -1], score.topk(m, -1).values[..., -1])
    # context sources: each context token points back to the patches it came from
    src = aux.context_sources[-1]
    assert src.shape == (2, min(96, 4 * m), 4, 64) and torch.allclose(src.sum((1, 2, 3)), torch.full((2,), 4.0 * m))


def test_local_global_bias_parameters():
    model = tiny()
    bias = model.visual.local_global_bias
    assert sorted(bias.keys(), key=int) == [str(i) for i in range(1, model.visual.num_layers)]
    assert all(p.shape == (2, 1, 2) for p in bias.values())
    assert all(p.abs().max() < 0.05 for p in bias.values())  # truncated normal, std 0.02
    assert len(tiny(local_global_bias=False).visual.local_global_bias) == 0
    # a large global bias changes the result: the bias is really used
    model.eval()
    x = video()
    before = model(x)
    with torch.no_grad():
        bias["1"][..., 1] += 5.0
    assert not torch.allclose(model(x), before)


def test_joint_positional_table_starts_as_clip_table_repeated():
    torch.manual_seed(0)
    space = TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=4)
    torch.manual_seed(0)
    joint = TCCLIP.from_clip("tiny", class_names=NAMES, num_frames=4, positional_embedding="joint")
    assert joint.visual.positional_embedding.shape == (4, 65, 64)
    for t in range(4):
        assert torch.equal(joint.visual.positional_embedding[t], space.visual.positional_embedding)
    with pytest.raises(ValueError, match="joint positional table has 4 frames"):
        joint(video(t=3))


def test_class_name_parsing_and_prompt_tokens():
    assert text.parse_class_name("ApplyEyeMakeup") == "Apply Eye Makeup"
    assert text.parse_class_name("playing_guitar") == "playing guitar"
    assert text.parse_class_name("YoYo") == "Yo Yo"
    assert text.build_prompts(["ApplyEyeMakeup"], 4) == ["X X X X Apply Eye Makeup."]
    model = tiny()
    assert model.prompt_tokens.shape == (len(NAMES), 30)
    tokens = text.tokenize(["X X X X apply eye makeup."], 30)[0]
    assert tokens[0] == 49406 and tokens.argmax() == 9 and tokens[10:].eq(0).all()


def test_prompt_vectors_start_from_a_photo_of_a():
    model = tiny()
    ids = text.tokenize(["a photo of a"], 77)[0, 1:5]
    assert torch.equal(model.prompt_ctx.data, model.token_embedding.weight[ids])
    assert model.token_embedding.weight.requires_grad is False


def test_vp_block_starts_as_clip_text_layer():
    model = tiny()
    block, clip_layer = model.vp_blocks[0], model.transformer.resblocks[-1]
    for name, value in clip_layer.state_dict().items():
        assert torch.equal(block.state_dict()[name], value)
    assert torch.equal(block.ln_1_kv.weight, clip_layer.ln_1.weight)


def test_stop_gradient_blocks_vision_gradient_from_vp():
    x = video()
    for stop, expect_grad in ((True, False), (False, True)):
        model = tiny(stop_gradient=stop)
        logits, vision = model(x, return_aux=True)
        # gradient of the VP-conditioned text alone with respect to the vision tower
        text_emb = model.encode_text(vision)
        grads = torch.autograd.grad(text_emb.sum(), [model.visual.conv1.weight], allow_unused=True)
        has_grad = grads[0] is not None and bool(grads[0].abs().sum() > 0)
        assert has_grad is expect_grad


@pytest.mark.parametrize("tokens", ["cls", "gap"])
def test_vp_on_frame_tokens(tokens):
    model = tiny(vp_tokens=tokens)
    assert model(video()).shape == (2, len(NAMES))


def test_grad_checkpointing_gives_same_gradients():
    x = video()
    plain, ckpt = tiny(), tiny(grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    ga = torch.autograd.grad(plain(x).sum(), plain.visual.conv1.weight)[0]
    gb = torch.autograd.grad(ckpt(x).sum(), ckpt.visual.conv1.weight)[0]
    assert torch.allclose(ga, gb, atol=1e-6)


def test_param_groups_split_prompt_and_base():
    model = tiny()
    groups = model.param_groups()
    prompt_ids = {id(p) for p in groups["prompt"]}
    assert id(model.prompt_ctx) in prompt_ids
    assert all(id(p) in prompt_ids for p in model.vp_blocks.parameters())
    assert all(id(p) not in prompt_ids for p in model.visual.local_global_bias.values())
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(p.numel() for g in groups.values() for p in g) == total


def test_state_dict_keeps_clip_key_names():
    import open_clip

    from tc_clip.model import TINY_CLIP_CFG

    clip_keys = set(open_clip.CLIP(**TINY_CLIP_CFG).state_dict())
    own = set(tiny().state_dict())
    assert clip_keys <= own
    new = ("visual.local_global_bias.", "prompt_ctx", "vp_blocks.")
    assert own - clip_keys == {k for k in own if k.startswith(new)}


def test_save_and_load_round_trip(tmp_path):
    model = tiny(positional_embedding="joint").eval()
    path = tmp_path / "model.pt"
    model.save(path)
    loaded = TCCLIP.load(path).eval()
    assert loaded.class_names == NAMES and loaded.config == model.config
    x = video()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(2, 3, 64, 64), r"expected a video tensor \[B, T, 3, 64, 64\], got \(2, 3, 64, 64\)"),
        (torch.randn(1, 4, 3, 32, 32), r"got \(1, 4, 3, 32, 32\)"),
        (torch.randn(1, 4, 1, 64, 64), r"got \(1, 4, 1, 64, 64\)"),
    ],
)
def test_bad_video_shapes(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny()(bad)


def test_bad_options_and_vocabulary():
    with pytest.raises(ValueError, match="class_names is empty"):
        tiny().set_class_names([])
    with pytest.raises(ValueError, match=r"aggregation='merge' is not one of"):
        tiny(aggregation="merge")
    with pytest.raises(ValueError, match="seed_ratio"):
        tiny(seed_ratio=0.0)
    with pytest.raises(ValueError, match="vp_layers index 7 out of range"):
        tiny(vp_layers=[7])
    with pytest.raises(ValueError, match="needs use_tc=True"):
        tiny(use_tc=False)
    with pytest.raises(ValueError, match="no class names set"):
        TCCLIP.from_clip("tiny", num_frames=4)(video())
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-Q-99'"):
        TCCLIP.from_clip("ViT-Q-99")


def test_vifi_clip_config():
    cfg = TCCLIPConfig.vifi_clip(num_frames=4)
    model = TCCLIP.from_clip("tiny", class_names=NAMES, config=cfg)
    assert model.prompt_ctx is None and len(model.vp_blocks) == 0
    assert len(model.visual.local_global_bias) == 0
    x = video()
    assert torch.allclose(model(x), ref_logits(model, x), atol=1e-5)


def test_other_open_clip_architectures():
    """Nothing is tied to ViT-B/16: a random ViT-B/32 (7x7 patches, 49 seeds -> 14 per frame) runs."""
    torch.manual_seed(0)
    model = TCCLIP.from_clip("ViT-B-32", class_names=NAMES, num_frames=3, num_context_tokens=16).eval()
    assert model.visual.num_patches == 49 and model.visual.num_seeds == 14
    with torch.no_grad():
        logits, aux = model(torch.randn(1, 3, 3, 224, 224), return_aux=True)
    assert logits.shape == (1, len(NAMES)) and aux.context_sources[-1].shape == (1, 16, 3, 49)


def test_blank_and_duplicate_class_names_are_errors_naming_all():
    same = r"names that give the same prompt: 'ApplyEyeMakeup' \(#0\) = 'apply eye makeup' \(#2\); 'run' \(#4\) = 'Run'"
    with pytest.raises(ValueError, match=r"blank names at positions \[1, 3\]; " + same):
        tiny().set_class_names(["ApplyEyeMakeup", " ", "apply eye makeup", "", "run", "Run"])


def test_names_too_long_for_the_context_are_errors_naming_all():
    stem = " ".join(["word"] * 30)
    assert len(text._tokenizer().encode(stem)) == 30
    names = ["run", f"{stem} quickly", f"{stem} slowly"]  # differ only after token 30
    listed = r"'X X X X word.* quickly\.' \(38 tokens\); 'X X X X word.* slowly\.' \(38 tokens\)"
    with pytest.raises(ValueError, match=r"2 prompt\(s\) do not fit the text context length 30 .*" + listed):
        tiny().set_class_names(names)
    model = tiny()
    with pytest.raises(ValueError, match="do not fit"):
        model.set_class_names(["run", "x" * 400])
    assert model.class_names == NAMES  # a refused vocabulary leaves the old one in place


def test_long_llm_name_with_a_long_context_matches_the_reference():
    name = " ".join(["a person"] * 28 + ["dancing"])  # as long as the longest LLM-rephrased K-400 name
    assert len(text._tokenizer().encode(name)) == 57
    model = tiny(context_length=77)
    model.set_class_names([*NAMES, name])
    x = video()
    fast = model(x)
    assert torch.allclose(fast, ref_logits(model, x), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"\(64 tokens\)"):
        tiny().set_class_names([name])  # the paper's context length 30 does not hold it
