"""`python -m seq2seq ...` (what `torchrun -m seq2seq` runs): the `seq2seq` command."""

from seq2seq.cli import main

if __name__ == "__main__":
    main()
