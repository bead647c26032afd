"""The stages of a run, in pipeline order: geometry fitting, preprocessing (masks, features,
tracking, compression, targets), semantic-field training and saving, the run record, queries."""
