"""Prediction, submissions and scoring."""
