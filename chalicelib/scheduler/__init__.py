"""The scheduler of due steps: a sweep that runs what falls due (store/steps.py)."""
