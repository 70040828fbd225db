"""Coverage-guided fuzzing of the decode stage: ``python -m scripts.fuzz.decode``."""
