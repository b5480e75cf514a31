"""The four special token ids every seq2seq vocabulary has (no dependencies, so search, model and batching
need not import SentencePiece for them).

pad fills batches and is masked; unk stands for unknown pieces; bos starts the decoder input; eos ends the
source and every target. `seq2seq.tokenizer` trains and checks SentencePiece models with these ids.
"""

from __future__ import annotations

PAD, UNK, BOS, EOS = 0, 1, 2, 3
