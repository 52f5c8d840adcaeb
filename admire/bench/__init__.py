"""`admire bench`: mixture optimisers compared on replayed or synthetic problems, honestly.

problems.py  what is optimised (a study config, a hidden truth, the best available value)
methods.py   random, regression, sf-target, sf-cheap, admire: one interface
harness.py   the protocol (pay to see, recommend after every trial), the summary, the outputs
"""
