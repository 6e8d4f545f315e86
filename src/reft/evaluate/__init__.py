"""Evaluation: per-question predictions, greedy top-1, majority voting@K, pass@K and rerank@K."""
