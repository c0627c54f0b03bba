"""Tasks: what a model's outputs mean and how they are scored."""
