"""Serving: rank candidates with a registered model on the online store's features."""
