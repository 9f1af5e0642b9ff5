"""Reading, writing and generating data in the competition layout."""
