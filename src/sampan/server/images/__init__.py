"""Images: recipes (pure) and the uv-based builder."""
