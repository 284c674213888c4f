"""One module per console screen. Screens talk to the engine only; they never run SQL."""
