"""Recipes: a TOML file of training settings becomes the command line's defaults, and flags given win."""

from __future__ import annotations

import os

import pytest

from flaxmodel.errors import ConfigError
from flaxmodel.training import TrainConfig, main
from flaxmodel.training.cli import build_parser, parse_command_line
from flaxmodel.training.mixture import DEFAULT_MIXTURE
from flaxmodel.training.recipe import RECIPES, load_recipe, shipped_recipes
from tests.flaxmodel.training.conftest import assert_one_error_line

RUN = ["--data_root", "data", "--output", "runs/seed0"]


def _recipe(folder, text: str, name: str = "recipe.toml") -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def test_the_default_recipe_is_the_model_cards_training_command():
    card = (
        f"--mixture {DEFAULT_MIXTURE} --data_root data --output runs/seed0 --epochs 2 --batch_size 32 "
        "--max_length 64 --learning_rate 6e-4 --lora_rank 16 --lora_alpha 32 --train_norms "
        "--preprocessing emoji_names,join_spaced_letters,undo_leetspeak "
        "--target_weight 1.0"
    ).split()
    assert "default" in shipped_recipes()
    by_name = parse_command_line(["--recipe", "default", *RUN])
    assert by_name == parse_command_line(card)
    by_file = parse_command_line(["--recipe", os.path.join(RECIPES, "default.toml"), *RUN])
    assert by_file == by_name
    config, stop = by_name
    assert stop is None and config.mixture == DEFAULT_MIXTURE and os.path.isfile(config.mixture)


def test_flags_given_on_the_command_line_override_the_recipe(tmp_path):
    recipe = _recipe(tmp_path, 'epochs = 5\nlearning_rate = 1e-3\nlora_targets = ["query"]\ntrain_norms = true\n')
    config, _ = parse_command_line(["--recipe", recipe, "--train", "t.csv", "--output", "run", "--epochs", "2"])
    assert config == TrainConfig(
        train="t.csv", output="run", epochs=2, learning_rate=1e-3, lora_targets=("query",), train_norms=True
    )
    config, _ = parse_command_line(["--recipe", recipe, "--train", "t.csv", "--output", "run", "--train_norms=false"])
    assert (config.epochs, config.train_norms) == (5, False)
    # The help says which defaults the recipe replaced.
    assert "epochs=5" in build_parser(load_recipe(recipe)).format_help()


def test_relative_paths_in_a_recipe_are_relative_to_its_folder(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    recipe = _recipe(folder, 'train = "a.csv, data/*.csv"\nmodel = "/abs/model"\nteachers = ["../t1", "gs://b/t2"]\n')
    values = load_recipe(recipe)
    assert values == {
        "train": f"{folder}/a.csv,{folder}/data/*.csv",
        "model": "/abs/model",
        "teachers": (f"{tmp_path}/t1", "gs://b/t2"),
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 2\n", "unknown settings ['epoch']"),
        ("stop_after_steps = 2\n", "unknown settings ['stop_after_steps']"),
        ('output = "runs/x"\n', "output is each run's own; give --output on the command line"),
        ('epochs = "2"\n', "epochs must be an integer, as --epochs takes; got '2'"),
        ("learning_rate = true\n", "learning_rate must be a number"),
        ('train_norms = "yes"\n', "train_norms must be true or false"),
        ('lora_targets = "query,value"\n', "lora_targets must be a list of strings"),
        ("epochs = \n", "not valid TOML"),
    ],
)
def test_a_bad_recipe_fails_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    recipe = _recipe(tmp_path, text)
    with pytest.raises(ConfigError, match=f"--recipe {recipe}: ") as info:
        load_recipe(recipe)
    assert message in str(info.value)
    # On the command line: exit status 2 and one error line, before the run directory exists.
    assert main(["--recipe", recipe, "--train", "t.csv", "--output", str(tmp_path / "run")]) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", message)
    assert not (tmp_path / "run").exists()


def test_an_unknown_recipe_name_lists_the_shipped_ones(capsys):
    assert main(["--recipe", "no_such_recipe", *RUN]) == 2
    assert_one_error_line(capsys.readouterr().err, "flaxmodel-train", "no such file, nor a shipped recipe (default")
