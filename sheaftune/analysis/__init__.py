"""Analyses over normalised events and model replays: characterisation, sweeps, comparisons,
recommendations. Each returns a result record from ``sheaftune.results``."""
