"""Benchmark peers: other people's ways of doing what ``digits`` does, written faithfully."""
