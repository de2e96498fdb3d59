"""Models: BEATs and EAT encoders and their pre-training heads, and a classifier over any encoder."""
