"""Scores: the confusion matrix and what follows from it (`metrics`), and a model over a dataset (`evaluate`)."""
