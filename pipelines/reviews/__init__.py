"""Reviewed review samples: reading the files reviewers filled in, and the whole-run estimates from them."""
