"""benchmarks/peers/run.py without the peers: their configurations, log parsers, table and skip logic."""

from __future__ import annotations

import re
import signal
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.peers import run as peers  # a namespace package: pytest's pythonpath is the root


@pytest.fixture(scope="module")
def arch():  # type: ignore[no-untyped-def]
    return peers.recipe_arch(peers.RECIPE)[0]


def test_recipe_arch_reads_the_multi30k_recipe() -> None:
    arch, raw = peers.recipe_arch(peers.RECIPE)
    assert (arch.emb_size, arch.enc_hidden, arch.enc_layers, arch.dec_hidden) == (256, 128, 2, 256)
    assert (arch.dropout, arch.lr, arch.batch_tokens) == (0.3, 0.002, 3000)
    assert (arch.length_penalty, arch.decode_batch_tokens) == (0.6, 12000)
    assert [p.name for p in raw.values()] == ["train", "val", "test_2016_flickr"]


@pytest.mark.parametrize(
    ("model", "named"),
    [
        ("attention: bahdanau", "got {'attention': 'bahdanau'}"),
        ("input_feeding: false", "got {'input_feeding': False}"),
        ("cell: gru", "got {'cell': 'gru'}"),
    ],
)
def test_recipe_arch_refuses_what_the_peers_cannot_express(tmp_path: Path, model: str, named: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"data: {{src_lang: en, tgt_lang: de}}\nmodel:\n  tie_embeddings: true\n  {model}\n")
    with pytest.raises(SystemExit, match=re.escape(named)):
        peers.recipe_arch(recipe)


