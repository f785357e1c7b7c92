"""Frozen-encoder features computed once per pool (a Ray Data stage) and stored beside it."""
