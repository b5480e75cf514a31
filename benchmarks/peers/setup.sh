#!/usr/bin/env bash
# The peers of benchmarks/peers/run.py, each in its own virtual environment outside the repository:
#   ${SEQ2SEQ_PEERS_HOME:-~/.cache/seq2seq-peers}/onmt   OpenNMT-py 3.5.1
#   ${SEQ2SEQ_PEERS_HOME:-~/.cache/seq2seq-peers}/joey   Joey NMT 2.3.0
# torch==2.13.0 goes in first and stays pinned (OpenNMT-py 3.5.1 asks for torch<2.3, so it is installed with
# --no-deps and its needs are listed here by hand). Idempotent: a venv that already imports the right
# versions is left alone. TORCH_INDEX=https://download.pytorch.org/whl/cpu picks the CPU wheel elsewhere.
set -euo pipefail

HOME_DIR="${SEQ2SEQ_PEERS_HOME:-$HOME/.cache/seq2seq-peers}"
PYTHON="${PYTHON:-python3}"
TORCH="torch==2.13.0"
PIN="$(mktemp)"
trap 'rm -f "$PIN"' EXIT
echo "$TORCH" >"$PIN"

# OpenNMT-py 3.5.1's requirements (setup.py), at the versions this benchmark ran with.
ONMT_NEEDS=(configargparse==1.9.0 pyonmttok==1.38.1 pyyaml==6.0.4 sacrebleu==2.6.0 rapidfuzz==3.14.6
  pyahocorasick==2.3.1 fasttext-wheel==0.9.2 spacy==3.8.18 six==1.17.0 sentencepiece==0.2.3)

installed() {  # installed VENV DIST VERSION: the venv has DIST==VERSION and torch 2.13.0
  [ -x "$1/bin/python" ] && "$1/bin/python" - "$2" "$3" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
assert version(sys.argv[1]) == sys.argv[2] and version("torch").split("+")[0] == "2.13.0"
PY
}

new_venv() {  # new_venv VENV: a venv with torch 2.13.0
  "$PYTHON" -m venv "$1"
  "$1/bin/pip" install --quiet --upgrade pip
  "$1/bin/pip" install --quiet ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH"
}

ONMT="$HOME_DIR/onmt"
if installed "$ONMT" OpenNMT-py 3.5.1; then
  echo "OpenNMT-py 3.5.1: already installed in $ONMT"
else
  new_venv "$ONMT"
  "$ONMT/bin/pip" install --quiet -c "$PIN" "${ONMT_NEEDS[@]}"
  "$ONMT/bin/pip" install --quiet --no-deps OpenNMT-py==3.5.1
  installed "$ONMT" OpenNMT-py 3.5.1
  echo "OpenNMT-py 3.5.1: installed in $ONMT"
fi

JOEY="$HOME_DIR/joey"
if installed "$JOEY" joeynmt 2.3.0; then
  echo "Joey NMT 2.3.0: already installed in $JOEY"
else
  new_venv "$JOEY"
  "$JOEY/bin/pip" install --quiet -c "$PIN" joeynmt==2.3.0
  installed "$JOEY" joeynmt 2.3.0
  echo "Joey NMT 2.3.0: installed in $JOEY"
fi
