"""Training recipe, evaluation, prediction."""
