"""The ``mpnet`` extra: the model folder assembled from its zip slices, and parity on the real weights.

The assembler's checks run on a small zip made here; the real-weights tests run only
where the five part packages are installed (``make install-mpnet``) and skip otherwise.
Bounds on the real model: float32 within the parity suite's 1e-4 (measured about 1e-6 on
hidden states and logits); bfloat16 within 5e-2 relative error per token on hidden states
(measured about 1e-2).  Run with ``-s`` to see the measured differences.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from flaxmodel import CheckpointError, apply, hidden_states, load_checkpoint
from flaxmodel.ckpts import mpnet_base
from flaxmodel.inference.tokenizer import Tokenizer, load_tokenizer
from tests.fixtures import TEXTS
from tests.flaxmodel.core.test_parity import BFLOAT16_RELATIVE_HIDDEN_BOUND, FLOAT32_BOUND

FAKE_WEIGHTS = b"not really safetensors"


def write_slices(folder, members: dict[str, bytes], count: int = 5) -> list[str]:
    """A zip of ``members`` under the real zip's top folder, cut into ``count`` slice files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(mpnet_base.ZIP_FOLDER + name, data)
    data = buffer.getvalue()
    cuts = np.linspace(0, len(data), count + 1).astype(int)
    paths = []
    for i in range(count):
        path = folder / f"{mpnet_base.ZIP_STEM}.{i + 1:03d}"
        path.write_bytes(data[cuts[i] : cuts[i + 1]])
        paths.append(str(path))
    return paths


@pytest.fixture
def fake_slices(tmp_path, monkeypatch):
    monkeypatch.setattr(mpnet_base, "WEIGHTS_SHA256", hashlib.sha256(FAKE_WEIGHTS).hexdigest())
    members = {"config.json": b"{}", "model.safetensors": FAKE_WEIGHTS, "tokenizer.json": b"{}", "README.md": b"card"}
    (tmp_path / "parts").mkdir()
    return write_slices(tmp_path / "parts", members)


def test_slices_join_into_the_three_files(fake_slices, tmp_path):
    out = tmp_path / "model"
    assert mpnet_base.assemble(str(out), fake_slices) == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert (out / "model.safetensors").read_bytes() == FAKE_WEIGHTS


def test_weights_with_another_hash_are_not_written(fake_slices, tmp_path, monkeypatch):
    monkeypatch.setattr(mpnet_base, "WEIGHTS_SHA256", "0" * 64)
    wrong = r"model\.safetensors from the mpnet parts has sha256 [0-9a-f]{64}, expected 0{64}"
    with pytest.raises(CheckpointError, match=wrong):
        mpnet_base.assemble(str(tmp_path / "model"), fake_slices)
    assert not (tmp_path / "model" / "model.safetensors").exists()
    assert not list((tmp_path / "model").glob("*.partial"))


def test_a_missing_or_dropped_slice_is_named(fake_slices, tmp_path):
    with pytest.raises(CheckpointError, match=r"zip slices missing: \[.*nowhere.*make install-mpnet"):
        mpnet_base.assemble(str(tmp_path / "model"), [*fake_slices[:4], str(tmp_path / "nowhere")])
    with pytest.raises(CheckpointError, match="do not join into a zip"):
        mpnet_base.assemble(str(tmp_path / "model"), fake_slices[:3] + fake_slices[4:])


def test_parts_not_installed_are_named_with_the_install_command(monkeypatch, capsys):
    monkeypatch.setattr(mpnet_base, "PART_PACKAGES", ("no-such-mpnet-part-001",))
    with pytest.raises(CheckpointError, match=r"no-such-mpnet-part-001 is not installed.*make install-mpnet"):
        mpnet_base.part_paths()
    assert mpnet_base.main(["--output", "unused"]) == 2
    assert "error: the mpnet extra is incomplete" in capsys.readouterr().err


def test_mpnet_path_assembles_once_into_the_cache(fake_slices, tmp_path, monkeypatch):
    monkeypatch.setattr(mpnet_base, "part_paths", lambda: fake_slices)
    calls = []
    real_assemble = mpnet_base.assemble
    monkeypatch.setattr(mpnet_base, "assemble", lambda out: calls.append(out) or real_assemble(out))
    cache = tmp_path / "cache"
    folder = mpnet_base.mpnet_path(str(cache))
    assert folder == str(cache / f"all-mpnet-base-v2-{mpnet_base.WEIGHTS_SHA256[:16]}")
    assert (cache / folder / "model.safetensors").read_bytes() == FAKE_WEIGHTS
    assert mpnet_base.mpnet_path(str(cache)) == folder
    assert len(calls) == 1
    # Nothing is left of the staging folder.
    assert [p.name for p in cache.iterdir()] == [folder.rsplit("/", 1)[-1]]


