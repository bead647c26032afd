"""Evaluation: benchmark protocols and reports, open-vocabulary metrics, label-map files and
the pictures of queries and evaluations."""
