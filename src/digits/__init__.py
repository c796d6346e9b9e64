"""digits: recognise handwritten digits, from Kaggle's CSV files to a scored submission."""

__version__ = "0.1.0"
