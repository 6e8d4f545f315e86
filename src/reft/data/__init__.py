"""Data layer: records, loaders, prompt rendering, tokenisation and the built-in synthetic task."""