def test_onmt_config_is_the_recipe_architecture(arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = peers.Corpus(tmp_path / "spm")
    cfg = peers.onmt_config(arch, corpus, tmp_path / "onmt", 8000, save_every=7)
    expected = {
        "encoder_type": "brnn", "rnn_type": "LSTM", "enc_layers": 2, "enc_hid_size": 256,  # 2 x 128
        "decoder_type": "rnn", "dec_layers": 1, "dec_hid_size": 256, "word_vec_size": 256,
        "global_attention": "general", "input_feed": 1, "share_decoder_embeddings": True,
        "share_embeddings": False, "share_vocab": True, "dropout": [0.3], "optim": "adam",
        "learning_rate": 0.002, "decay_method": "none", "batch_type": "tokens", "batch_size": 3000,
        "world_size": 1, "gpu_ranks": [], "bucket_size": 32768, "save_checkpoint_steps": 7,
        "src_vocab": str(corpus.onmt_vocab), "src_vocab_size": 8000, "tgt_vocab_size": 8000,
        "max_grad_norm": 1.0, "label_smoothing": 0.1,
    }  # fmt: skip
    assert {k: cfg[k] for k in expected} == expected
    assert cfg["data"]["corpus_1"] == {"path_src": f"{corpus.split('train')}.en",
                                       "path_tgt": f"{corpus.split('train')}.de"}  # fmt: skip
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg  # plain YAML, no Path objects


def test_joey_config_is_the_recipe_architecture(arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = peers.joey_config(arch, peers.Corpus(tmp_path / "spm"), tmp_path / "joey")
    enc, dec = cfg["model"]["encoder"], cfg["model"]["decoder"]
    assert (enc["rnn_type"], enc["bidirectional"], enc["hidden_size"], enc["num_layers"]) == (
        "lstm",
        True,
        128,
        2,
    )
    assert (dec["rnn_type"], dec["hidden_size"], dec["num_layers"]) == ("lstm", 256, 1)
    assert (dec["attention"], dec["input_feeding"], dec["init_hidden"]) == ("luong", True, "bridge")
    assert enc["embeddings"] == dec["embeddings"] == {"embedding_dim": 256, "scale": False, "dropout": 0.3}
    assert (cfg["model"]["tied_softmax"], cfg["model"]["tied_embeddings"]) == (True, False)
    train = cfg["training"]
    assert (train["scheduling"], train["decrease_factor"]) == ("exponential", 1.0)  # a constant lr
    assert (train["learning_rate"], train["batch_size"], train["batch_type"]) == (0.002, 3000, "token")
    assert cfg["data"]["src"]["voc_file"] == cfg["data"]["trg"]["voc_file"]  # one joint vocabulary
    assert "load_model" not in cfg["testing"]
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg


@pytest.mark.parametrize(("beam", "alpha", "batch"), [(5, 0.6, 2400), (1, -1, 12000)])
def test_joey_decoding_matches_seq2seq_batches_and_penalty(arch, tmp_path: Path, beam, alpha, batch) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "latest.ckpt"
    testing = peers.joey_config(arch, peers.Corpus(tmp_path), tmp_path, beam, ckpt)["testing"]
    assert (testing["beam_size"], testing["beam_alpha"], testing["batch_size"]) == (beam, alpha, batch)
    assert testing["load_model"] == str(ckpt)


ONMT_LOG = """\
[2026-12-03 03:28:51,728 INFO] encoder: 2838528
[2026-12-03 03:28:51,728 INFO] * number of parameters: 5879616
[2026-12-03 03:28:51,729 INFO] Start training loop without validation...
[2026-12-03 03:33:03,761 INFO] Step 20/10000000; acc: 8.7; ppl: 1696.1; xent: 7.4; lr: 0.00200; \
sents:    3740; bsz: 2431/2805/187; 3969/4580 tok/s;     12 sec;
[2026-12-03 03:33:08,227 INFO] Step 40/10000000; acc: 10.4; ppl: 968.8; xent: 6.9; lr: 0.00200; \
sents:    4600; bsz: 2530/2590/230; 4000/4100 tok/s;     24 sec;
[2026-12-03 03:33:08,227 INFO] Step 60/10000000; acc: 12.4; ppl: 568.8; xent: 6.2; lr: 0.00200; \
sents:    4600; bsz: 2530/2590/230; 1000/1200 tok/s;     40 sec;
"""
JOEY_LOG = """\
2026-12-03 03:36:13,312 - INFO - joeynmt.model - Total params: 5937664
2026-12-03 03:36:15,554 - INFO - joeynmt.training - EPOCH 1
2026-12-03 03:40:57,107 - INFO - joeynmt.training - Epoch   1, Step:       20, Batch Loss:     7.773981, \
Batch Acc: 0.000422, Tokens per Sec:     3167, Lr: 0.002000
2026-12-03 03:41:10,267 - INFO - joeynmt.training - Epoch   1, Step:       40, Batch Loss:     7.329638, \
Batch Acc: 0.060174, Tokens per Sec:     3192, Lr: 0.002000
2026-12-03 03:36:46,189 - INFO - joeynmt.training - Interrupt at epoch 1, step 47.
"""
SEQ2SEQ_LOG = """\
training 6,011,200 parameters on cpu; 29,000 training pairs; run directory /tmp/peers/seq2seq/run
done: 1234 updates in 5.0 min (time limit); best valid bleu 30.40 at update 1200: best.pt
"""
SEQ2SEQ_METRICS = """\
{"type": "train", "step": 20, "tgt_tokens_per_s": 6500.0, "minutes": 0.1}
{"type": "valid", "step": 170, "bleu": 10.0}
{"type": "train", "step": 40, "tgt_tokens_per_s": 6700.0, "minutes": 0.2}
{"type": "train", "step": 60, "tgt_tokens_per_s": 3000.0, "minutes": 0.3}
"""


@pytest.mark.parametrize(
    ("parse", "logs", "expected"),
    [
        (peers.parse_onmt_train, (ONMT_LOG,), (5879616, 60, 4100.0, 3)),  # median of the target figures
        (peers.parse_joey_train, (JOEY_LOG,), (5937664, 47, 3179.5, 2)),  # updates from the interrupt line
        (peers.parse_joey_train, (JOEY_LOG.rsplit("\n", 2)[0],), (5937664, 40, 3179.5, 2)),
        (peers.parse_seq2seq_train, (SEQ2SEQ_LOG, SEQ2SEQ_METRICS), (6011200, 1234, 6500.0, 3)),
        (peers.parse_onmt_train, ("",), (None, 0, None, 0)),
    ],
)
def test_train_log_parsers(parse, logs, expected) -> None:  # type: ignore[no-untyped-def]
    stats = parse(*logs)
    assert (stats.parameters, stats.updates, stats.tokens_per_s, stats.windows) == expected


@pytest.mark.parametrize(
    ("toolkit", "log", "seconds"),
    [
        (
            "onmt",
            "[x INFO] Total translation time (s): 4.6\n[x INFO] Average translation time (ms): 4.6",
            4.6,
        ),
        ("joey", "2026 - INFO - joeynmt.prediction - Generation took 3.2512[sec].", 3.2512),
        ("seq2seq", "translated 1000 line(s) in 3.1 s (beam 5) -> out.txt", 3.1),
        ("seq2seq", "nothing timed here", None),
    ],
)
def test_decode_timers(toolkit: str, log: str, seconds: float | None) -> None:
    assert peers.parse_decode_seconds(toolkit, log) == seconds


def test_newest_onmt_checkpoint(tmp_path: Path) -> None:
    assert peers.newest_onmt_checkpoint(tmp_path) is None
    for step in (25, 100, 75):
        (tmp_path / f"model_step_{step}.pt").touch()
    assert peers.newest_onmt_checkpoint(tmp_path) == tmp_path / "model_step_100.pt"


def test_encode_corpus_writes_pieces_and_a_vocabulary_without_specials(tmp_path: Path) -> None:
    import sentencepiece as spm

    text = ["a small dog runs .", "two men play football .", "a woman reads a book ."] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_prefix=str(tmp_path / "m"), vocab_size=28,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2,
    )  # fmt: skip
    raw = {}
    for split in peers.SPLITS:
        raw[split] = tmp_path / f"raw_{split}"
        for lang in peers.LANGS:
            Path(f"{raw[split]}.{lang}").write_text("\n".join(text[:3]) + "\n")
    model = tmp_path / "m.model"
    corpus, vocab_size = peers.encode_corpus(model, raw, tmp_path / "spm")
    assert vocab_size == 28
    vocab = corpus.onmt_vocab.read_text().splitlines()
    assert len(vocab) == 24 and not set(vocab) & set(peers.SPM_SPECIALS)
    assert corpus.joey_vocab.read_text() == corpus.onmt_vocab.read_text()
    encoded = Path(f"{corpus.split('test')}.de").read_text().splitlines()
    assert all(piece in vocab for line in encoded for piece in line.split())
    assert peers.detokenize(model, encoded) == text[:3]


def _row(toolkit: str, tokens: float, beam5: float, greedy: float, bleu: float) -> object:
    stats = peers.TrainStats(6_000_000, 900, tokens, 40)
    decodes = {b: peers.Decode(b, s, s + 2.0, 1000, bleu, "sig", int(12_000 * s))
               for b, s in ((5, beam5), (1, greedy))}  # fmt: skip
    return peers.Row(toolkit, toolkit, stats, decodes)


def test_ratio_table_divides_speeds_and_subtracts_bleu() -> None:
    rows = [_row("onmt", 4000.0, 4.0, 2.0, 30.0), _row("seq2seq", 6000.0, 1.0, 0.5, 31.5)]
    table = peers.ratio_table(rows)
    line = next(line for line in table.splitlines() if line.startswith("| seq2seq / OpenNMT-py"))
    # 1000 / 1.0 against 1000 / 4.0 by the own timers; 1000 / 3.0 against 1000 / 6.0 whole commands
    # subwords out: 12,000 per second in every run, so the same rate
    assert line.split(" | ")[1:] == [
        "1.50×",
        "4.00×; 2.00×",
        "4.00×; 1.60×",
        "+1.50",
        "+1.50",
        "1.00×; 1.00× |",
    ]
    results = peers.results_table(rows)
    assert "| onmt | 6,000,000 | 4,000 | 900 | 4.0 / 6.0 | 250 / 167 | 30.00 |" in results
    assert results.splitlines()[2].endswith("| 48,000 / 24,000 |")


def test_output_subwords_are_counted_with_the_shared_sentencepiece_model(tmp_path: Path) -> None:
    import sentencepiece as spm

    text = ["a small dog runs .", "two men play football ."] * 20
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_prefix=str(tmp_path / "m"), vocab_size=24,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "m.model"))
    lines = ["a small dog", "two men play football ."]
    count = peers.count_subwords(tmp_path / "m.model", lines)
    assert count == len(sp.encode(lines[0])) + len(sp.encode(lines[1])) and count >= 7


