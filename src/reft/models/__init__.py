"""Model and tokenizer loading, tiny presets and the value head."""
