"""The sample captures in pcaps/: ``python -m scripts.samples.make`` writes them."""
