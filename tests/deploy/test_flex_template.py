"""The Flex Template's parameters are exactly the pipeline's options, and each one reaches it intact.

Dataflow's launcher passes every template parameter to ``deploy/flex_template/main.py``
as ``--name=value``; these tests feed ``metadata.json``'s parameters the same
way through the pipeline's own parser (:class:`pipelines.options.ModerationOptions`).
Dataflow checks values against each parameter's ``regexes`` before launching
(as Java regexes; the ones used here mean the same in Python's ``re``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

import pytest

from deploy.flex_template.main import IMAGE_ENV, submit, with_default_sdk_image
from pipelines.options import REQUIRED, ModerationOptions, OptionError

METADATA = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "flex_template" / "metadata.json"

# A value for every option as a template user would type it, and what the pipeline must see.
SAMPLES = {
    "input": ("gs://b/posts/dt=2025-01-31/*.jsonl.gz,gs://b/more/*.csv", ["gs://b/posts/dt=2025-01-31/*.jsonl.gz,gs://b/more/*.csv"]),
    "output": ("gs://b/moderation/dt=2025-01-31", "gs://b/moderation/dt=2025-01-31"),
    "model": ("gs://b/models/hate-v3", "gs://b/models/hate-v3"),
    "format": ("jsonl", "jsonl"),
    "text_field": ("body", "body"),
    "id_field": ("post_id", "post_id"),
    "keep_fields": ("user_id,lang", "user_id,lang"),
    "keep_text": ("true", True),
    "threshold": ("hate=0.5,offensive=.75", "hate=0.5,offensive=.75"),
    "overwrite": ("true", True),
    "max_dead_letter_fraction": ("0.25", 0.25),
    "max_length": ("256", 256),
    "stride": ("0", 0),
    "max_windows": ("8", 8),
    "aggregate": ("mean", "mean"),
    "batch_size": ("128", 128),
    "model_copies": ("2", 2),
    "max_batch_tokens": ("16384", 16384),
    "sort_buffer": ("2048", 2048),
    "precision": ("int8", "int8"),
    "max_payload_bytes": ("0", 0),
    "compilation_cache_dir": ("gs://b/jax-cache", "gs://b/jax-cache"),
    "review_sample": ("500", 500),
    "review_seed": ("7", 7),
    "review_band": ("0.05", 0.05),
    "calibration_cache_dir": ("gs://b/jax-cache/calibration", "gs://b/jax-cache/calibration"),
}

# Values Dataflow must refuse before starting anything.
REJECTED = {
    "input": ["/local/posts.jsonl", "gs://b/a.jsonl,/local/b.jsonl", ""],
    "output": ["out/", "s3://b/out"],
    "keep_text": ["yes", "True", ""],
    "overwrite": ["yes", "1", ""],
    "max_dead_letter_fraction": ["1.5", "-0.1", "ten", ""],
    "threshold": ["hate", "hate=1.5", "hate=0.5,", "hate=-0.1"],
    "max_length": ["0", "-1", "12x"],
    "batch_size": ["-1", "64x"],
    "model_copies": ["-1"],
    "format": ["xml"],
    "precision": ["float16"],
    "review_sample": ["-1", "500x", ""],
    "review_band": ["1.5", "-0.1", ""],
}


def _metadata() -> dict:
    return json.loads(METADATA.read_text())


def _parameters() -> dict[str, dict]:
    return {p["name"]: p for p in _metadata()["parameters"]}


def _option_actions() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    ModerationOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.dest != "help"}


def _parse(*flags: str) -> dict:
    """The pipeline's view of ``flags``, with the two required options filled in."""
    return ModerationOptions(["--input=gs://b/x", "--output=gs://b/y", *flags]).get_all_options()


def _matches(parameter: dict, value: str) -> bool:
    return all(re.fullmatch(regex, value) for regex in parameter.get("regexes", []))


