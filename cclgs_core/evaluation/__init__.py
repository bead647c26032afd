"""Evaluation: benchmark protocols and reports, open-vocabulary metrics, the label-free
cross-view consistency measure, label-map files and the pictures of queries and evaluations."""
