"""Training: labels, point-in-time training frames from the feature store, rankers, evaluation."""
