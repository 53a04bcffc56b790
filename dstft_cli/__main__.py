"""``python -m dstft_cli`` — the same as the ``dstft`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="dstft")
