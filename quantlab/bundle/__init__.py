"""`.litertlm` bundles for LiteRT-LM: main, embedder, aux model, tokenizer and LlmMetadata in one file."""
