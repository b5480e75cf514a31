from pathlib import Path

import pytest
import yaml

from seq2seq.config import Config, load_config, parse_overrides
from seq2seq.errors import Seq2SeqError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  hiden_size: 3\n", "unknown key 'hiden_size'"),
        ("modle:\n  cell: lstm\n", "unknown section 'modle' (did you mean 'model'?)"),
        ("model:\n  cell: lstmm\n", "model.cell: 'lstmm' is not one of 'lstm', 'gru', 'rnn'"),
        ("train:\n  lr: fast\n", "train.lr: expected a number"),
        ("train:\n  max_steps: 1.5\n", "train.max_steps: expected an integer"),
        ("train:\n  lr: -1\n", "train.lr: must not be negative"),
        ("model:\n  bidirectional: maybe\n", "model.bidirectional: expected true or false"),
        ("model: [1, 2]\n", "section 'model' must be a mapping"),
        ("- a\n- b\n", "a recipe is a mapping of sections"),
        ("model:\n  cell: [\n", "is not valid YAML"),
        (
            "model:\n  attention: dot\n  enc_hidden: 64\n  dec_hidden: 64\n",
            "'dot' needs the encoder output size",
        ),
        ("model:\n  tie_embeddings: true\n  emb_size: 32\n", "tie_embeddings needs model.emb_size"),
        ("model:\n  share_embeddings: true\ntokenizer:\n  joint: false\n", "needs tokenizer.joint"),
        ("model:\n  bridge: last\n  enc_layers: 2\n", "bridge 'last' needs equal"),
        ("model:\n  dropout: 1.0\n", "model.dropout must be in [0, 1)"),
        ("train:\n  clip_norm: .nan\n", "train.clip_norm: must be a finite number, got nan"),
        ("train:\n  lr: .inf\n", "train.lr: must be a finite number, got inf"),
        ("train:\n  max_minutes: 1e999\n", "train.max_minutes: must be a finite number"),
        ("decode:\n  length_penalty: -.inf\n", "decode.length_penalty: must be a finite number"),
        ("decode:\n  max_len_a: nan\n", "decode.max_len_a: must be a finite number, got 'nan'"),
    ],
)
def test_bad_recipes_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(Seq2SeqError, match=None) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_close_match_is_suggested(tmp_path: Path) -> None:
    with pytest.raises(Seq2SeqError, match="did you mean 'label_smoothing'"):
        load_config(write(tmp_path, "train:\n  label_smothing: 0.1\n"))


def test_missing_recipe() -> None:
    with pytest.raises(Seq2SeqError, match="recipe not found"):
        load_config(Path("/nonexistent/recipe.yaml"))


def test_empty_recipe_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()


@pytest.mark.parametrize(
    ("override", "section", "key", "value"),
    [
        ("train.lr=0.0005", "train", "lr", 0.0005),
        ("model.cell=gru", "model", "cell", "gru"),
        ("model.bidirectional=false", "model", "bidirectional", False),
        ("train.max_steps=100", "train", "max_steps", 100),
        ("data.normalize=", "data", "normalize", ""),
    ],
)
def test_overrides(tmp_path: Path, override: str, section: str, key: str, value: object) -> None:
    cfg = load_config(write(tmp_path, "model:\n  cell: lstm\n"), [override])
    assert getattr(getattr(cfg, section), key) == value


@pytest.mark.parametrize("override", ["train.lr", "lr=1", "=1", "bogus.key=1"])
def test_bad_overrides(override: str) -> None:
    with pytest.raises(Seq2SeqError):
        load_config(None, [override])


def test_parse_overrides_nests() -> None:
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


def test_data_paths_are_relative_to_the_recipe(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "r.yaml"
    path.write_text("data:\n  train: corpus/train\n", encoding="utf-8")
    assert load_config(path).data.train == str((tmp_path / "sub" / "corpus" / "train").resolve())


@pytest.mark.parametrize("recipe", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(recipe: Path) -> None:
    """Every key a shipped recipe sets arrives in the config (paths resolved against the recipe)."""
    cfg = load_config(recipe)
    raw = yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}
    for section, values in raw.items():
        for key, value in values.items():
            got = getattr(getattr(cfg, section), key)
            if section == "data" and key in ("train", "valid", "test") and value:
                assert got == str((recipe.parent / value).resolve()), f"{section}.{key}"
            else:
                assert got == value, f"{section}.{key}"


def test_reference_recipe_documents_every_key() -> None:
    """recipes/reference.yaml lists every key with its default value."""
    reference = yaml.safe_load((RECIPES / "reference.yaml").read_text(encoding="utf-8"))
    defaults = Config().to_dict()
    assert set(reference) == set(defaults)
    for section, values in defaults.items():
        assert set(reference[section]) == set(values), section
        for key, value in values.items():
            assert reference[section][key] == value, f"{section}.{key}"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr=nan", "--set train.lr: must be a finite number, got 'nan'"),
        ("train.clip_norm=inf", "--set train.clip_norm: must be a finite number"),
        ("train.lr=fast", "--set train.lr: expected a number, got 'fast'"),
        ("train.lr=-1", "--set train.lr: must not be negative"),
        ("model.hiden=3", "--set model.hiden: unknown key 'hiden'"),
        ("model.cell=lstmm", "--set model.cell: 'lstmm' is not one of"),
        ("modle.cell=gru", "--set: unknown section 'modle'"),
        ("model.attention=dot", "recipe.yaml with --set: model.attention 'dot' needs"),  # recipe + override
    ],
)
def test_override_errors_blame_the_override(tmp_path: Path, override: str, message: str) -> None:
    recipe = write(tmp_path, "model:\n  enc_hidden: 32\n  dec_hidden: 48\n")
    with pytest.raises(Seq2SeqError, match=None) as info:
        load_config(recipe, [override])
    assert str(info.value).startswith(message.replace("recipe.yaml", str(recipe)))
