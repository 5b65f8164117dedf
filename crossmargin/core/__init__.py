"""The bottom layer: config models, the error tree, units. Imports nothing of ours."""
