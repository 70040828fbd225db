"""The behaviour sweep: worm and benign behaviours over a grid, judged by the real pipeline.

``python -m scripts.sweep`` prints the detection envelope (docs/DETECTION.md) as
markdown tables; ``scripts.sweep.grid`` says which cases make the grid.
"""
