"""digits: recognise handwritten digits, from Kaggle's CSV files to a scored submission."""

from digits.version import __version__

__all__ = ["__version__"]
