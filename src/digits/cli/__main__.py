"""``python -m digits.cli``: the ``digits`` command."""

from digits.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