def test_template_parameters_are_exactly_the_pipeline_options():
    parameters, options = set(_parameters()), set(_option_actions())
    assert not options - parameters, f"pipeline options missing from metadata.json: {sorted(options - parameters)}"
    assert not parameters - options, f"metadata.json parameters the pipeline does not know: {sorted(parameters - options)}"
    assert len(_metadata()["parameters"]) == len(parameters), "a parameter is listed twice"
    assert set(SAMPLES) == options, "SAMPLES must hold one value per pipeline option"


def test_every_parameter_passed_as_the_launcher_does_reaches_the_pipeline():
    argv = [f"--{name}={value}" for name, (value, _) in SAMPLES.items()]
    parsed = ModerationOptions(argv).get_all_options(drop_default=False)
    for name, (_, expected) in SAMPLES.items():
        assert parsed[name] == expected, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_values_pass_the_template_validation(name):
    assert _matches(_parameters()[name], SAMPLES[name][0])


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_bad_values_are_refused_by_the_template(name):
    for value in REJECTED[name]:
        assert not _matches(_parameters()[name], value), f"{name}={value!r} should be refused"


def test_required_defaults_and_choices_agree_with_the_parser():
    actions = _option_actions()
    for name, parameter in _parameters().items():
        action = actions[name]
        assert parameter["isOptional"] is (name not in REQUIRED), name
        assert parameter["label"] and parameter["helpText"], name
        if "defaultValue" in parameter:
            assert _parse(f"--{name}={parameter['defaultValue']}")[name] == action.default, name
            assert _matches(parameter, parameter["defaultValue"]), name
        else:
            assert action.default is None, f"{name}: the parser's default {action.default!r} is not declared"
        if action.choices:
            assert parameter["paramType"] == "ENUM", name
            assert [o["value"] for o in parameter["enumOptions"]] == list(action.choices), name
        if action.type is int:
            assert parameter["paramType"] == "NUMBER", name


def test_keep_text_false_turns_the_text_off():
    assert _parse("--keep_text=false")["keep_text"] is False
    assert _parse("--keep_text")["keep_text"] is True


def test_entry_point_sends_workers_the_launcher_image():
    env = {IMAGE_ENV: "us-docker.pkg.dev/p/r/moderation:gpu"}
    assert with_default_sdk_image(["--input=gs://b/x"], env) == [
        "--input=gs://b/x",
        "--sdk_container_image=us-docker.pkg.dev/p/r/moderation:gpu",
    ]


@pytest.mark.parametrize("given", ["--sdk_container_image=other:1", "--worker_harness_container_image=other:1"])
def test_entry_point_keeps_an_image_the_caller_chose(given):
    assert with_default_sdk_image([given], {IMAGE_ENV: "mine:1"}) == [given]


def test_entry_point_without_a_baked_image_changes_nothing():
    assert with_default_sdk_image(["--input=gs://b/x"], {}) == ["--input=gs://b/x"]


def _posts(tmp_path: pathlib.Path) -> pathlib.Path:
    posts = tmp_path / "posts.jsonl"
    posts.write_text(json.dumps({"text": "You are great!"}) + "\n" + json.dumps({"text": ""}) + "\n")
    return posts


def test_entry_point_builds_and_runs_the_pipeline_from_template_parameters(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    argv = [f"--input={_posts(tmp_path)}", f"--output={out}", f"--model={tiny_checkpoint('bert')}", "--keep_text=true"]
    submit(argv, {}).wait_until_finish()
    assert list(out.glob("labels-*.parquet")) and list(out.glob("dead_letter-*.parquet"))


def test_entry_point_fails_on_a_bad_parameter_before_reading_data(tmp_path, tiny_checkpoint):
    argv = [f"--input={_posts(tmp_path)}", f"--output={tmp_path / 'out'}", f"--model={tiny_checkpoint('bert')}"]
    with pytest.raises(OptionError, match="threshold"):
        submit([*argv, "--threshold=hat=0.5"], {})
    assert not (tmp_path / "out").exists()
