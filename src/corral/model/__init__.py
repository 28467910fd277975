"""Resource types, quantities, names and validation: the vocabulary every other layer speaks."""