def test_mpnet_path_keeps_the_copy_another_process_renamed_first(fake_slices, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    final = cache / f"all-mpnet-base-v2-{mpnet_base.WEIGHTS_SHA256[:16]}"
    monkeypatch.setattr(mpnet_base, "part_paths", lambda: fake_slices)
    real_assemble = mpnet_base.assemble

    def racing_assemble(out):
        real_assemble(str(final))  # the other process finishes while this one assembles
        return real_assemble(out)

    monkeypatch.setattr(mpnet_base, "assemble", racing_assemble)
    assert mpnet_base.mpnet_path(str(cache)) == str(final)
    assert sorted(p.name for p in cache.iterdir()) == [final.name]


def test_mpnet_path_reads_the_cache_variable_and_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv(mpnet_base.CACHE_ENV, str(tmp_path / "from-env"))
    monkeypatch.setattr(mpnet_base, "PART_PACKAGES", ("no-such-mpnet-part-001",))
    with pytest.raises(CheckpointError, match="make install-mpnet"):
        mpnet_base.mpnet_path()
    # The failed assembly left only the (empty) cache root behind.
    assert list((tmp_path / "from-env").iterdir()) == []


def _installed() -> bool:
    try:
        mpnet_base.part_paths()
    except CheckpointError:
        return False
    return True


real_weights = pytest.mark.skipif(not _installed(), reason="the mpnet extra is not installed (make install-mpnet)")


@pytest.fixture(scope="module")
def real_model(tmp_path_factory):
    """The assembled folder, its checkpoint with a random head of logits around 1, and a padded batch."""
    folder = mpnet_base.assemble(str(tmp_path_factory.mktemp("all-mpnet-base-v2")))
    checkpoint = load_checkpoint(folder, labels=("toxic", "fine"))
    rng = np.random.default_rng(0)
    hidden = checkpoint.config.hidden_size
    # The fresh head's 0.02-scale weights would make every logit difference look small.
    head = {
        "dense": {"kernel": rng.normal(size=(hidden, hidden)) / np.sqrt(hidden), "bias": rng.normal(size=hidden)},
        "out_proj": {"kernel": rng.normal(size=(hidden, 2)) / np.sqrt(hidden), "bias": rng.normal(size=2)},
    }
    head = {k: {n: v.astype(np.float32) for n, v in leaf.items()} for k, leaf in head.items()}
    params = {**checkpoint.params, "head": head}
    rows = Tokenizer(load_tokenizer(folder), 64).encode(TEXTS)
    ids = np.full((len(rows), max(map(len, rows))), checkpoint.config.pad_token_id, np.int32)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    assert mask.sum(axis=1).min() < ids.shape[1]  # padding in the batch
    return folder, checkpoint.config, params, ids, mask


def torch_outputs(folder, params, ids, mask) -> tuple[np.ndarray, np.ndarray]:
    """transformers' last hidden states (MPNetModel) and logits (MPNetForSequenceClassification, our head)."""
    model = transformers.MPNetForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    with torch.no_grad():
        for name in ("dense", "out_proj"):
            layer = getattr(model.classifier, name)
            layer.weight.copy_(torch.from_numpy(params["head"][name]["kernel"].T))
            layer.bias.copy_(torch.from_numpy(params["head"][name]["bias"]))
        inputs = {"input_ids": torch.from_numpy(ids).long(), "attention_mask": torch.from_numpy(mask).long()}
        hidden = transformers.MPNetModel.from_pretrained(folder).eval()(**inputs).last_hidden_state
        return hidden.numpy(), model(**inputs).logits.numpy()


@real_weights
def test_real_mpnet_matches_transformers_in_float32_and_stays_close_in_bfloat16(real_model):
    folder, config, params, ids, mask = real_model
    expected_hidden, expected_logits = torch_outputs(folder, params, ids, mask)
    real = mask > 0
    ours = np.asarray(hidden_states(params, ids, mask, config=config))
    logits = np.asarray(apply(params, ids, mask, config=config))
    hidden_diff, logit_diff = np.abs(ours - expected_hidden)[real].max(), np.abs(logits - expected_logits).max()
    print(f"\nall-mpnet-base-v2 float32 max |hidden diff| {hidden_diff:.2e}, max |logit diff| {logit_diff:.2e} "
          f"(logits up to {np.abs(expected_logits).max():.2f})")
    assert hidden_diff < FLOAT32_BOUND and logit_diff < FLOAT32_BOUND

    bf16 = np.asarray(hidden_states(params, ids, mask, config=config, dtype=jnp.bfloat16), np.float32)
    relative = np.linalg.norm(bf16 - expected_hidden, axis=-1)[real] / np.linalg.norm(expected_hidden, axis=-1)[real]
    bf16_logits = np.asarray(apply(params, ids, mask, config=config, dtype=jnp.bfloat16))
    print(f"all-mpnet-base-v2 bfloat16 max relative hidden error per token {relative.max():.2e}, "
          f"max |logit diff| {np.abs(bf16_logits - expected_logits).max():.2e}")
    assert relative.max() < BFLOAT16_RELATIVE_HIDDEN_BOUND
