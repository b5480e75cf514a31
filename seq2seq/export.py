"""Shareable models: a folder others load without pickle (`seq2seq export`, `Translator.from_pretrained`).

    DIR/model.safetensors    the weights
    DIR/config.json          the full config (model architecture, decode defaults, ...)
    DIR/shortlist.safetensors  the decoding vocabulary shortlist, when the checkpoint has one
    DIR/spm.model            the joint SentencePiece model, or DIR/src.model and DIR/tgt.model
    DIR/README.md            a model card: data, size, validation BLEU with its signature, the command

Nothing in the folder is unpickled on load: JSON, SentencePiece protobuf and safetensors only.
Needs safetensors: `pip install "seq2seq[export]"`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from sacrebleu.metrics import BLEU

from seq2seq.checkpoint import load_checkpoint
from seq2seq.config import Config, config_from_dict
from seq2seq.errors import Seq2SeqError
from seq2seq.model import Seq2Seq, build_model, count_parameters
from seq2seq.tokenizer import Tokenizer

WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
SHORTLIST = "shortlist.safetensors"


def _safetensors() -> Any:
    try:
        import safetensors.torch
    except ImportError:
        raise Seq2SeqError('export needs safetensors: pip install "seq2seq[export]"') from None
    return safetensors.torch


def export_model(checkpoint: Path, out_dir: Path) -> Path:
    """Write the folder for `checkpoint` into `out_dir` (created; existing files are replaced)."""
    st = _safetensors()
    payload = load_checkpoint(Path(checkpoint))
    cfg = config_from_dict(payload["config"], f"{checkpoint} (config)")
    tokenizer = Tokenizer.from_state(payload["tokenizer"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # tied weights share storage, which safetensors refuses: store each tensor on its own
    weights = {k: v.detach().cpu().contiguous().clone() for k, v in payload["model"].items()}
    st.save_file(weights, str(out_dir / WEIGHTS), metadata={"format": "pt", "seq2seq": "1"})
    (out_dir / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    shortlist = payload.get("shortlist")
    if shortlist is not None:  # tensors as tensors, the two integers as metadata
        tensors = {k: shortlist[k].contiguous() for k in ("candidates", "frequent")}
        meta = {"version": str(shortlist["version"]), "tgt_vocab": str(shortlist["tgt_vocab"])}
        st.save_file(tensors, str(out_dir / SHORTLIST), metadata=meta)
    else:
        (out_dir / SHORTLIST).unlink(missing_ok=True)
    if tokenizer.joint:
        (out_dir / "spm.model").write_bytes(tokenizer.src_model)
    else:
        assert tokenizer.tgt_model is not None
        (out_dir / "src.model").write_bytes(tokenizer.src_model)
        (out_dir / "tgt.model").write_bytes(tokenizer.tgt_model)
    model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    card = model_card(cfg, count_parameters(model), payload.get("train_state", {}), Path(checkpoint))
    (out_dir / CARD).write_text(card, encoding="utf-8")
    return out_dir


def model_card(cfg: Config, parameters: int, train_state: dict[str, Any], checkpoint: Path) -> str:
    """The README.md of an exported model, from its config and the run that trained it."""
    d, m, t = cfg.data, cfg.model, cfg.train
    run_dir = checkpoint.parent.parent
    recipe = run_dir / "config.yaml"
    data = f"built-in `{d.builtin}` corpus" if d.format == "builtin" else f"`{d.train}` ({d.format})"
    best = train_state.get("best_score")
    metric = t.valid_metric
    bleu = BLEU()  # the settings validation scores with (seq2seq.evaluate.bleu); one reference per line
    bleu.corpus_score(["x"], [["x"]])
    signature = str(bleu.get_signature())
    score = (
        f"validation {metric.upper() if metric == 'bleu' else metric} {best:.2f} at update "
        f"{train_state.get('best_step')} (sacreBLEU, signature `{signature}`)"
        if isinstance(best, float)
        else "no validation recorded"
    )
    lines = [
        f"# seq2seq model: {d.src_lang} → {d.tgt_lang}",
        "",
        f"- **Data**: {data}; validation `{d.valid or d.builtin}`.",
        f"- **Model**: {m.cell.upper()} encoder-decoder, {m.enc_layers}x{m.enc_hidden} encoder"
        f"{' (bidirectional)' if m.bidirectional else ''}, {m.dec_layers}x{m.dec_hidden} decoder, "
        f"{m.attention} attention; {parameters:,} parameters; vocabulary {cfg.tokenizer.vocab_size} "
        f"({cfg.tokenizer.type}{', joint' if cfg.tokenizer.joint else ''}).",
        f"- **Training**: {train_state.get('step', '?')} updates; {score}.",
        f"- **Trained with**: `seq2seq train {recipe if recipe.is_file() else 'RECIPE'}` "
        f"(exported from `{checkpoint}`).",
        "",
        "Use it:",
        "",
        "```",
        "seq2seq translate --model THIS_DIR input.txt",
        "```",
        "",
        "```python",
        "from seq2seq import Translator",
        'Translator.from_pretrained("THIS_DIR").translate(["..."])',
        "```",
        "",
        f"Files: `{WEIGHTS}` (weights), `{CONFIG}` (every setting), the SentencePiece model(s). No pickle.",
        "",
    ]
    return "\n".join(lines)


def load_pretrained(directory: Path, device: torch.device) -> tuple[Seq2Seq, Tokenizer, Config]:
    """Model (eval mode, on `device`), tokenizer and config from an exported folder."""
    st = _safetensors()
    directory = Path(directory)
    if not (directory / WEIGHTS).is_file() or not (directory / CONFIG).is_file():
        raise Seq2SeqError(
            f"{directory}: not an exported model (needs {WEIGHTS} and {CONFIG}; see seq2seq export)"
        )
    try:
        raw = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Seq2SeqError(f"{directory / CONFIG}: not valid JSON ({exc})") from None
    cfg = config_from_dict(raw, str(directory / CONFIG))
    joint = directory / "spm.model"
    tokenizer = (
        Tokenizer.from_files(joint)
        if joint.is_file()
        else Tokenizer.from_files(directory / "src.model", directory / "tgt.model")
    )
    model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    try:
        model.load_state_dict(st.load_file(str(directory / WEIGHTS)))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:160]
        raise Seq2SeqError(f"{directory / WEIGHTS}: does not fit {CONFIG} ({first})") from None
    return model.to(device).eval(), tokenizer, cfg


def load_folder_shortlist(directory: Path) -> dict[str, Any] | None:
    """The shortlist state (`seq2seq.shortlist.Shortlist.state`) an exported folder holds, or None."""
    path = Path(directory) / SHORTLIST
    if not path.is_file():
        return None
    _safetensors()  # the extra's one-line error when it is missing
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state: dict[str, Any] = {k: f.get_tensor(k) for k in ("candidates", "frequent")}
        state["version"], state["tgt_vocab"] = int(meta["version"]), int(meta["tgt_vocab"])
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as exc:
        raise Seq2SeqError(
            f"{path}: not a readable shortlist ({type(exc).__name__}); export the model again"
        ) from None
    return state
