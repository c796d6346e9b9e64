"""Data layer: Kaggle CSV files, the real MNIST, splits."""

from digits.data.dataset import DigitSet
from digits.data.kaggle import load_kaggle_csv, write_kaggle_csv

__all__ = ["DigitSet", "load_kaggle_csv", "write_kaggle_csv"]
