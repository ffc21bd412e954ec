"""Inference: tokenizer, shape grid and batch planner, the jitted Classifier, metric math."""