def test_decode_without_its_own_timer_has_no_rate() -> None:
    decode = peers.Decode(5, None, 4.0, 1000, 30.0, "sig")
    assert decode.sentences_per_s is None and decode.command_sentences_per_s == 250.0
    assert peers.ratio_table([_row("onmt", 1.0, 1.0, 1.0, 1.0)]) == ""  # no seq2seq row: no ratios


def test_select_toolkits_skips_and_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"OpenNMT-py 3.5.1: no virtual environment .*setup.sh.*--skip onmt"):
        peers.select_toolkits([], tmp_path)
    (tmp_path / "joey" / "bin").mkdir(parents=True)
    (tmp_path / "joey" / "bin" / "python").touch()
    assert peers.select_toolkits(["onmt"], tmp_path) == ["joey", "seq2seq"]
    with pytest.raises(SystemExit, match="not one of"):
        peers.select_toolkits(["marian"], tmp_path)
    with pytest.raises(SystemExit, match="nothing left"):
        peers.select_toolkits(list(peers.TOOLKITS), tmp_path)


STOPPABLE = """\
import signal, sys, time
def stop(*_):
    print("Interrupt at step 3", flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
time.sleep(0.3)
print("EPOCH 1", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("parent_ignores_sigint", [False, True])  # True: a background job of a script
def test_train_for_starts_the_clock_at_the_marker_and_interrupts(
    tmp_path: Path, parent_ignores_sigint
) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "train.out"
    before = signal.signal(
        signal.SIGINT, signal.SIG_IGN if parent_ignores_sigint else signal.default_int_handler
    )
    try:
        seconds = peers.train_for(
            [sys.executable, "-c", STOPPABLE], log, 1 / 60, "EPOCH 1", peers.thread_env()
        )
    finally:
        signal.signal(signal.SIGINT, before)
    assert 1.0 < seconds < 30
    assert log.read_text().splitlines() == ["EPOCH 1", "Interrupt at step 3"]


def test_train_for_reports_a_peer_that_dies_before_training(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    with pytest.raises(SystemExit, match=r"exited \(3\) before training(.|\n)*bad config"):
        peers.train_for(cmd, tmp_path / "train.out", 1.0, "EPOCH 1", peers.thread_env())
