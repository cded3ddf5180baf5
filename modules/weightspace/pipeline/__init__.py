"""Orchestration: the experiment folders' pipeline (`experiment`), their command line (`cli`), the
ablation grids (`ablation`), the ray.tune trainable (`tune`) and the connection to a ray cluster
(`cluster`).

This room uses every other one (zoo, downstream, representation, report) and nothing imports it back,
except the command line. ray is imported only inside `tune`, `cluster` and the functions that start it.
"""
