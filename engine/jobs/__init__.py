"""One module per job kind: what the engine does for a claimed job (engine.worker holds the table of them)."""
