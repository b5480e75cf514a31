"""Training on real data (run with: make test-slow, or pytest -m slow tests/test_train_slow.py).

A short run of the Multi30k en->de recipe must learn: a few hundred updates take a model from nothing to a
clearly non-trivial validation BLEU, and the checkpoint translates the test set line for line. The figures
the README reports (BLEU after 20 and 60 minutes) come from full runs, not from this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seq2seq import Translator, load_config, train
from seq2seq.evaluate import bleu
from seq2seq.textio import read_lines

ROOT = Path(__file__).resolve().parents[1]
MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MULTI30K.is_dir(), reason=f"Multi30k is not at {MULTI30K}"),
]


def test_multi30k_recipe_learns(tmp_path: Path) -> None:
    paths = [
        f"data.train={MULTI30K}/train",
        f"data.valid={MULTI30K}/val",
        f"data.test={MULTI30K}/test_2016_flickr",
    ]
    limits = ["train.max_steps=400", "train.max_minutes=0", "train.valid_every=400"]
    cfg = load_config(ROOT / "recipes" / "multi30k-en-de.yaml", paths + limits)
    result = train(cfg, tmp_path / "run", log=lambda line: None, show_progress=False)
    assert result.best_score is not None and result.best_score > 5.0
    sources = read_lines(MULTI30K / "test_2016_flickr.en")
    hyps = Translator.from_checkpoint(result.best_checkpoint, "cpu").translate(sources, beam=5)
    assert len(hyps) == len(sources) == 1000
    assert bleu(hyps, read_lines(MULTI30K / "test_2016_flickr.de")).score > 5.0
